"""Causal-LM cross-entropy that never materialises ``seq_len x vocab`` logits.

    from scripts.training.loss import chunked_causal_lm_loss, forward_loss
    loss_sum, n_tokens = chunked_causal_lm_loss(model, input_ids, attention_mask, labels, chunk_size=4096)
    loss = forward_loss(model, {"input_ids": x, "labels": y, ...}, chunk_size=4096)  # through DDP/PEFT wrappers

The backbone (``model.model``) gives hidden states; only positions whose
next-token label is not -100 are projected through the LM head, ``chunk_size``
rows at a time, each tile under activation checkpointing so its logits are
freed after the forward and recomputed in the backward (unless all label rows'
logits fit in ``KEEP_LOGITS_BYTES``, then they are kept). Peak extra memory is
one ``chunk_size x vocab`` fp32 tile instead of ``seq_len x vocab`` (69 GB in
bf16 for 131072 x 262144). Gemma's ``final_logit_softcapping`` is honoured.

TRL 1.15's SFTTrainer has a similar private fused head (``add_fused_lm_head``,
fixed 32768-row tiles); this module is ours so the tile size is a config
field and the loss is tested against the plain full-logits loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from scripts.training.data import IGNORE_INDEX


KEEP_LOGITS_BYTES = 256 * 2**20  # label rows x vocab x 4 B below which logits are kept, not recomputed


def _tile_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None):
    logits = (hidden @ weight.t()).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_nll_sum(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int, softcap: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token NLL over positions with a label, and their count. ``hidden`` is (B, T, H), ``labels`` (B, T)."""
    hidden = hidden[:, :-1]
    targets = labels[:, 1:].to(hidden.device)
    mask = targets != IGNORE_INDEX
    rows, targets = hidden[mask], targets[mask]
    total = hidden.new_zeros((), dtype=torch.float32) + 0.0 * hidden.sum()  # stays connected if no label
    # Few label rows (a YES/NO answer, a short JSON): keeping their fp32 logits costs less than
    # recomputing them, which reads the 262144 x H LM head a second time in the backward (~5% of a
    # CPU step on the real model). Past the limit every tile is recomputed, so memory stays bounded.
    recompute = rows.shape[0] * weight.shape[0] * 4 > KEEP_LOGITS_BYTES
    for start in range(0, rows.shape[0], chunk_size):
        piece = slice(start, start + chunk_size)
        if recompute:
            total = total + checkpoint(_tile_nll, rows[piece], weight, targets[piece], softcap, use_reentrant=False)
        else:
            total = total + _tile_nll(rows[piece], weight, targets[piece], softcap)
    return total, mask.sum()


def chunked_causal_lm_loss(model, input_ids, attention_mask, labels, chunk_size: int, **backbone_kwargs):
    """``(nll_sum, n_label_tokens)`` of a ``*ForCausalLM`` (PEFT layers included) without full logits."""
    backbone_kwargs.setdefault("use_cache", False)
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask, **backbone_kwargs).last_hidden_state
    weight = model.get_output_embeddings().weight
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    return chunked_nll_sum(hidden, weight, labels, chunk_size, softcap)


def causal_lm_of(model):
    """The ``*ForCausalLM`` inside DDP's and PEFT's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def forward_loss(model, inputs: dict, chunk_size: int, num_items_in_batch=None) -> torch.Tensor:
    """The chunked loss of one batch, computed through ``model``'s own forward.

    The trainer's model may be DDP over PEFT over the causal LM: calling it is what lets DDP sync
    gradients and PEFT route LoRA, so the call stays whole and nothing is patched. A forward hook on
    the backbone takes its last hidden state; the LM head projects one position only
    (``logits_to_keep=1``, no ``seq x vocab`` logits), and the label rows go through
    ``chunked_nll_sum``. ``loss`` is the mean over label tokens, or the sum divided by
    ``num_items_in_batch`` (tokens in the whole accumulated batch) when given, as transformers' is.
    """
    lm = causal_lm_of(model)
    hidden: list[torch.Tensor] = []
    hook = lm.model.register_forward_hook(lambda _module, _args, out: hidden.append(out.last_hidden_state))
    try:
        model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False, logits_to_keep=1)
    finally:
        hook.remove()
    softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
    nll_sum, n_tokens = chunked_nll_sum(hidden[-1], lm.get_output_embeddings().weight, inputs["labels"],
                                        chunk_size, softcap)
    return nll_sum / (n_tokens.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
