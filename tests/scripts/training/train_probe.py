"""Trains through ``run_training`` with a probe recording what the trainer saw; used as a subprocess.

    python -m tests.scripts.training.train_probe CONFIG OUT_DIR RUN_ID [BACKEND]

Importing Unsloth patches transformers/TRL for the whole process, so the
Unsloth training test runs this in a fresh interpreter. It imports only what
``fab train.run`` imports before ``run_training`` (``scripts.training.run``),
checks that this did not load transformers/PEFT/TRL, imports Unsloth the way
``run_training`` does (``import_unsloth``) and records Unsloth's own
"import me first" warning, if any. Then it trains with ``Probe`` and writes
``OUT_DIR/probe.json`` (result, parameter changes, rope of the trained
model, generation EOS, Unsloth patches; with packing, ``packed_vs_alone``: the
backend's loss and gradients on a packed row vs its examples alone) and
``OUT_DIR/batches.pt`` (the ``input_ids``/``labels``/``attention_mask``/
``position_ids`` each training step received).
``make_probe()`` is also used in-process for the hf backend.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

IMPORT_FAILED = 3  # exit status when `import unsloth` itself fails (the test then skips)


def make_probe():
    import torch
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Parameter snapshots at train begin/end and every training batch as the collator hands it to
        the trainer's loss (the model's forward no longer sees ``labels``: the chunked loss takes them)."""

        def __init__(self):
            self.batches: list[dict] = []

        def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
            self.trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
            self.model = model
            loader = getattr(train_dataloader, "base_dataloader", train_dataloader)  # accelerate's adapter
            collate = loader.collate_fn

            def recorded(features):
                batch = collate(features)
                self.batches.append({k: batch[k].detach().cpu().clone() for k in
                                     ("input_ids", "labels", "attention_mask", "position_ids")
                                     if batch.get(k) is not None})
                return batch

            loader.collate_fn = recorded

        def on_train_end(self, args, state, control, model=None, **kwargs):
            # accelerate collates one batch ahead: the last one recorded never reached a step
            del self.batches[state.global_step * args.gradient_accumulation_steps:]
            after = dict(model.named_parameters())
            self.changed = {n: not torch.equal(self.before[n], after[n].detach()) for n in self.before}

    return Probe()


def model_facts(model) -> dict:
    from scripts.model.gemma3 import rope_summary

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT (lora) or not (full)
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return {"rope": rope_summary(model), "eos_token_id": model.generation_config.eos_token_id,
            "model_class": type(base).__name__, "tied": head.data_ptr() == embed.data_ptr(),
            "weight_dtypes": sorted({str(p.dtype) for p in model.parameters()})}


def packed_vs_alone(cfg, backend: str) -> dict:
    """The backend's own model and loss on one packed row of the longest, the median and the shortest
    training example (as TRL's padding-free collator sends it) against each example alone:
    answer-token-weighted loss and LoRA gradients, as the trainer sums them over a batch."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from scripts.training.backends import load_model
    from scripts.training.data import build_examples, load_split, pack_rows
    from scripts.training.prepare import load_checked_tokenizer

    tokenizer = load_checked_tokenizer(cfg)
    rows, _ = build_examples(load_split(cfg.data, "train"), tokenizer, cfg.model.max_seq_length,
                             cfg.data.truncation)
    rows = sorted(rows, key=lambda r: len(r["input_ids"]))
    rows = [rows[-1], rows[len(rows) // 2], rows[0]]
    (packed,), _ = pack_rows(rows, sum(len(r["input_ids"]) for r in rows))
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    model = load_model(cfg, backend, tokenizer).train()
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def summed(batch):  # loss x answer tokens: what num_items_in_batch makes of a mean
        model.zero_grad()
        n = int((batch["labels"][:, 1:] != -100).sum())
        loss = model(**batch, use_cache=False).loss * n
        loss.backward()
        return loss.item(), n, {k: p.grad.clone() for k, p in lora.items()}

    batch = collate([packed])
    packed_sum, packed_n, packed_grads = summed(batch)
    alone_sum, alone_n, alone_grads = 0.0, 0, None
    for row in rows:
        loss, n, grads = summed(collate([{**row, "seq_lengths": [len(row["input_ids"])]}]))
        alone_sum, alone_n = alone_sum + loss, alone_n + n
        alone_grads = grads if alone_grads is None else {k: alone_grads[k] + g for k, g in grads.items()}
    return {"seq_lengths": packed["seq_lengths"], "has_attention_mask": "attention_mask" in batch,
            "window": model.config.get_text_config().sliding_window,
            "packed_sum": packed_sum, "alone_sum": alone_sum, "packed_n": packed_n, "alone_n": alone_n,
            "grad_max_diff": max((packed_grads[k] - alone_grads[k]).abs().max().item() for k in lora),
            "grad_max": max(g.abs().max().item() for g in alone_grads.values())}


def main(config: str, out: str, run_id: str, backend: str = "unsloth") -> None:
    import scripts.training.run as run  # what `fab train.run` imports before training

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = {"preloaded": [m for m in ("transformers", "peft", "trl") if m in sys.modules]}
    if backend == "unsloth":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                facts["late"] = run.import_unsloth()
            except ImportError as exc:
                print(f"import unsloth: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
                sys.exit(IMPORT_FAILED)
        facts["unsloth_warnings"] = [str(w.message) for w in caught if "imported before" in str(w.message)]

    import torch
    import trl

    probe = make_probe()
    cfg = run.training_config(config, backend=backend)
    if cfg.packing.enabled:
        facts["packed_vs_alone"] = packed_vs_alone(cfg, "unsloth" if backend == "unsloth" else "hf")
    result = run.run_training(cfg, run_id=run_id, extra_callbacks=(probe,), say=print)
    facts.update(
        result=result.model_dump(), trainable=probe.trainable, changed=probe.changed,
        sft_trainer=f"{trl.SFTTrainer.__module__}.{trl.SFTTrainer.__name__}",
        **model_facts(probe.model),
    )
    (out_dir / "probe.json").write_text(json.dumps(facts, indent=1, default=str))
    torch.save(probe.batches, out_dir / "batches.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
