"""Gemma 3 specifics in one place: rope scaling to 128k, stop tokens, the attention kernel.

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from scripts.model.gemma3 import apply_rope_scaling, restore_end_of_turn_eos, rope_summary

    config = AutoConfig.from_pretrained(base)
    apply_rope_scaling(config, factor=4.0, max_seq_length=131072)   # before the model is built
    model = AutoModelForCausalLM.from_pretrained(base, config=config)
    rope_summary(model)   # {"full_attention": {"rope_type": "linear", "factor": 4.0, ...}, ...}
    restore_end_of_turn_eos(model, tokenizer)   # after Unsloth, which keeps only <eos>

Loading goes through ``scripts.model.loading``, which applies these; the chat
format is ``scripts.chat``.

How transformers 5.17 spells Gemma 3 rope (models/gemma3/configuration_gemma3.py,
``Gemma3TextConfig.convert_rope_params_to_dict``): ``rope_parameters`` is keyed
by layer type, ``{"full_attention": {...}, "sliding_attention": {...}}``, and
``Gemma3RotaryEmbedding`` builds one inv_freq buffer per layer type from it.
The legacy ``rope_scaling=`` config argument is merged into ``full_attention``.
A flat ``{"rope_type": "linear", "factor": 4.0}`` is *not* per-layer: given to
``AutoConfig``/``from_pretrained`` as a keyword it replaces the nested dict and
the model fails to build (``KeyError: 'full_attention'``); merged into an
existing config in place it is ignored, the model trains unscaled, and only
``save_pretrained`` fails. ``rope_summary`` reports such keys under
``"ignored_flat_keys"`` so callers can refuse them.

Linear scaling never needs ``original_max_position_embeddings`` in transformers
(only llama3/yarn/longrope read it), and vLLM skips its rope-factor multiply for
any ``model_type`` containing ``gemma3``, using ``max_position_embeddings`` as
the served length. We still record the pre-scaling length as a top-level
``original_max_position_embeddings`` (ignored by both) for people reading config.json.
"""

from __future__ import annotations

import math

import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from scripts.host import this_host
from scripts.model.config import QUADRATIC_ATTENTION

LAYER_TYPES = ("full_attention", "sliding_attention")
DEFAULT_THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}  # gemma-3-270m's bases


def _text_config(model_or_config):
    config = getattr(model_or_config, "config", model_or_config)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _rotary_modules(model):
    """Modules holding per-layer-type rope buffers (``full_attention_inv_freq`` ...)."""
    if not isinstance(model, torch.nn.Module):
        return []
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "rope_type", None), dict) and hasattr(m, "full_attention_inv_freq")
    ]


def apply_rope_scaling(model_or_config, factor: float = 4.0, max_seq_length: int = 131072) -> None:
    """Linear rope scaling on the global layers only; sliding layers keep their own base.

    Idempotent (sets absolute values). Pass the config *before* building the
    model; given a model, its rotary buffers are recomputed as well.
    """
    config = _text_config(model_or_config)
    if "full_attention" not in (getattr(config, "layer_types", None) or []):
        raise ValueError(f"{type(config).__name__} has no full_attention layers: not a Gemma 3 text config")
    if factor < 1:
        raise ValueError(f"rope factor must be >= 1, got {factor}")
    full = rope_summary(config)["full_attention"]
    current_factor = full["factor"] if full["rope_type"] == "linear" else 1.0
    pretrained_len = getattr(config, "original_max_position_embeddings", None) or round(
        config.max_position_embeddings / current_factor
    )
    if not math.isclose(pretrained_len * factor, max_seq_length):
        raise ValueError(
            f"max_seq_length ({max_seq_length}) must be the pretrained context ({pretrained_len}) x factor "
            f"({factor}); pass the serving context window (e.g. 131072 with factor 4), "
            "not a training truncation length"
        )
    old = config.rope_parameters or {}
    theta = {t: (old.get(t) or {}).get("rope_theta", DEFAULT_THETA[t]) for t in LAYER_TYPES}
    config.rope_parameters = {  # a fresh dict: also drops stray flat keys
        "full_attention": {
            "rope_type": "linear",
            "factor": float(factor),
            "rope_theta": theta["full_attention"],
        },
        "sliding_attention": {"rope_type": "default", "rope_theta": theta["sliding_attention"]},
    }
    config.max_position_embeddings = int(max_seq_length)
    config.original_max_position_embeddings = int(pretrained_len)
    for module in _rotary_modules(model_or_config):
        _refresh_rotary_buffers(module)


def _refresh_rotary_buffers(module) -> None:
    """Recompute a Gemma3RotaryEmbedding's buffers from its config, as ``_init_weights`` does on load."""
    for layer_type in module.layer_types:
        rope_type = module.config.rope_parameters[layer_type]["rope_type"]
        module.rope_type[layer_type] = rope_type
        if rope_type == "default":
            init_fn = module.compute_default_rope_parameters
        else:
            init_fn = ROPE_INIT_FUNCTIONS[rope_type]
        buffer = getattr(module, f"{layer_type}_inv_freq")
        inv_freq, scaling = init_fn(module.config, buffer.device, layer_type=layer_type)
        with torch.no_grad():
            buffer.copy_(inv_freq)
            getattr(module, f"{layer_type}_original_inv_freq").copy_(inv_freq)
        setattr(module, f"{layer_type}_attention_scaling", scaling)


def rope_summary(model_or_config) -> dict:
    """What rope each layer type gets, from the config and (for a model) the live buffers.

    ``{"full_attention": {"rope_type", "factor", "theta"}, "sliding_attention": {...},
    "max_position_embeddings": int, "original_max_position_embeddings": int | None,
    "ignored_flat_keys": dict}``. For a model each layer type also carries
    ``measured_factor``/``measured_theta`` read back from its inv_freq buffer
    (linear scaling divides inv_freq by the factor, and inv_freq[0] = 1/factor).
    A missing layer type reads ``{"rope_type": None, ...}``.
    """
    config = _text_config(model_or_config)
    params = dict(config.rope_parameters or {})
    summary: dict = {}
    for layer_type in LAYER_TYPES:
        p = params.get(layer_type)
        p = p if isinstance(p, dict) else {}
        summary[layer_type] = {
            "rope_type": p.get("rope_type", p.get("type")),
            "factor": float(p.get("factor", 1.0)),
            "theta": p.get("rope_theta"),
        }
    summary["max_position_embeddings"] = config.max_position_embeddings
    summary["original_max_position_embeddings"] = getattr(config, "original_max_position_embeddings", None)
    summary["ignored_flat_keys"] = {k: v for k, v in params.items() if k not in LAYER_TYPES}
    for module in _rotary_modules(model_or_config)[:1]:
        for layer_type in module.layer_types:
            inv_freq = getattr(module, f"{layer_type}_inv_freq").double()
            dim = 2 * inv_freq.numel()  # head_dim (partial_rotary_factor is 1 for Gemma 3)
            measured_factor = float(1.0 / inv_freq[0])
            measured_theta = float((inv_freq[1] * measured_factor) ** (-dim / 2))
            summary[layer_type]["measured_factor"] = round(measured_factor, 6)
            summary[layer_type]["measured_theta"] = float(f"{measured_theta:.5g}")  # drop float32 noise
    return summary


def end_of_turn_eos_ids(tokenizer) -> list[int]:
    """``[<eos> id, <end_of_turn> id]``: a Gemma chat turn ends with ``<end_of_turn>``."""
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if end_of_turn is None or end_of_turn == tokenizer.unk_token_id:
        raise ValueError("tokenizer has no <end_of_turn> token; is this a Gemma 3 tokenizer?")
    return [tokenizer.eos_token_id, end_of_turn]


def restore_end_of_turn_eos(model, tokenizer) -> None:
    """Make generation stop on both ``<eos>`` and ``<end_of_turn>`` (Unsloth keeps only ``<eos>``)."""
    wanted = end_of_turn_eos_ids(tokenizer)
    current = model.generation_config.eos_token_id
    current = [] if current is None else [current] if isinstance(current, int) else list(current)
    model.generation_config.eos_token_id = current + [i for i in wanted if i not in current]
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# The seq x seq mask sdpa/eager (and Unsloth's Gemma 3 attention on a GPU) build may take at most this share
# of the device: weights, optimizer state, checkpointed activations, the recomputed layer and the loss tiles
# need the rest, and at 131072 tokens they alone are several GiB.
SEQ_MASK_SHARE = 0.5


def seq_mask_bytes(seq_len: int, dtype_bytes: int) -> int:
    """One sequence's seq x seq attention mask: the bool mask transformers builds for sliding layers, plus
    the additive float copy (of the compute dtype) that sdpa makes from it on each call, CPU or GPU, and
    keeps for backward; eager's mask is that float too (its seq x seq scores come on top)."""
    return seq_len * seq_len * (1 + dtype_bytes)


def seq_mask_overflow(seq_len: int, dtype_bytes: int, device_memory: int | None = None) -> str | None:
    """None when the seq x seq mask at ``seq_len`` tokens takes at most ``SEQ_MASK_SHARE`` of the device
    (``device_memory`` bytes, default this device's); else what it would take, for a one-line error."""
    memory = this_host()[1] if device_memory is None else device_memory
    need = seq_mask_bytes(seq_len, dtype_bytes)
    if need <= SEQ_MASK_SHARE * memory:
        return None
    return (f"a seq x seq attention mask of {need / 2**30:.1f} GiB at {seq_len} tokens, more than "
            f"{SEQ_MASK_SHARE:.0%} of the device's {memory / 2**30:.0f} GiB")


def resolve_attn_implementation(choice: str, max_seq_length: int | None = None, *, flash: bool | None = None,
                                dtype=None, device_memory: int | None = None) -> str:
    """`auto` -> flash_attention_2 where it can run (GPU + flash-attn), else windowed_sdpa (CPU, ROCm,
    CUDA without flash-attn: ``scripts.model.attention``, no seq x seq mask). Both have memory linear in length.
    sdpa and eager only when asked, and refused (UserError) when their seq x seq mask at ``max_seq_length``
    tokens in ``dtype`` (default: the dtype rule's) would not fit ``device_memory`` (default: this device's).
    ``flash``: whether flash-attn runs there (default: detected on this host; the memory plan of another
    host passes False). Resolving to windowed_sdpa registers it with transformers."""
    import importlib.util

    import torch

    from scripts.config import UserError

    gpu = torch.cuda.is_available()
    if flash is None:
        flash = gpu and importlib.util.find_spec("flash_attn") is not None
    if choice == "auto":
        choice = "flash_attention_2" if flash else "windowed_sdpa"
    if choice == "flash_attention_2" and not flash:
        raise UserError("attn_implementation flash_attention_2 needs a GPU and the flash-attn package "
                        "(see `fab env.check`); use auto or windowed_sdpa")
    if choice == "windowed_sdpa":
        import scripts.model.attention  # noqa: F401  (registers the name)
    if choice in QUADRATIC_ATTENTION and max_seq_length is not None:
        from scripts.model.loading import torch_dtype

        dtype = torch_dtype("auto", gpu=gpu) if dtype is None else dtype
        if overflow := seq_mask_overflow(max_seq_length, dtype.itemsize, device_memory):
            raise UserError(f"attn_implementation {choice} builds {overflow} (model.max_seq_length); use auto or "
                            "windowed_sdpa (memory linear in length)")
    return choice
