"""Backend choice and model loading: ``hf`` (transformers + PEFT) or ``unsloth``.

    from scripts.training.backends import pick_backend, load_model
    backend, why = pick_backend(cfg.backend)          # ("hf", "auto: no GPU found")
    model = load_model(cfg, backend, tokenizer)       # rope-scaled, ready for SFTTrainer: LoRA-wrapped
                                                      # (train.method lora) or every weight trainable (full)

Both backends load the base model through ``scripts.model.loading`` (the same
local-dir / cache / hub rule and dtype rule as eval, export and backfill) and
end with the same model: rope scaling written into the config by the project
(``scripts.model.gemma3.apply_rope_scaling``; Unsloth's Gemma 3 loader ignores
its own ``rope_scaling``), checked from the live rotary
buffers, ``<end_of_turn>`` restored as an EOS; then LoRA on ``cfg.lora``
(``train.method: lora``) or, for ``full``, no PEFT wrapping: every parameter
trains, the embeddings stay tied to the LM head (one tensor), and the weights
are kept in fp32 (``master_dtype``) with bf16 autocast on a GPU, on both
backends (Unsloth: ``full_finetuning=True`` with ``float32_mixed_precision=True``).
Attention: ``scripts.model.gemma3.resolve_attn_implementation`` (flash_attention_2 or
the project's linear-memory ``windowed_sdpa``). Unsloth on a GPU ignores it for
Gemma 3: its patched ``Gemma3Attention.forward`` builds a [batch, 1, seq, seq]
mask for the sliding layers (``scripts.model.attention`` says where), so ``auto``
leaves Unsloth for hf when ``model.max_seq_length`` would need a mask the GPU
cannot hold, and an explicit ``unsloth`` is refused, in one line, when the
longest training sequence would (``check_unsloth_fits``). On CPU Unsloth runs
transformers' own Gemma 3 code, which takes ``windowed_sdpa``.
Unsloth is imported lazily (``import_unsloth``), and before transformers,
PEFT and TRL, as it requires: nothing this module or ``scripts.training.run``
imports at module level pulls those in, so ``run_training`` can import
Unsloth first. Importing Unsloth patches transformers/TRL for the whole
process; tests run the Unsloth backend in a subprocess.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys

import torch

from scripts.config import UserError
from scripts.model import loading
from scripts.model.hub import hub_token
from scripts.model.loading import load_base, pretrained_kwargs, torch_dtype
from scripts.training.config import TrainingConfig

log = logging.getLogger(__name__)
UNSLOTH_BEFORE = ("trl", "transformers", "peft")  # the modules Unsloth must patch before they load


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def import_unsloth() -> list[str]:
    """``import unsloth``; returns which of transformers/PEFT/TRL were already imported (then Unsloth
    warns that its optimisations may be missing). Idempotent."""
    late = [name for name in UNSLOTH_BEFORE if name in sys.modules and "unsloth" not in sys.modules]
    import unsloth  # noqa: F401

    return late


# Unsloth computes Gemma 3's attention in fp32 (it upcasts q, k, v), so sdpa's float copy of its mask is fp32
UNSLOTH_MASK_DTYPE_BYTES = 4
UNSLOTH_FIX = "use --backend hf (flash_attention_2 or windowed_sdpa: memory linear in length)"


def unsloth_overflow(seq_len: int, *, gpu: bool | None = None, device_memory: int | None = None) -> str | None:
    """What Unsloth's Gemma 3 attention would build at ``seq_len`` tokens when it cannot fit the GPU, else
    None (see ``scripts.model.attention``). On CPU Unsloth runs transformers' Gemma 3 code with the project's
    linear attention: always None."""
    from scripts.model.gemma3 import seq_mask_overflow

    gpu = torch.cuda.is_available() if gpu is None else gpu
    return seq_mask_overflow(seq_len, UNSLOTH_MASK_DTYPE_BYTES, device_memory) if gpu else None


def check_unsloth_fits(seq_len: int, *, gpu: bool | None = None, device_memory: int | None = None) -> None:
    """One-line UserError when Unsloth cannot train sequences of ``seq_len`` tokens here."""
    if overflow := unsloth_overflow(seq_len, gpu=gpu, device_memory=device_memory):
        raise UserError(f"backend unsloth: its Gemma 3 attention on a GPU builds {overflow} (the longest training "
                        f"sequence); {UNSLOTH_FIX}")


def pick_backend(
    requested: str, *, gpu: bool | None = None, unsloth: bool | None = None, nproc: int = 1,
    max_seq_length: int | None = None, device_memory: int | None = None,
) -> tuple[str, str]:
    """``(backend, reason)``. ``auto`` is unsloth only with a GPU *and* unsloth installed, on one process, and
    when Unsloth's seq x seq Gemma 3 mask at ``max_seq_length`` fits the GPU (``unsloth_overflow``)."""
    gpu = torch.cuda.is_available() if gpu is None else gpu
    unsloth = unsloth_installed() if unsloth is None else unsloth
    if requested == "hf":
        return "hf", "requested"
    if requested == "unsloth":
        if nproc > 1:
            raise UserError(f"--nproc {nproc}: Unsloth trains on a single GPU; "
                            "use --backend hf for multi-process DDP")
        if not unsloth:
            raise UserError("backend unsloth requested but unsloth is not installed "
                            "(pip install -r requirements-gpu.txt), or use --backend hf")
        return "unsloth", "requested" + ("" if gpu else " (no GPU found: unsloth trains on CPU, slowly)")
    if nproc > 1:
        return "hf", f"auto: --nproc {nproc} is multi-process DDP, which Unsloth does not do"
    if gpu and unsloth:
        if max_seq_length and (overflow := unsloth_overflow(max_seq_length, gpu=gpu, device_memory=device_memory)):
            return "hf", (f"auto: Unsloth's Gemma 3 attention on a GPU would build {overflow} (model.max_seq_length); "
                          "hf trains with memory linear in length")
        return "unsloth", "auto: GPU and unsloth present"
    if not gpu:
        return "hf", "auto: no GPU found"
    return "hf", "auto: GPU found but unsloth is not installed"


def load_model_config(cfg: TrainingConfig):
    """The base model's config with the project's rope scaling applied (UserError if impossible)."""
    return loading.load_model_config(cfg.model.name_or_path, (cfg.model.rope.factor, cfg.model.max_seq_length))


def check_rope(model, cfg: TrainingConfig) -> dict:
    """Refuse a model whose live global-layer rope buffers are not scaled by ``cfg.model.rope.factor``."""
    from scripts.model.gemma3 import rope_summary

    summary = rope_summary(model)
    measured = summary["full_attention"].get("measured_factor")
    if measured is None or abs(measured - cfg.model.rope.factor) > 1e-3 or (
        summary["max_position_embeddings"] != cfg.model.max_seq_length
    ):
        raise RuntimeError(f"rope scaling did not reach the model: {summary}")
    return summary


def load_model(cfg: TrainingConfig, backend: str, tokenizer, dtype: torch.dtype | None = None):
    """The model SFTTrainer trains; ``dtype`` is the compute dtype (``cfg.model.dtype`` by default)."""
    dtype = dtype or torch_dtype(cfg.model.dtype)
    if backend == "unsloth":
        model = _load_unsloth(cfg, tokenizer, dtype)
    else:
        model = _load_hf(cfg, tokenizer, dtype)
    if cfg.train.method == "full":
        check_full(model)
    return model


def master_dtype(cfg: TrainingConfig, dtype: torch.dtype) -> torch.dtype:
    """The dtype the trained weights are stored in: a LoRA base stays in the compute dtype (frozen); a full
    fine-tune keeps fp32 weights (bf16 Adam updates of ~1e-5 round away) and computes under bf16 autocast."""
    return torch.float32 if cfg.train.method == "full" else dtype


def check_full(model) -> None:
    """A full fine-tune: no PEFT layer, every parameter trainable, input embeddings = LM head (tied)."""
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    peft = [n for n, _ in model.named_parameters() if "lora_" in n]
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    if frozen or peft or head.data_ptr() != embed.data_ptr():
        raise RuntimeError(f"not a full fine-tune: frozen {frozen[:3]}, LoRA {peft[:3]}, "
                           f"LM head tied to the embeddings: {head.data_ptr() == embed.data_ptr()}")


def lora_config(cfg: TrainingConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )


def _load_hf(cfg: TrainingConfig, tokenizer, dtype: torch.dtype):
    from peft import get_peft_model

    from scripts.model.gemma3 import restore_end_of_turn_eos

    model = load_base(cfg.model.name_or_path, dtype=master_dtype(cfg, dtype),
                      attn_implementation=cfg.model.attn_implementation,
                      rope=(cfg.model.rope.factor, cfg.model.max_seq_length), max_seq_length=cfg.model.max_seq_length)
    check_rope(model, cfg)
    restore_end_of_turn_eos(model, tokenizer)
    if cfg.train.method == "full":
        return model.train()  # every parameter already requires grad; nothing to wrap
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA + checkpointing: embeddings are frozen
    return get_peft_model(model, lora_config(cfg))


def _load_unsloth(cfg: TrainingConfig, tokenizer, dtype: torch.dtype):
    import_unsloth()  # normally already done by run_training, before transformers was imported
    from unsloth import FastModel

    from scripts.model.gemma3 import apply_rope_scaling, resolve_attn_implementation, restore_end_of_turn_eos

    pretrained_kwargs(cfg.model.name_or_path)  # a missing dir or an unreachable hub id: the same one-line error
    full = cfg.train.method == "full"
    # full: Unsloth's own full fine-tuning path (every weight trainable, tied embeddings kept, no LoRA).
    # On a GPU, float32_mixed_precision keeps fp32 weights under bf16 compute, as master_dtype does on the
    # hf backend; Unsloth's CPU loader (FastCPUModel) has no such keyword and trains fp32 throughout.
    takes_fp32_master = "float32_mixed_precision" in inspect.signature(FastModel.from_pretrained).parameters
    extra = {"float32_mixed_precision": True} if full and takes_fp32_master else {}
    model, _ = FastModel.from_pretrained(
        model_name=cfg.model.name_or_path,
        max_seq_length=cfg.model.max_seq_length,
        dtype=dtype,
        load_in_4bit=False,
        full_finetuning=full,
        attn_implementation=resolve_attn_implementation(cfg.model.attn_implementation, cfg.model.max_seq_length,
                                                        dtype=dtype),
        use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False,
        token=hub_token(),
        **extra,
    )
    # Unsloth's Gemma 3 loader ignores rope_scaling: write it into the config and buffers ourselves.
    apply_rope_scaling(model, cfg.model.rope.factor, cfg.model.max_seq_length)
    restore_end_of_turn_eos(model, tokenizer)  # Unsloth keeps only <eos>
    if full:
        check_rope(model, cfg)
        return model
    model = FastModel.get_peft_model(
        model, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none",
        use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False,
        random_state=cfg.train.seed,
    )
    check_rope(model, cfg)
    return model
