"""``train.run``: SFT with answer-only loss (LoRA or full), checkpoints, resume, metrics, the trained weights.

    fab train.run --config configs/training.yaml
    fab train.run --config configs/training.yaml --method full
    fab train.run --config configs/training.yaml --resume latest --max-steps 2000
    fab train.run --config configs/training.yaml --backend hf --run-id 20261125T101500Z

    from scripts.training.run import run_training
    cfg = training_config("configs/training.yaml", max_steps=6)     # CLI overrides, validated
    result = run_training(cfg, resume="latest")

Run directory ``<runs_dir>/<run_id>/``: config.yaml, dataset_manifest.json,
prepare.json (from ``train.prepare``, run here when no prepared run exists),
checkpoints/checkpoint-N (every ``save_steps`` and on SIGINT/SIGTERM),
metrics.jsonl, loss.png, result.json (the RunResult), and what was trained:

- ``train.method: lora``: adapter/ (LoRA adapter, tokenizer, generation_config.json);
- ``train.method: full``: model/ (model.safetensors with every trained weight, the
  embeddings tied to the LM head; config.json with the rope scaling; tokenizer and
  chat template; generation_config.json), a model folder any stage loads as is.

The method is in the run's config.yaml (``train.method``), prepare.json and
result.json; a checkpoint of one method never resumes under the other.

Backend ``unsloth`` is imported first thing in ``run_training``, before
transformers/PEFT/TRL (nothing imported at this module's top level pulls them
in). Under ``torchrun`` (``fab train.run --nproc N``, see
``scripts.training.ddp``) every rank runs ``run_training``; only rank 0
writes metrics, checkpoint weights and the adapter (each rank adds its own
``rng_state_<rank>.pth`` to a checkpoint, as transformers does), and the
ranks' final trained weights (LoRA, or all of them for full) are compared by
hash (``rank_adapter_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from scripts import paths
from scripts.config import UserError, config_snapshot, load_config
from scripts.contracts import RunResult
from scripts.model.loading import torch_dtype
from scripts.paths import (
    RUN_ADAPTER as ADAPTER, RUN_CHECKPOINTS as CHECKPOINTS, RUN_CONFIG as CONFIG_FILE, RUN_METRICS as METRICS,
    RUN_MODEL as MODEL, RUN_RESULT as RESULT,
)
from scripts.training.backends import check_unsloth_fits, import_unsloth, pick_backend
from scripts.training.config import TrainingConfig
from scripts.training.prepare import (
    check_splits, load_checked_tokenizer, load_train_tokens, prepare_run, read_prepare,
)

log = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def adapter_fingerprint(state_dict: dict) -> str:
    """sha256 over sorted names and fp32 bytes of a LoRA state dict (as saved in adapter_model.safetensors)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def trained_state_dict(model, method: str) -> dict:
    """What a run trains: the LoRA weights (as in adapter_model.safetensors), or every parameter for full
    (the tied LM head once, under the embeddings' name, as in model.safetensors)."""
    if method == "full":
        return dict(model.named_parameters())
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def rank_fingerprints(model, method: str = "lora") -> list[str]:
    """Every rank's fingerprint of its trained weights (all ranks must call it)."""
    from accelerate.utils import gather_object

    return gather_object([adapter_fingerprint(trained_state_dict(model, method))])


def run_method(run_dir: Path) -> str | None:
    """``train.method`` of a run's config.yaml snapshot (``lora`` when the snapshot predates the key)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    snapshot = yaml.safe_load(path.read_text()) or {}
    return (snapshot.get("train") or {}).get("method", "lora")


def checkpoint_method(checkpoint: Path) -> str:
    """A checkpoint holds an adapter (lora) or the whole model (full)."""
    return "lora" if (checkpoint / "adapter_config.json").is_file() else "full"


def last_checkpoint(run_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = run_dir / CHECKPOINTS
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(found) if found else None


# Keys a run may change between its prepare (or a checkpoint) and the train.run that continues it: how long
# it trains and how often it saves or logs (`--resume latest --max-steps 2000`), and which backend runs it.
RESUMABLE_CHANGES = ("backend", "output.run_id", "train.max_steps", "train.epochs", "train.save_steps",
                     "train.save_total_limit", "train.logging_steps", "loss.chunk_size")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``: the dotted keys a diff names."""
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def snapshot_diff(cfg: TrainingConfig, run_dir: Path) -> list[str]:
    """``key snapshot -> now`` for each setting in which ``cfg`` differs from the run's config.yaml (both
    with secrets masked, the snapshot read through TrainingConfig so keys added since take their defaults)."""
    try:
        snapshot = load_config(run_dir / CONFIG_FILE, TrainingConfig)
    except UserError as exc:
        raise UserError(f"run {run_dir.name}: its {CONFIG_FILE} does not read ({exc}); use another run id") from exc
    then, now = (_flat(config_snapshot(c)) for c in (snapshot, cfg.resolved()))
    return [f"{key} {then.get(key)} -> {now.get(key)}" for key in dict.fromkeys([*then, *now])
            if then.get(key) != now.get(key) and key not in RESUMABLE_CHANGES]


def check_snapshot(cfg: TrainingConfig, run_dir: Path, what: str, fix: str) -> None:
    """A one-line refusal naming every setting that differs from the run's snapshot."""
    if not (run_dir / CONFIG_FILE).is_file():
        return
    diff = snapshot_diff(cfg, run_dir)
    if diff:
        raise UserError(f"run {run_dir.name} was {what} with another config ({run_dir / CONFIG_FILE}): "
                        f"{'; '.join(diff)}; {fix}")


def resolve_run(cfg: TrainingConfig, run_id: str | None, resume: str | None,
                reprepare: bool = False) -> tuple[Path, Path | None]:
    """``(run_dir, checkpoint to resume or None)``; prepares a new run when none is ready. A run whose
    config.yaml differs from ``cfg`` is refused with the differences (a prepared one is prepared again with
    ``reprepare``); ``latest`` without a run id takes the newest prepared run made with this config."""
    runs_dir = cfg.resolved().output.runs_dir
    run_id = run_id or cfg.output.run_id
    if resume and resume != "latest":
        path = Path(resume)
        checkpoint = last_checkpoint(path) if (path / CHECKPOINTS).is_dir() else path
        if checkpoint is None or not (checkpoint / "trainer_state.json").is_file():
            raise UserError(f"--resume {resume}: not a checkpoint (no trainer_state.json) nor a run dir with one")
        check_snapshot(cfg, checkpoint.parent.parent, "trained", "resume it with the config it was trained with")
        return checkpoint.parent.parent, checkpoint
    if resume == "latest":
        candidates = [paths.run_dir(runs_dir, run_id)] if run_id else sorted(
            (d for d in runs_dir.glob("*") if last_checkpoint(d)), key=lambda d: last_checkpoint(d).stat().st_mtime)
        if not candidates or last_checkpoint(candidates[-1]) is None:
            raise UserError(f"--resume latest: no checkpoint under {runs_dir / (run_id or '*') / CHECKPOINTS}")
        check_snapshot(cfg, candidates[-1], "trained", "resume it with the config it was trained with")
        return candidates[-1], last_checkpoint(candidates[-1])
    if run_id:
        run_dir = paths.run_dir(runs_dir, run_id)
        if last_checkpoint(run_dir):
            raise UserError(f"run {run_id} already has checkpoints; use --resume latest or another run id")
        if read_prepare(run_dir) is not None and not reprepare:
            check_snapshot(cfg, run_dir, "prepared", "pass --reprepare to prepare it again with this config, "
                           "or use another --run-id")
        if read_prepare(run_dir) is None or reprepare:
            prepare_run(cfg, run_id)
        return run_dir, None
    fresh = [d for d in sorted(runs_dir.glob("*")) if read_prepare(d) and not last_checkpoint(d)
             and not (d / ADAPTER).exists() and not (d / MODEL).exists() and not snapshot_diff(cfg, d)]
    if fresh:
        return fresh[-1], None
    return Path(prepare_run(cfg).run_dir), None


def check_same_method(cfg: TrainingConfig, run_dir: Path, checkpoint: Path) -> None:
    """A LoRA checkpoint cannot continue as a full fine-tune, nor the other way round."""
    for where, method in (("run config", run_method(run_dir)), ("checkpoint", checkpoint_method(checkpoint))):
        if method is not None and method != cfg.train.method:
            raise UserError(f"checkpoint {checkpoint} was trained with train.method {method} ({where}), the "
                            f"config says {cfg.train.method}; resume with method {method} or start a new run")


def check_same_base(cfg: TrainingConfig, run_dir: Path, checkpoint: Path) -> None:
    snapshot = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
    bases = {"run config": (snapshot.get("model") or {}).get("name_or_path")}
    adapter_config = checkpoint / "adapter_config.json"
    if adapter_config.is_file():
        bases["checkpoint"] = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    for where, base in bases.items():
        if base and base != cfg.model.name_or_path:
            raise UserError(f"checkpoint {checkpoint} comes from a different base model ({where}: {base}), "
                            f"not {cfg.model.name_or_path}")


def sft_args(cfg: TrainingConfig, run_dir: Path, dtype, backend: str):
    import torch
    from trl import SFTConfig

    args = SFTConfig(
        output_dir=str(run_dir / CHECKPOINTS),
        max_steps=cfg.train.max_steps or -1,
        num_train_epochs=cfg.train.epochs,
        per_device_train_batch_size=cfg.train.per_device_batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.train.lr,
        lr_scheduler_type=cfg.train.scheduler,
        warmup_steps=cfg.train.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        optim=cfg.train.optimizer,
        # A short run (--max-steps 4, logging every 10) still logs its loss: first step, and at least once.
        logging_steps=min(cfg.train.logging_steps, cfg.train.max_steps or cfg.train.logging_steps),
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.train.save_steps,
        save_total_limit=cfg.train.save_total_limit,
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        bf16=dtype == torch.bfloat16,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend=None if torch.cuda.is_available() or world_size() == 1 else "gloo",
        ddp_find_unused_parameters=False,  # every LoRA weight (or, full, every weight) gets a gradient
        gradient_checkpointing=cfg.train.gradient_checkpointing and backend == "hf",
        gradient_checkpointing_kwargs={"use_reentrant": False},
        max_length=None,  # data.py already applied max_seq_length and the truncation policy
        packing=False,  # data.py packs (packing.enabled): budget per row, long examples alone and whole
        # packed rows: TRL's collator flattens them, position ids restarting per example from seq_lengths, no
        # attention mask. Set either way: Unsloth, left to decide (None), may turn padding-free on by itself.
        padding_free=cfg.packing.enabled,
        report_to=[],
        disable_tqdm=True,
        eval_strategy="no",
        dataloader_num_workers=0,
    )
    # Unsloth 2026.10's CPU backend turns padding_free off in every SFTConfig (its reason: sdpa on CPU
    # attends across examples). Not so with transformers 5.17 given restarting position ids, no mask and
    # no cache (TRL's compute_loss drops the cache): tests/scripts/training/test_packing.py checks it on
    # both backends. Packed rows without it would be worse: one row whose examples see each other.
    args.padding_free = cfg.packing.enabled
    return args


# TRL 1.15 warns on padding-free rows unless the attention is flash (transformers 5.17 masks packed rows
# under sdpa and eager too, from the restarting position ids: tests/scripts/training/test_packing.py) and
# at batch 1 without TRL's own packing (our rows arrive packed by data.py). Both would mislead here.
PACKED_ROWS_WARNINGS = ("Padding-free training is enabled, but the attention implementation",
                        "You are using a per_device_train_batch_size of 1 with padding-free")


def _packed_rows_warnings(record: logging.LogRecord) -> bool:
    message = record.getMessage()  # accelerate's logger prefixes "[RANK n] " on some setups
    return not any(text in message for text in PACKED_ROWS_WARNINGS)


def make_trainer(model, args, tokenizer, train_dataset, chunk_size: int | None, callbacks):
    """SFTTrainer; with ``chunk_size`` (hf backend) the loss is our chunked cross-entropy."""
    import torch
    from transformers import PrinterCallback
    from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME
    from trl import SFTTrainer

    from scripts.training.loss import forward_loss

    class ResumableSFTTrainer(SFTTrainer):
        def _load_optimizer_and_scheduler(self, checkpoint):
            # DDP on CPU (gloo): transformers 5.17 maps the optimizer state to args.device, "cpu:<rank>",
            # which torch.load cannot restore to ("don't know how to restore data location"): a resumed
            # --nproc run died on every rank. Load both states to the CPU, where the parameters are.
            if checkpoint is None or self.args.world_size == 1 or self.args.device.type != "cpu":
                return super()._load_optimizer_and_scheduler(checkpoint)
            folder = Path(checkpoint)
            if not (folder / OPTIMIZER_NAME).is_file() or not (folder / SCHEDULER_NAME).is_file():
                return None
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_NAME, map_location="cpu",
                                                      weights_only=True))
            self.lr_scheduler.load_state_dict(torch.load(folder / SCHEDULER_NAME, map_location="cpu",
                                                         weights_only=True))
            return None

    class ChunkedLossSFTTrainer(ResumableSFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = forward_loss(model, inputs, chunk_size, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over ranks
            if self.model.training:
                # padded rows count their mask; packed rows (no mask, no padding) every position
                mask = inputs.get("attention_mask")
                ids = inputs["input_ids"]
                tokens = mask.sum() if mask is not None else ids.new_tensor(ids.numel())
                n = self.accelerator.gather_for_metrics(tokens).sum().item()
                self._total_train_tokens += n
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return (loss, None) if return_outputs else loss

    cls = ChunkedLossSFTTrainer if chunk_size else ResumableSFTTrainer
    trl_log = logging.getLogger("trl.trainer.sft_trainer")
    trl_log.addFilter(_packed_rows_warnings)
    try:
        trainer = cls(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                      callbacks=list(callbacks))
    finally:
        trl_log.removeFilter(_packed_rows_warnings)
    trainer.remove_callback(PrinterCallback)  # the rich bar and metrics.jsonl report instead
    check_packed_collator(trainer, packed="seq_lengths" in train_dataset.column_names)
    return trainer


def check_packed_collator(trainer, packed: bool) -> None:
    """Packed rows need the padding-free collator (position ids from ``seq_lengths``, no attention mask).
    Unsloth turns ``padding_free`` off silently for models it cannot pack; the plain collator would then
    let the examples of a row attend to each other: refuse instead."""
    if packed and not getattr(trainer.data_collator, "padding_free", False):
        raise UserError(f"packing.enabled: the trainer's collator ({type(trainer.data_collator).__name__}) is not "
                        "padding-free on this backend, so packed examples would attend to each other; "
                        "set packing.enabled: false")


def training_config(
    path: str | Path, *, max_steps: int | str | None = None, backend: str | None = None,
    method: str | None = None,
) -> TrainingConfig:
    """The training config with ``train.run``'s command-line overrides, validated with the file in one
    pass: ``--backend hfx`` or ``--max-steps 0`` is the same one-line `UserError` as a bad YAML value."""
    overrides = {"train.max_steps": None if max_steps in (None, "") else max_steps, "backend": backend or None,
                 "train.method": method or None}
    return load_config(path, TrainingConfig, overrides)


@dataclass
class RunSetup:
    backend: str
    backend_reason: str
    run_dir: Path
    checkpoint: Path | None  # the checkpoint to resume from, or None for a fresh start


def setup_run(cfg: TrainingConfig, *, run_id: str | None, resume: str | None, nproc: int, say=print,
              say_backend: bool = True, reprepare: bool = False) -> RunSetup:
    """Backend, splits check, run dir and resume checkpoint: the same steps in this process, in the
    ``--nproc`` launcher and in every torchrun rank. Unsloth, when chosen, is imported here, before
    anything imports transformers/PEFT/TRL."""
    chosen, reason = pick_backend(cfg.backend, nproc=nproc, max_seq_length=cfg.model.max_seq_length)
    if say_backend:
        say(f"backend: {chosen} ({reason})")
    if chosen == "unsloth":
        late = import_unsloth()  # before transformers/PEFT/TRL, as Unsloth requires
        if late:
            log.warning("unsloth imported after %s: its patches may be incomplete", ", ".join(late))
    check_splits(cfg)
    run_dir, checkpoint = resolve_run(cfg, run_id, resume, reprepare)
    if checkpoint is not None:
        check_same_method(cfg, run_dir, checkpoint)
        check_same_base(cfg, run_dir, checkpoint)
        say(f"resuming {run_dir.name} from {checkpoint.name} (step {checkpoint.name.rsplit('-', 1)[-1]})")
    return RunSetup(chosen, reason, run_dir, checkpoint)


def run_training(
    cfg: TrainingConfig,
    *,
    run_id: str | None = None,
    resume: str | None = None,
    extra_callbacks: tuple = (),
    console=None,
    say=print,
    reprepare: bool = False,
) -> RunResult:
    """Train ``cfg`` (overrides already applied: `training_config`); rank 0 writes the run's files.
    ``reprepare``: a prepared run ``run_id`` whose snapshot differs from ``cfg`` is prepared again."""
    setup = setup_run(cfg, run_id=run_id, resume=resume, nproc=world_size(), say=say, reprepare=reprepare)
    chosen, reason, run_dir, checkpoint = setup.backend, setup.backend_reason, setup.run_dir, setup.checkpoint
    from scripts.training.backends import load_model
    from scripts.training.callbacks import MetricsCallback, RichProgressCallback, SignalCheckpoint, write_loss_plot
    from scripts.training.data import build_dataset, load_split

    tokenizer = load_checked_tokenizer(cfg)
    # train.prepare encoded (and packed) the split; only a run prepared before it kept them (or with other
    # inputs) re-encodes
    prepared = load_train_tokens(cfg, run_dir)
    train_dataset, stats = prepared or build_dataset(
        load_split(cfg.data, "train"), tokenizer, cfg.model.max_seq_length, cfg.data.truncation,
        pack_tokens=cfg.packing.max_tokens if cfg.packing.enabled else None)
    if stats.packing is not None:
        say(f"packing: {stats.packing.examples} examples in {stats.packing.rows} rows of <= "
            f"{stats.packing.max_tokens} tokens ({stats.packing.examples_per_row} per row, "
            f"{stats.packing.alone} longer ones alone)")
    if len(train_dataset) == 0:
        raise UserError("no training example fits max_seq_length; see `fab train.prepare`")
    if chosen == "unsloth":
        check_unsloth_fits(min(stats.longest_tokens, cfg.model.max_seq_length))
    dtype = torch_dtype(cfg.model.dtype)
    from transformers import set_seed

    set_seed(cfg.train.seed)  # LoRA A matrices are drawn at load time: same seed, same initial adapter
    method = cfg.train.method
    model = load_model(cfg, chosen, tokenizer, dtype)
    signals = SignalCheckpoint()
    callbacks = [MetricsCallback(run_dir / METRICS), RichProgressCallback(console), signals, *extra_callbacks]
    trainer = make_trainer(model, sft_args(cfg, run_dir, dtype, chosen), tokenizer, train_dataset,
                           cfg.loss.chunk_size if chosen == "hf" else None, callbacks)
    signals.install()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        signals.uninstall()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = RunResult(
        run_id=run_dir.name, run_dir=str(run_dir), backend=chosen, backend_reason=reason, method=method,
        resumed_from=str(checkpoint) if checkpoint else None, global_step=trainer.state.global_step,
        final_loss=losses[-1] if losses else None, train_examples=stats.examples_kept,
        dropped_too_long=stats.dropped_too_long, truncated=stats.truncated,
        world_size=trainer.accelerator.num_processes,
    )
    if result.world_size > 1:
        result.rank_adapter_sha256 = rank_fingerprints(trainer.model, method)
        if len(set(result.rank_adapter_sha256)) != 1:
            raise RuntimeError(f"DDP ranks ended with different {method} weights: {result.rank_adapter_sha256}")
    if signals.received is not None:
        result.interrupted_by = {2: "SIGINT", 15: "SIGTERM"}.get(signals.received, str(signals.received))
    elif trainer.is_world_process_zero():
        weights_dir = paths.run_weights_dir(run_dir, method)
        # lora: adapter_config.json + adapter_model.safetensors; full: config.json (rope scaling included)
        # + model.safetensors, the tied LM head stored once as the embeddings
        trainer.model.save_pretrained(weights_dir)
        tokenizer.save_pretrained(weights_dir)
        trainer.model.generation_config.save_pretrained(weights_dir)  # stops on <eos> and <end_of_turn>
        write_loss_plot(run_dir / METRICS, run_dir / "loss.png")
        if method == "full":
            result.model_dir = str(weights_dir)
        else:
            result.adapter_dir = str(weights_dir)
    if trainer.is_world_process_zero():
        (run_dir / RESULT).write_text(result.model_dump_json(indent=2) + "\n")
    return result
