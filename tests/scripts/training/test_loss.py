"""Chunked cross-entropy equals the plain full-logits loss, gradients included."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from scripts.training.data import IGNORE_INDEX
from scripts.training import loss as loss_module
from scripts.training.loss import chunked_causal_lm_loss, forward_loss


@pytest.fixture(scope="module")
def model(tiny_root):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_root / "tiny-gemma3", dtype=torch.float32).train()


def _batch(vocab):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, vocab, (2, 150), generator=g)  # crosses the 64-token sliding window
    attention = torch.ones_like(ids)
    attention[1, 120:] = 0  # right padding on the second row
    labels = ids.clone()
    labels[:, :100] = IGNORE_INDEX  # a long "prompt"
    labels[1, 120:] = IGNORE_INDEX
    return ids, attention, labels


@pytest.mark.parametrize("keep_logits_bytes", [0, 2**40], ids=["recomputed", "kept"])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunked_loss_and_grads_equal_full_logits_loss(model, chunk_size, keep_logits_bytes, monkeypatch):
    monkeypatch.setattr(loss_module, "KEEP_LOGITS_BYTES", keep_logits_bytes)  # both tile paths
    ids, attention, labels = _batch(model.config.vocab_size)
    model.zero_grad()
    reference = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    nll_sum, n_tokens = chunked_causal_lm_loss(model, ids, attention, labels, chunk_size)
    loss = nll_sum / n_tokens
    loss.backward()
    assert int(n_tokens) == (labels[:, 1:] != IGNORE_INDEX).sum() == 50 + 20
    assert abs(loss.item() - reference.item()) < 1e-5
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4), name
    assert ref_grads["model.embed_tokens.weight"].abs().sum() > 0


def test_forward_loss_runs_the_wrapped_forward_and_equals_the_full_logits_loss(model):
    """Through PEFT (as the trainer calls it): same loss and LoRA gradients as transformers' own loss, the
    LM head sees one position, and the model's forward is left as transformers wrote it."""
    from peft import LoraConfig, get_peft_model

    ids, attention, labels = _batch(model.config.vocab_size)
    grads = {}
    for way in ("reference", "chunked"):
        torch.manual_seed(0)
        wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():  # LoRA B starts at zero: give it weights so its gradients are not trivial
            for name, param in wrapped.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.02)
        heads = []
        wrapped.get_base_model().lm_head.register_forward_hook(lambda _m, args, _out: heads.append(args[0].shape))
        if way == "reference":
            loss = wrapped(input_ids=ids, attention_mask=attention, labels=labels).loss
        else:
            loss = forward_loss(wrapped, {"input_ids": ids, "attention_mask": attention, "labels": labels}, 8)
            assert heads == [(2, 1, model.config.hidden_size)]  # no seq x vocab logits
            summed = forward_loss(wrapped, {"input_ids": ids, "attention_mask": attention, "labels": labels}, 8,
                                  num_items_in_batch=torch.tensor(140))
            assert abs(summed.item() * 140 - loss.item() * 70) < 1e-3
        loss.backward()
        grads[way] = (loss.item(), {n: p.grad.clone() for n, p in wrapped.named_parameters() if p.requires_grad})
    assert abs(grads["chunked"][0] - grads["reference"][0]) < 1e-5
    assert grads["chunked"][1].keys() == grads["reference"][1].keys() and grads["chunked"][1]
    for name, grad in grads["chunked"][1].items():
        assert torch.allclose(grad, grads["reference"][1][name], atol=1e-5, rtol=1e-4), name
    assert "forward" not in vars(model)  # nothing patched on the instance


def test_tiles_bound_the_logits_memory(model):
    """The largest float tensor the loss creates is one chunk x vocab tile, not seq x vocab."""
    ids, attention, labels = _batch(model.config.vocab_size)
    labels[:, 1:] = ids[:, 1:]  # every position trained: worst case
    sizes = []

    original_matmul = torch.Tensor.__matmul__

    def spy(self, other):
        out = original_matmul(self, other)
        sizes.append(out.shape)
        return out

    torch.Tensor.__matmul__ = spy
    try:
        chunked_causal_lm_loss(model, ids, attention, labels, chunk_size=32)
    finally:
        torch.Tensor.__matmul__ = original_matmul
    vocab = model.config.vocab_size
    tiles = [s for s in sizes if s[-1] == vocab]
    assert tiles and max(s[0] for s in tiles) == 32
    assert sum(s[0] for s in tiles) == 2 * 149
