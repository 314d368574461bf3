"""A tiny, random, real Gemma 3 text model plus a locally trained tokenizer.

Tests and the CPU demo use it in place of ``google/gemma-3-270m``: it is the
same architecture (``Gemma3ForCausalLM``, one sliding + one global attention
layer), the same tokenizer class (``GemmaTokenizer``: BPE with byte fallback,
``▁`` for spaces), the same special-token strings and chat template, and it
loads through the same ``Auto*`` path. Nothing is downloaded.

    from pathlib import Path
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from scripts.model.tiny import build_tiny_gemma

    path = build_tiny_gemma(Path("/tmp/tiny-gemma"), ["some text", "<p>Größe: 12 €</p>"])
    tok = AutoTokenizer.from_pretrained(path)            # GemmaTokenizer
    model = AutoModelForCausalLM.from_pretrained(path)   # Gemma3ForCausalLM

Like the real base checkpoint the saved model is *unscaled* (32,768
positions, default rope); ``scripts.model.gemma3.apply_rope_scaling`` turns it
into the 131,072-position model, exactly as for the real one.

Chat template: ``scripts.chat.GEMMA3_CHAT_TEMPLATE``, Google's with
``{% generation %}`` markers (see there). ``completion_only_loss`` with
prompt/completion data works with either template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaTokenizer,
    GenerationConfig,
    PreTrainedTokenizerFast,
)

from scripts.chat import GEMMA3_CHAT_TEMPLATE

# Same strings (and, for the first four, the same ids 0-3) as Gemma 3; the
# real vocabulary has more reserved tokens in between, which nothing here needs.
GEMMA_SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
]
# Special tokens that are not bos/eos/pad/unk/mask, registered as extra specials.
_EXTRA_SPECIAL_TOKENS = GEMMA_SPECIAL_TOKENS[5:]
_BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]  # byte fallback, as in Gemma

# google/gemma-3-270m's chat template, verbatim.
# Pre-scaling context of gemma-3-270m; apply_rope_scaling(factor=4) makes it 131072.
BASE_MAX_POSITION_EMBEDDINGS = 32_768


def _train_bpe(texts: Iterable[str], n_merged: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a SentencePiece-style BPE (``▁`` marks spaces) on ``texts``."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.Replace(" ", "▁")
    # Training-only word split so merges stay inside words (and training is fast);
    # GemmaTokenizer itself does not pre-split, like the real Gemma tokenizer.
    bpe.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=n_merged, limit_alphabet=256, show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a Gemma-style tokenizer on ``texts``: specials, 256 byte tokens, then BPE pieces.

    Any text round-trips (unknown characters fall back to bytes); ``tok(text)``
    prepends one ``<bos>``; the Gemma 3 chat template is installed.
    """
    n_fixed = len(GEMMA_SPECIAL_TOKENS) + len(_BYTE_TOKENS)
    if vocab_size <= n_fixed:
        raise ValueError(f"vocab_size must exceed {n_fixed} (specials + byte tokens), got {vocab_size}")
    learned, merges = _train_bpe(texts, vocab_size - n_fixed)
    vocab: dict[str, int] = {}
    for token in [*GEMMA_SPECIAL_TOKENS, *_BYTE_TOKENS, *sorted(learned, key=learned.get)]:
        vocab.setdefault(token, len(vocab))
    return GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        add_bos_token=True,
        add_eos_token=False,
        extra_special_tokens=_EXTRA_SPECIAL_TOKENS,
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )


def tiny_gemma_config(
    tokenizer, *, vocab_size: int = 2048, hidden_size: int = 64, num_layers: int = 2
) -> Gemma3TextConfig:
    """A gemma-3-270m-shaped config, shrunk. Layers alternate sliding/global, last one global."""
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)]
    layer_types[-1] = "full_attention"
    return Gemma3TextConfig(
        vocab_size=max(vocab_size, len(tokenizer)),  # like Gemma, may be padded past the tokenizer
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,  # = head_dim, as in gemma-3-270m (256 = its head_dim)
        sliding_window=64,  # small so tests cross the window
        layer_types=layer_types,
        max_position_embeddings=BASE_MAX_POSITION_EMBEDDINGS,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def gemma3_270m_config(tokenizer) -> Gemma3TextConfig:
    """google/gemma-3-270m's architecture as published (18 layers, 5 sliding : 1 global, hidden 640,
    262,144-token vocabulary): random weights of the real size, for GPU speed and memory checks."""
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]
    return Gemma3TextConfig(
        vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
        sliding_window=512, layer_types=layer_types, max_position_embeddings=BASE_MAX_POSITION_EMBEDDINGS,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )


def build_tiny_gemma(
    output_dir: Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 2048,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    embedding_scale: float = 1.0,
    architecture: str = "tiny",
) -> Path:
    """Write tokenizer + random ``Gemma3ForCausalLM`` (safetensors) to ``output_dir``; return it.

    ``embedding_scale`` multiplies the (tied input/output) embedding init, std 0.02 by default.
    At hidden size 64 every logit is then bounded by about |E_row| x |norm(h)| = 0.16 x 8 = 1.3,
    so LoRA alone (embeddings and norms frozen, as in real fine-tuning) cannot express a
    confident answer; the real gemma-3-270m's rows are far larger. Training tests use 10.

    ``architecture="270m"`` ignores the size arguments and builds :func:`gemma3_270m_config`
    (268M random parameters, saved in bf16 like the real checkpoint) around the same small tokenizer.
    """
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    if architecture == "270m":
        config = gemma3_270m_config(tokenizer)
    elif architecture == "tiny":
        config = tiny_gemma_config(
            tokenizer, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers
        )
    else:
        raise ValueError(f"architecture must be tiny or 270m, not {architecture!r}")
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    if embedding_scale != 1.0:
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(embedding_scale)  # tied: the LM head too
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    # Greedy by default (the real checkpoint samples with top_k=64) so tests are deterministic.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "270m":
        model.to(torch.bfloat16)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
