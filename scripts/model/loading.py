"""The one model layer: find and load a base model, a LoRA adapter on its base, a full fine-tune, or a
merged bundle.

    from scripts.model.loading import load_base, load_resolved, load_tokenizer, resolve_weights
    model = load_base("google/gemma-3-270m", dtype="auto", rope=(4.0, 131072))  # training, before LoRA
    resolved = resolve_weights("latest", Path("models/runs"))      # or a run dir / adapter dir / merged=
    model, tokenizer = load_resolved(resolved, dtype="auto")       # eval, export, backfill

A training run holds ``adapter/`` (``train.method: lora``: the adapter goes on
its base) or ``model/`` (``full``: every weight was trained, the folder is the
model, ``resolved.method == "full"``); ``latest``, a run dir, an adapter dir or
a full run's ``model/`` resolve either way.

Every stage loads through here, so all of them follow the same rules:

- where the files come from (``pretrained_kwargs``): a local dir loads as is,
  and a path that looks local but is missing is reported as missing; a hub id
  loads from the local cache first, else from the hub with
  ``HUGGINGFACE_TOKEN`` when the hub answers; when it cannot be loaded at all
  the one-line error names ``fab train.import-gguf``;
- one dtype rule (``torch_dtype``: bf16 on a GPU, fp32 on CPU, never fp16,
  in which Gemma 3 overflows) and one attention rule
  (``scripts.model.gemma3.resolve_attn_implementation``);
- a run's rope scaling goes into the base config before the weights load
  (and before an adapter is attached), and ``<end_of_turn>`` is an EOS.

``scripts.model.gemma3`` holds the Gemma 3 specifics this layer applies,
``scripts.model.hub`` the token and the reachability probe, ``scripts.chat`` the
chat format, ``scripts.model.tiny`` the tiny models of the demo and tests,
``scripts.training.backends`` the LoRA wrapping (hf or Unsloth) on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.config import UserError, load_config
from scripts.contracts import Provenance, RunSettings
from scripts.paths import RUN_ADAPTER, RUN_CONFIG, RUN_MODEL

ZERO_SHOT_SUFFIX = ", zero-shot"  # ends the label (Candidate.model) of a base-model-alone run
IMPORT_HINT = ("import it from a GGUF file with `fab train.import-gguf`, or set HUGGINGFACE_TOKEN "
               "(licence accepted on the hub)")
LOCAL_HINT = "fix the path, or build it with `fab train.init-tiny` or `fab train.import-gguf`"


FULL_SUFFIX = " (full)"  # ends the run id in the label of a full fine-tune: "<base>+<run_id> (full)"


@dataclass
class ResolvedModel:
    base: str  # HF id or dir the weights come from (the merged export, or a full run's model/, itself)
    adapter_dir: Path | None
    run_dir: Path | None  # the training run the adapter (or full model) belongs to, if any
    tokenizer_dir: str
    label: str  # Candidate.model
    method: str | None = None  # a training run's train.method: lora | full; None: a merged bundle or a base
    trained_from: str | None = None  # the base model the run started from (full: its config.yaml's)
    zero_shot: bool = False  # the base model alone, as released

    def provenance(self) -> Provenance:
        """What these weights are, for each candidate they generate: read now from the base's import record
        and the run folder, so a report never has to (they may have changed or gone by then)."""
        from scripts.model.identity import base_model_label

        base = self.trained_from or self.base
        run_id = None
        if self.run_dir is not None:
            run_id = self.run_dir.name
        elif self.adapter_dir is not None:  # an adapter outside a run: named by its folder, as in the label
            run_id = self.adapter_dir.name
        adapter = self.base if self.method == "full" else self.adapter_dir
        return Provenance(base=base, base_label=base_model_label(base), zero_shot=self.zero_shot,
                          method=self.method, run_id=run_id, adapter=str(adapter) if adapter else None,
                          training=run_settings(self.run_dir))


def resolve_weights(
    adapter: str, runs_dir: Path, *, base: str | None = None, merged: str | Path | None = None,
    zero_shot: bool = False,
) -> ResolvedModel:
    """Find the weights without loading them; fail with a one-line fix hint.

    ``zero_shot``: the base model alone, as released (no adapter, no rope change): the baseline a
    fine-tune is compared with. Its base is ``base``, else the one the run was trained from (a LoRA
    adapter's base, or a full fine-tune's starting model).
    """
    if zero_shot:
        if base is None:
            base = trained_base(*run_weights(adapter, runs_dir))
        from scripts.model.identity import base_model_label

        return ResolvedModel(base, None, None, base, f"{base_model_label(base)}{ZERO_SHOT_SUFFIX}", zero_shot=True)
    if merged is not None:
        merged = Path(merged)
        if not (merged / "config.json").is_file():
            raise UserError(f"merged model {merged} has no config.json; run `fab package.export` first")
        return ResolvedModel(str(merged), None, None, str(merged), str(merged))
    weights, method = run_weights(adapter, runs_dir)
    if method == "full":
        run_dir = weights.parent
        if base is not None:
            raise UserError(f"{run_dir} is a full fine-tune (train.method full): its model/ is the whole model, "
                            f"there is no adapter to put on base {base}; remove the base override")
        trained_from = trained_base(weights, method)
        label = f"{trained_from}+{run_dir.name}{FULL_SUFFIX}"
        return ResolvedModel(str(weights), None, run_dir, str(weights), label, method="full",
                             trained_from=trained_from)
    adapter = weights
    run_dir = adapter.parent if adapter.name == RUN_ADAPTER else None
    base = base or adapter_base(adapter)
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    run_id = run_dir.name if run_dir is not None else adapter.name
    return ResolvedModel(base, adapter, run_dir, str(adapter) if has_tokenizer else base, f"{base}+{run_id}",
                         method="lora", trained_from=base)


def _weights_file(run: Path) -> tuple[Path, str] | None:
    """``(adapter/adapter_config.json | model/config.json, method)`` of a finished run dir, if any."""
    for folder, marker, method in (
        (RUN_ADAPTER, "adapter_config.json", "lora"), (RUN_MODEL, "config.json", "full"),
    ):
        if (run / folder / marker).is_file():
            return run / folder / marker, method
    return None


def is_full_model_dir(path: Path) -> bool:
    """A run's ``model/``: a model folder (config.json, no adapter) inside a run dir (config.yaml beside it)."""
    return (path.name == RUN_MODEL and (path / "config.json").is_file()
            and not (path / "adapter_config.json").is_file() and (path.parent / RUN_CONFIG).is_file())


def run_weights(adapter: str, runs_dir: Path) -> tuple[Path, str]:
    """``(weights dir, method)``: a run's adapter/ (``lora``) or model/ (``full``). ``adapter`` is
    ``latest`` (the newest finished run of either method), a run dir, an adapter dir or a run's model/."""
    if adapter == "latest":
        found = [hit for run in runs_dir.glob("*") if (hit := _weights_file(run))]
        if not found:
            raise UserError(
                f"no trained run with an adapter/ (or a full fine-tune's model/) under {runs_dir}; "
                "run `fab train.run` or pass --adapter PATH"
            )
        marker, method = max(found, key=lambda hit: (hit[0].stat().st_mtime, hit[0].parent.parent.name))
        return marker.parent, method
    path = Path(adapter)
    for candidate in (path, path / RUN_ADAPTER):
        if (candidate / "adapter_config.json").is_file():
            return candidate, "lora"
    for candidate in (path / RUN_MODEL, path):
        if is_full_model_dir(candidate):
            return candidate, "full"
    raise UserError(
        f"no PEFT adapter at {path} (no adapter_config.json there or in {path / RUN_ADAPTER}) "
        f"nor a full fine-tune (no {path / RUN_MODEL}/config.json); "
        "pass --adapter with a run dir or adapter dir, or --run-id ID"
    )


def adapter_dir(adapter: str, runs_dir: Path) -> Path:
    """The LoRA adapter dir of ``adapter`` (``latest``, a run dir or an adapter dir); a full run is an error."""
    weights, method = run_weights(adapter, runs_dir)
    if method == "full":
        raise UserError(f"{weights.parent} is a full fine-tune (train.method full): it has model/, no adapter")
    return weights


def trained_base(weights: Path, method: str) -> str:
    """The base model a run started from: the adapter's base (lora) or the run config's model (full)."""
    if method == "lora":
        return adapter_base(weights)
    config = weights.parent / RUN_CONFIG
    from scripts.training.config import TrainingConfig

    return load_config(config, TrainingConfig).model.name_or_path


def adapter_base(adapter: Path) -> str:
    import json

    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter}/adapter_config.json names no base model; set model.base in the config")
    return base


def training_rope(run_dir: Path | None) -> tuple[float, int] | None:
    """(factor, max_seq_length) the run was trained with, from its config.yaml snapshot."""
    if run_dir is None or not (run_dir / RUN_CONFIG).is_file():
        return None
    from scripts.training.config import TrainingConfig

    training = load_config(run_dir / RUN_CONFIG, TrainingConfig)
    return training.model.rope.factor, training.model.max_seq_length


def run_settings(run_dir: Path | None) -> RunSettings | None:
    """A run's settings from its result.json (RunResult) and config.yaml (TrainingConfig); None without a
    readable result.json (an adapter outside a run, a run still training or broken)."""
    from pydantic import ValidationError

    from scripts.contracts import RunResult
    from scripts.training.config import TrainingConfig

    result_path = run_dir / "result.json" if run_dir is not None else None
    if result_path is None or not result_path.is_file():
        return None
    try:
        result = RunResult.model_validate_json(result_path.read_bytes())
        config = load_config(run_dir / RUN_CONFIG, TrainingConfig) if (run_dir / RUN_CONFIG).is_file() else None
    except (ValidationError, UserError):
        return None
    batch = {}
    if config is not None:
        packing, train = config.packing, config.train
        batch = {"lr": train.lr, "grad_accum": train.grad_accum,
                 "packed_max_tokens": packing.max_tokens if packing.enabled else None,
                 "batch_size": None if packing.enabled else train.per_device_batch_size}
    return RunSettings(method=result.method, global_step=result.global_step, train_examples=result.train_examples,
                       final_loss=result.final_loss, backend=result.backend, world_size=result.world_size, **batch)


def torch_dtype(choice: str, gpu: bool | None = None):
    """The one dtype rule: ``bf16``/``fp32`` as asked; ``auto`` is bf16 on a GPU, fp32 on CPU."""
    import torch

    gpu = torch.cuda.is_available() if gpu is None else gpu
    if choice == "bf16" or (choice == "auto" and gpu):
        return torch.bfloat16
    return torch.float32


def looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id (``org/name``): it exists, is absolute or ``./``-relative, has more
    than one ``/``, or its first folder exists here (``models/tiny-gemma3``)."""
    path = Path(name_or_path).expanduser()
    if path.exists() or path.is_absolute() or name_or_path.startswith((".", "~")):
        return True
    return name_or_path.count("/") > 1 or ("/" in name_or_path and path.parent.is_dir())


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(repo_id, name), str)
                   for name in ("config.json", "tokenizer_config.json"))
    except ValueError:  # not a valid repo id
        return False


def hub_unavailable(name_or_path: str, reason: str) -> UserError:
    return UserError(f"cannot load {name_or_path} from the Hugging Face hub ({reason}); {IMPORT_HINT}")


def pretrained_kwargs(name_or_path: str) -> dict:
    """``from_pretrained`` keywords for a model or tokenizer: local dir -> none; hub id -> the local
    cache when it holds it, else the hub with the token; `UserError` when neither can work."""
    from scripts.model.hub import hub_reachable, hub_token

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        from scripts.model.identity import check_current_import

        check_current_import(path)
        return {}
    if path.exists():
        raise UserError(f"{name_or_path} is a file, not a model dir (config.json + weights); {LOCAL_HINT}")
    if looks_local(name_or_path):
        raise UserError(f"local model dir {name_or_path} does not exist; {LOCAL_HINT}")
    if _cached(name_or_path):
        return {"local_files_only": True}
    if not hub_reachable():
        raise hub_unavailable(name_or_path, "not in the local cache and the hub is unreachable")
    return {"token": hub_token()}


def load_error(name_or_path: str, exc: Exception, kwargs: dict) -> UserError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if kwargs:  # a hub id: gated without a token, unknown repo, cache incomplete
        return hub_unavailable(name_or_path, reason)
    return UserError(f"cannot load {name_or_path}: {reason}")


def load_model_config(name_or_path: str, rope: tuple[float, int] | None = None, kwargs: dict | None = None):
    """The model's config, with rope scaling ``(factor, max_seq_length)`` applied when given."""
    from transformers import AutoConfig

    from scripts.model.gemma3 import apply_rope_scaling

    kwargs = pretrained_kwargs(name_or_path) if kwargs is None else kwargs
    try:
        config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise load_error(name_or_path, exc, kwargs) from exc
    if rope is not None:
        try:
            apply_rope_scaling(config, factor=rope[0], max_seq_length=rope[1])
        except ValueError as exc:
            raise UserError(f"model.rope / model.max_seq_length: {exc}") from exc
    return config


def load_base(name_or_path: str, *, dtype="auto", attn_implementation: str = "auto",
              rope: tuple[float, int] | None = None, max_seq_length: int | None = None):
    """A causal LM from a local dir or hub id: rope scaling through ``config=`` (never as a
    ``from_pretrained`` keyword), one dtype rule (``dtype`` may already be a torch dtype), one
    attention rule (``max_seq_length``: the longest sequence it will train on, which sdpa/eager's
    seq x seq mask must fit). On CPU; callers move it."""
    from transformers import AutoModelForCausalLM

    from scripts.model.gemma3 import resolve_attn_implementation

    dtype = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    attn_implementation = resolve_attn_implementation(attn_implementation, max_seq_length, dtype=dtype)
    kwargs = pretrained_kwargs(name_or_path)
    config = load_model_config(name_or_path, rope, kwargs)
    try:
        return AutoModelForCausalLM.from_pretrained(
            name_or_path, config=config, dtype=dtype, attn_implementation=attn_implementation, **kwargs,
        )
    except OSError as exc:
        raise load_error(name_or_path, exc, kwargs) from exc


def load_tokenizer(name_or_path: str):
    """A tokenizer by the same rules as the model (local dir, cache, hub)."""
    from transformers import AutoTokenizer

    kwargs = pretrained_kwargs(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise load_error(name_or_path, exc, kwargs) from exc


# whitespace runs, newlines, a tab and HTML tags: where Gemma tokenizers built by different rules differ
TOKENIZER_PROBE = "  two  spaces\n\n\t<td>x</td>   y"


def check_run_tokenizer(tokenizer, resolved: ResolvedModel) -> None:
    """A run's own tokenizer (saved beside its adapter or in its model/) must encode as the base it
    was trained from does now: a run trained on a base imported with an older tokenizer learned
    other token sequences."""
    from scripts.model.identity import existing_import

    origin = resolved.trained_from or resolved.base
    if resolved.tokenizer_dir == origin or existing_import(Path(origin)) is None:
        return  # the base's own tokenizer, or not an import (only imports change under a run)
    base = load_tokenizer(origin)
    if tokenizer(TOKENIZER_PROBE).input_ids != base(TOKENIZER_PROBE).input_ids:
        raise UserError(f"{resolved.tokenizer_dir} tokenizes unlike its base {origin} (the run was trained "
                        "before the base was re-imported with Gemma's whitespace pieces); retrain it with "
                        "`fab train.run`")


def load_resolved(resolved: ResolvedModel, dtype: str = "auto", attn_implementation: str = "auto"):
    """(model, tokenizer) on the best device, eval mode; LoRA attached (not merged) via PEFT. A full
    fine-tune's model/ loads as a model (its config.json already holds the run's rope scaling, applied
    again here from config.yaml, which changes nothing unless the folder was tampered with)."""
    import torch

    from scripts.model.gemma3 import restore_end_of_turn_eos

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rope = training_rope(resolved.run_dir)
    model = load_base(resolved.base, dtype=torch_dtype(dtype, gpu=device == "cuda"),
                      attn_implementation=attn_implementation, rope=rope if rope and rope[0] > 1 else None)
    tokenizer = load_tokenizer(resolved.tokenizer_dir)
    check_run_tokenizer(tokenizer, resolved)
    if resolved.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(resolved.adapter_dir))
    model.to(device).eval()
    restore_end_of_turn_eos(model, tokenizer)
    return model, tokenizer
