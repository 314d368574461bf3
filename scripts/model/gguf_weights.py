"""A GGUF's weights dequantised into a Gemma 3 model, and the gates the model must pass (perplexity,
loss per character of indented HTML with the rebuilt tokenizer's ids against the reference's).

    from scripts.model.gguf_weights import load_dequantised, model_checks
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.config import UserError
from scripts.model.gguf_source import GgufSource
from scripts.model.gguf_tokenizer import REFERENCE_TEXT, SPECIAL_IDS, GemmaReference

PERPLEXITY_TEXT = (
    "The history of the city goes back more than two thousand years. It was founded on the banks of a "
    "river, where traders stopped to rest and sell their goods. Over the centuries it grew into a busy "
    "port, and today it is known for its old churches, its markets and its museums. Every summer, "
    "thousands of visitors come to walk through the narrow streets of the old town."
)
# A correct dequantisation gives ~10 (measured on google/gemma-3-270m Q4_K_M); wrong norm offsets
# or a missing embedding scale give thousands or millions.
MAX_PERPLEXITY = 40.0


# --- weights -------------------------------------------------------------------


@contextmanager
def reusing_reader(source: GgufSource) -> Iterator[None]:
    """transformers parses the GGUF twice more (config, then weights); parsing a 262,144-piece
    vocabulary takes 10-30 s on 2 cores, so it gets the reader read_gguf already built."""
    import gguf

    original = gguf.GGUFReader

    def reader(path, *args, **kwargs):
        if source.reader is not None and Path(path).resolve() == source.path.resolve() and not args and not kwargs:
            return source.reader
        return original(path, *args, **kwargs)

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


@contextmanager
def quiet_dequantising_bar() -> Iterator[None]:
    """Silence transformers' per-tensor "de-quantizing GGUF tensors" tqdm bar (the task shows its own
    stage bar). tqdm reads TQDM_DISABLE once, at import, so the module's ``tqdm`` is swapped instead."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def load_dequantised(source: GgufSource, dtype):
    """A plain ``Gemma3ForCausalLM``: transformers dequantises, the quantisation flag is dropped."""
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

    try:
        with reusing_reader(source), quiet_dequantising_bar():
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(source.path.parent), gguf_file=source.path.name, dtype=dtype)
    except Exception as exc:  # an architecture/size transformers' GGUF mapping does not know
        raise UserError(f"transformers cannot load {source.path}: {str(exc).splitlines()[0]}") from None
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = source.label()
    config.dtype = dtype
    model = Gemma3ForCausalLM(config).to(dtype)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise UserError(f"GGUF weights do not fit Gemma3ForCausalLM: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    return model.eval()


def loss_per_char(model, ids: list[int], text: str) -> float:
    """The model's next-token loss summed over ``ids`` (after ``<bos>``), per character of ``text``:
    comparable across tokenizations of the same text, unlike per-token loss."""
    import torch

    batch = torch.tensor([[SPECIAL_IDS["<bos>"], *ids]])
    with torch.no_grad():
        mean = model(input_ids=batch, labels=batch).loss.item()
    return mean * len(ids) / len(text)


def model_checks(model, tokenizer, reference: GemmaReference, indented: list[str]) -> dict[str, Any]:
    """Perplexity of a fixed English paragraph, a non-degenerate greedy continuation, and the loss per
    character of indented HTML with the imported ids no worse than with Gemma's reference ids (the
    plain SentencePiece ids, tokenizer version 1's, are recorded beside them)."""
    import torch

    ids = tokenizer(PERPLEXITY_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    perplexity = math.exp(loss) if loss < 50 else float("inf")
    prompt = tokenizer(REFERENCE_TEXT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, prompt.input_ids.shape[1]:].tolist()
    distinct = len(set(new)) / max(len(new), 1)
    seen: dict[tuple[int, ...], float] = {}  # equal ids give an equal loss: each forward is seconds of LM head

    def loss_of(ids: list[int], text: str) -> float:
        if tuple(ids) not in seen:
            seen[tuple(ids)] = loss_per_char(model, ids, text)
        return seen[tuple(ids)]

    losses = {name: [loss_of(encode(text), text) for text in indented] for name, encode in (
        ("imported", lambda text: tokenizer(text, add_special_tokens=False).input_ids),
        ("reference", reference.encode), ("sentencepiece_plain", reference.plain))}
    mean = {name: round(sum(values) / len(values), 4) for name, values in losses.items()}
    return {
        "perplexity": {"passed": perplexity <= MAX_PERPLEXITY, "value": round(perplexity, 2),
                       "bound": MAX_PERPLEXITY, "tokens": ids.shape[1]},
        "greedy_continuation": {"passed": len(new) >= 4 and distinct >= 0.3 and not set(new) <= {0, 1, 3},
                                "text": tokenizer.decode(new, skip_special_tokens=True),
                                "distinct_share": round(distinct, 2)},
        "indented_html_loss": {"passed": mean["imported"] <= mean["reference"] * (1 + 1e-4), "texts": len(indented),
                               "nats_per_char": mean},
    }
