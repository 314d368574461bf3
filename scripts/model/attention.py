"""``windowed_sdpa``: Gemma 3 attention whose memory grows linearly with sequence length, on any device.

    import scripts.model.attention  # noqa: F401  (registers the name; resolve_attn_implementation does it)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="windowed_sdpa")

Why: transformers 5.17's ``sdpa`` builds Gemma 3's sliding-window mask as a
dense seq x seq bool tensor (16 GiB at 131072 tokens) that sdpa turns
into an additive float copy on every call (CPU and GPU), ``eager`` a float
one beside seq x seq scores, and ``flex_attention`` has no backward on CPU in torch
2.13. ``flash_attention_2`` needs flash-attn, which has no ROCm wheel.

What it does (registered in transformers' ``AttentionInterface`` and
``AttentionMaskInterface`` under the same name):

- the mask function hands the attention only the (batch, kv) padding mask,
  or ``None`` when nothing is padded, as flash_attention_2's does: no
  seq x seq mask is ever built;
- each example is cut into its segments first: the run of unpadded tokens
  (left or right padding), or, with no padding mask, the pieces of a packed
  row where ``position_ids`` restart (as transformers' own
  ``find_packed_sequence_indices`` finds them), so no example sees another;
  padded positions get zeros, which only padded positions read later;
- full-attention layers run sdpa with ``is_causal=True`` on each segment
  (the fused kernels, no mask at all);
- sliding layers (window W) run the first W queries causally, and every
  later block of W queries against its own 2W keys in one batched sdpa
  call with a single shared W x 2W band mask: memory
  O(seq x (block + window)), never seq x seq;
- with a KV cache (generation: fewer queries than keys) the queries attend
  through an explicit mask of (query block) x (keys), causal, windowed and
  padded; a decoding step is one query row.

Loss and gradients match sdpa's to 1e-5 relative in fp32 (tiny Gemma 3, window
8: tests/scripts/model/test_attention.py; bf16 LoRA with gradient checkpointing to
bf16 rounding) and the loss to 1e-4 on the real 270M at 1.2k tokens
(tests/real/test_real_attention.py; measured 6e-8). One difference, on
purpose: transformers finds packed rows only when no KV cache is in use
(``use_cache=False``), else packed examples see each other under sdpa/eager;
here restarting ``position_ids`` always separate them.

Unsloth (2026.10.9, read in ``unsloth_zoo/temporary_patches/gemma.py``):

- on a GPU, ``patch_Gemma3Attention_generic`` (or ``patch_Gemma3Attention``
  under UNSLOTH_FORCE_FLOAT32) replaces ``Gemma3Attention.forward``, upcasts
  q, k, v to fp32 and calls sdpa itself; the attention interface is used for
  ``flex_attention`` only. ``_prepare_gemma3_sdpa_attention_mask`` builds,
  for a sliding layer longer than its window, ``_gemma3_causal_window_mask``
  = a [1, 1, seq, seq] bool (no padding mask) or [batch, 1, seq, seq] (with
  one), which sdpa turns into an fp32 copy: 5 bytes x seq^2, 80 GiB at
  131072 tokens, whatever ``attn_implementation`` says (and, handed
  windowed_sdpa's or flash_attention_2's ``None`` mask, a packed row is one
  causal sequence to it). So
  ``scripts.training.backends`` routes ``backend: auto`` to hf when that mask
  at ``model.max_seq_length`` cannot fit the GPU, and refuses an explicit
  ``unsloth`` in one line when the longest training sequence would not;
- on CPU, Unsloth's fallback (``_cpu_init``) applies none of those patches
  and runs transformers' Gemma 3 code: a CPU LoRA step on the tiny model
  (window 64, at 48/128/256 tokens, with and without padding) built a
  [1, 1, seq, seq] bool and fp32 mask under sdpa and no seq x seq tensor
  under ``windowed_sdpa``, so on CPU it trains on this path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

WINDOWED_SDPA = "windowed_sdpa"


def windowed_sdpa_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                       attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor | None:
    """The (batch, kv) bool padding mask of the keys, or None when no key is padded (the causal, window
    and packing pattern is the attention's own). Same contract as transformers' ``flash_attention_mask``;
    the 2D mask covers the cached tokens too, so its last ``kv_length`` columns are this layer's keys."""
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:]
    return None if attention_mask.shape[1] == kv_length and bool(attention_mask.all()) else attention_mask


def _segments(attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None, batch: int,
              length: int) -> list[list[tuple[int, int]]] | None:
    """Per row, the ``(start, end)`` runs of tokens that attend to each other; None: every row is one run."""
    if attention_mask is not None:
        valid = attention_mask.bool()
        count = valid.sum(-1)
        first = valid.int().argmax(-1)
        last = length - 1 - valid.flip(-1).int().argmax(-1)
        if bool(((last - first + 1 != count) & (count > 0)).any()):
            raise ValueError(f"{WINDOWED_SDPA}: an attention_mask row has holes; only left or right "
                             "padding is supported")
        return [[(f, f + n)] if n else [] for f, n in zip(first.tolist(), count.tolist())]
    if position_ids is None:
        return None
    position_ids = position_ids.expand(batch, -1)
    # a new example starts wherever the position does not follow the previous one (transformers'
    # find_packed_sequence_indices), so several examples packed in one row never see each other
    rows, cuts = torch.nonzero(torch.diff(position_ids, dim=-1) != 1, as_tuple=True)
    if rows.numel() == 0:
        return None
    starts = [[0] for _ in range(batch)]
    for row, cut in zip(rows.tolist(), (cuts + 1).tolist()):
        starts[row].append(cut)
    return [list(zip(row, row[1:] + [length])) for row in starts]


def _band(window: int, device) -> torch.Tensor:
    """(W, 2W) bool: query r of a block sees keys r + 1 .. r + W of its key span."""
    r = torch.arange(window, device=device)[:, None]
    c = torch.arange(2 * window, device=device)[None, :]
    return (c > r) & (c <= r + window)


def _sliding(query, key, value, window: int, scale: float | None, dropout: float) -> torch.Tensor:
    """Causal attention of one unpadded run within a window of ``window`` keys (the query itself
    included, as transformers' ``sliding_window_overlay``); (B, H, L, D) in and out."""
    batch, heads, length, dim = query.shape
    if length <= window:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=True, scale=scale)
    # the first W queries see every earlier key: plainly causal
    head = F.scaled_dot_product_attention(query[:, :, :window], key[:, :, :window], value[:, :, :window],
                                          dropout_p=dropout, is_causal=True, scale=scale)
    # block i of the rest holds queries W(i+1) .. W(i+2) - 1 and spans keys W i .. W(i+2) - 1 (2W keys,
    # the first never seen: an even span keeps GPU kernels' mask alignment)
    blocks = -(-(length - window) // window)
    pad = blocks * window - (length - window)

    def spans(x):  # (B, H, L, D) -> (B * blocks, H, 2W, D); padding keys are seen by padding queries only
        x = F.pad(x, (0, 0, 0, pad)).unfold(2, 2 * window, window)
        return x.permute(0, 2, 1, 4, 3).reshape(batch * blocks, heads, 2 * window, dim)

    q = F.pad(query[:, :, window:], (0, 0, 0, pad)).view(batch, heads, blocks, window, dim)
    q = q.transpose(1, 2).reshape(batch * blocks, heads, window, dim)
    out = F.scaled_dot_product_attention(q, spans(key), spans(value), attn_mask=_band(window, query.device),
                                         dropout_p=dropout, scale=scale)
    out = out.view(batch, blocks, heads, window, dim).transpose(1, 2).reshape(batch, heads, blocks * window, dim)
    return torch.cat([head, out[:, :, : length - window]], dim=2)


def _causal(query, key, value, window: int | None, scale: float | None, dropout: float) -> torch.Tensor:
    if window is None:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=True, scale=scale)
    return _sliding(query, key, value, window, scale, dropout)


def _with_cache(query, key, value, padding, window: int | None, scale: float | None,
                block: int = 1024) -> torch.Tensor:
    """Fewer queries than keys (a KV cache): the queries are the last ones; an explicit mask per block
    of queries, (block x keys), so a long prefill against a cache stays linear too."""
    q_len, kv_len = query.shape[2], key.shape[2]
    keys = torch.arange(kv_len, device=query.device)
    outs = []
    for start in range(0, q_len, block):
        positions = kv_len - q_len + torch.arange(start, min(start + block, q_len), device=query.device)
        mask = keys[None, :] <= positions[:, None]
        if window is not None:
            mask &= keys[None, :] > positions[:, None] - window
        mask = mask[None, None]
        if padding is not None:
            mask = mask & padding[:, None, None, :].bool()
        outs.append(F.scaled_dot_product_attention(query[:, :, start:start + block], key, value,
                                                   attn_mask=mask, scale=scale))
    return torch.cat(outs, dim=2)


def windowed_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          sliding_window: int | None = None, position_ids: torch.Tensor | None = None,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: (B, H, q, D) query, (B, H_kv, kv, D) key/value;
    returns (B, q, H, D) and no weights."""
    if not getattr(module, "is_causal", True):
        raise ValueError(f"{WINDOWED_SDPA} is causal only; use sdpa for bidirectional attention")
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"{WINDOWED_SDPA} takes the (batch, kv) padding mask its mask function returns, "
                         f"not a {attention_mask.dim()}D mask")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # GQA: the fused CPU and GPU kernels want as many key heads as query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    batch, _, q_len, _ = query.shape
    if q_len != key.shape[2]:
        out = _with_cache(query, key, value, attention_mask, sliding_window, scaling)
        return out.transpose(1, 2).contiguous(), None
    segments = _segments(attention_mask, position_ids, batch, q_len)
    if segments is None:
        out = _causal(query, key, value, sliding_window, scaling, dropout)
        return out.transpose(1, 2).contiguous(), None
    rows = []
    for b, runs in enumerate(segments):
        pieces, end = [], 0
        for start, stop in runs:
            if start > end:
                pieces.append(query.new_zeros(1, query.shape[1], start - end, query.shape[3]))
            q, k, v = (x[b:b + 1, :, start:stop] for x in (query, key, value))
            pieces.append(_causal(q, k, v, sliding_window, scaling, dropout))
            end = stop
        if end < q_len:
            pieces.append(query.new_zeros(1, query.shape[1], q_len - end, query.shape[3]))
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(WINDOWED_SDPA, windowed_sdpa_forward)
AttentionMaskInterface.register(WINDOWED_SDPA, windowed_sdpa_mask)
