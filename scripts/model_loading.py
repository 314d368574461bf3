"""Find and load the weights to run: base + LoRA adapter (PEFT) or a merged export.

    from scripts.model_loading import load_resolved, resolve_weights
    resolved = resolve_weights("latest", Path("models/runs"))      # or a run dir / adapter dir
    model, tokenizer = load_resolved(resolved, dtype="auto")

Used by eval.generate, package.export and ops.backfill, so all three load a
run the same way: the run's rope scaling goes into the base config before the
adapter is attached, and `<end_of_turn>` is an EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.config import UserError, load_config

@dataclass
class ResolvedModel:
    base: str  # HF id or dir the weights come from (the merged export itself when merged)
    adapter_dir: Path | None
    run_dir: Path | None  # the training run the adapter belongs to, if any
    tokenizer_dir: str
    label: str  # Candidate.model


def resolve_weights(
    adapter: str, runs_dir: Path, *, base: str | None = None, merged: str | Path | None = None
) -> ResolvedModel:
    """Find the weights without loading them; fail with a one-line fix hint."""
    if merged is not None:
        merged = Path(merged)
        if not (merged / "config.json").is_file():
            raise UserError(f"merged model {merged} has no config.json; run `fab package.export` first")
        return ResolvedModel(str(merged), None, None, str(merged), str(merged))
    adapter = adapter_dir(adapter, runs_dir)
    run_dir = adapter.parent if adapter.name == "adapter" else None
    base = base or adapter_base(adapter)
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    run_id = run_dir.name if run_dir is not None else adapter.name
    return ResolvedModel(base, adapter, run_dir, str(adapter) if has_tokenizer else base, f"{base}+{run_id}")


def adapter_dir(adapter: str, runs_dir: Path) -> Path:
    if adapter == "latest":
        runs = sorted(
            (p.parent.parent for p in runs_dir.glob("*/adapter/adapter_config.json")),
            key=lambda run: ((run / "adapter" / "adapter_config.json").stat().st_mtime, run.name),
        )
        if not runs:
            raise UserError(
                f"no trained run with an adapter/ under {runs_dir}; "
                "run `fab train.run` or pass --adapter PATH"
            )
        return runs[-1] / "adapter"
    path = Path(adapter)
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise UserError(
        f"no PEFT adapter at {path} (no adapter_config.json there or in {path / 'adapter'}); "
        "pass --adapter with a run dir or adapter dir, or --run-id ID"
    )


def adapter_base(adapter: Path) -> str:
    import json

    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter}/adapter_config.json names no base model; set model.base in the config")
    return base


def training_rope(run_dir: Path | None) -> tuple[float, int] | None:
    """(factor, max_seq_length) the run was trained with, from its config.yaml snapshot."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    from scripts.config import TrainingConfig

    training = load_config(run_dir / "config.yaml", TrainingConfig)
    return training.model.rope.factor, training.model.max_seq_length


def torch_dtype(choice: str, device: str):
    import torch

    if choice == "bf16" or (choice == "auto" and device == "cuda"):
        return torch.bfloat16
    return torch.float32


def pretrained_kwargs(name_or_path: str) -> dict:
    """A local dir loads directly; a hub id must be in the local cache unless the hub is reachable."""
    from scripts.hub import hub_reachable, hub_token

    if Path(name_or_path).is_dir():
        return {}
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str) or not hub_reachable():
        return {"local_files_only": True}
    return {"token": hub_token()}


def load_resolved(resolved: ResolvedModel, dtype: str = "auto", attn_implementation: str = "auto"):
    """(model, tokenizer) on the best device, eval mode; LoRA attached (not merged) via PEFT."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from scripts.hub import load_tokenizer
    from scripts.modeling import apply_rope_scaling, resolve_attn_implementation, restore_end_of_turn_eos

    device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = pretrained_kwargs(resolved.base)
    try:
        config = AutoConfig.from_pretrained(resolved.base, **kwargs)
        rope = training_rope(resolved.run_dir)
        if rope is not None and rope[0] > 1:
            apply_rope_scaling(config, factor=rope[0], max_seq_length=rope[1])
        model = AutoModelForCausalLM.from_pretrained(
            resolved.base, config=config, dtype=torch_dtype(dtype, device),
            attn_implementation=resolve_attn_implementation(attn_implementation), **kwargs,
        )
        tokenizer = load_tokenizer(resolved.tokenizer_dir)
    except OSError as exc:
        message = f"cannot load base model {resolved.base}: {exc}; set model.base to a local dir"
        raise UserError(message) from exc
    if resolved.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(resolved.adapter_dir))
    model.to(device).eval()
    restore_end_of_turn_eos(model, tokenizer)
    return model, tokenizer
