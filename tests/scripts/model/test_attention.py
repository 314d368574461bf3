"""windowed_sdpa against transformers' sdpa on the tiny Gemma 3 with an 8-token sliding window: the same loss
and gradients (several windows, padding, packed rows), the same generation, and no seq x seq tensor."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from scripts.model.attention import WINDOWED_SDPA
from scripts.model.loading import load_base

WINDOW = 8  # the fixture model's 64 shrunk, so 50 tokens cross six windows
LOSS_RTOL = 1e-5  # fp32: the same sums in another order
GRAD_TOL = 1e-4  # max |difference| / max |gradient|, per parameter, fp32


@pytest.fixture(scope="module")
def model(tiny_gemma):
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma, dtype=torch.float32, sliding_window=WINDOW,
                                                 attn_implementation="sdpa")
    with torch.no_grad():  # a random model this small barely looks at its inputs; sharpen it
        for p in model.parameters():
            p.mul_(3)
    return model


def step(model, attn: str, ids, attention_mask=None, position_ids=None):
    """(loss, {name: grad}) of one forward + backward, every token a label except padding."""
    model.set_attn_implementation(attn)
    model.zero_grad()
    labels = ids.masked_fill(attention_mask == 0, -100) if attention_mask is not None else ids
    loss = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, labels=labels,
                 use_cache=False).loss  # transformers' sdpa honours packed position_ids only without a cache
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_step(model, **inputs):
    loss, grads = step(model, "sdpa", **inputs)
    ours, our_grads = step(model, WINDOWED_SDPA, **inputs)
    assert ours == pytest.approx(loss, rel=LOSS_RTOL)
    assert grads.keys() == our_grads.keys() and grads
    for name, grad in grads.items():
        assert (our_grads[name] - grad).abs().max() <= GRAD_TOL * grad.abs().max(), name


def test_loss_and_gradients_match_sdpa_across_windows(model):
    torch.manual_seed(0)
    assert_same_step(model, ids=torch.randint(10, 1000, (2, 53)))  # 6 windows and a partial one


def test_right_and_left_padding_match_sdpa(model):
    torch.manual_seed(1)
    ids = torch.randint(10, 1000, (3, 45))
    mask = torch.ones_like(ids)
    mask[1, 31:] = 0  # right padding
    mask[2, :13] = 0  # left padding
    assert_same_step(model, ids=ids.masked_fill(mask == 0, 0), attention_mask=mask)


def test_packed_rows_match_sdpa_and_the_examples_alone(model):
    torch.manual_seed(2)
    ids = torch.randint(10, 1000, (2, 40))
    positions = torch.tensor([[*range(21), *range(19)], [*range(5), *range(30), *range(5)]])
    assert_same_step(model, ids=ids, position_ids=positions)
    model.set_attn_implementation(WINDOWED_SDPA)
    with torch.no_grad():
        packed = model(input_ids=ids[:1], position_ids=positions[:1]).logits  # with a cache: still separate
        alone = torch.cat([model(input_ids=ids[:1, :21]).logits, model(input_ids=ids[:1, 21:]).logits], dim=1)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_bf16_lora_with_gradient_checkpointing_trains_like_sdpa(tiny_gemma):
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_gemma, dtype=torch.bfloat16, sliding_window=WINDOW,
                                                attn_implementation="sdpa")
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.enable_input_require_grads()
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"],
                                           init_lora_weights=False))  # B != 0: gradients reach A too
    lora.train()
    torch.manual_seed(3)
    ids = torch.randint(10, 1000, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 29:] = 0
    loss, grads = step(lora, "sdpa", ids=ids, attention_mask=mask)
    ours, our_grads = step(lora, WINDOWED_SDPA, ids=ids, attention_mask=mask)
    assert ours == pytest.approx(loss, rel=1e-2)  # bf16: 8 bits of mantissa
    assert len(grads) == 2 * 3 * 2  # A and B of three projections in both layers, nothing else
    for name, grad in grads.items():
        assert our_grads[name].abs().max() > 0
        assert (our_grads[name] - grad).float().abs().max() <= 5e-2 * grad.float().abs().max(), name


def test_generation_with_a_cache_matches_sdpa(model, tiny_gemma):
    torch.manual_seed(4)
    ids = torch.randint(10, 1000, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    mask[2, :15] = 0  # left padding, as eval.generate batches prompts
    out = {}
    for attn in ("sdpa", WINDOWED_SDPA):
        model.set_attn_implementation(attn)
        with torch.no_grad():
            out[attn] = model.generate(input_ids=ids.masked_fill(mask == 0, 0), attention_mask=mask, do_sample=False,
                                       max_new_tokens=3 * WINDOW, output_scores=True, return_dict_in_generate=True)
    assert torch.equal(out["sdpa"].sequences, out[WINDOWED_SDPA].sequences)
    for theirs, ours in zip(out["sdpa"].scores, out[WINDOWED_SDPA].scores):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


class TensorSizes(TorchDispatchMode):
    """Every tensor an op returns: the largest one, and the elements allocated while ``counting``."""

    def __init__(self):
        super().__init__()
        self.largest, self.counted, self.counting = (0, None), 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:  # not a view
                if t.numel() > self.largest[0]:
                    self.largest = (t.numel(), f"{func} {tuple(t.shape)}")
                if self.counting:
                    self.counted += t.numel()
        return out


def test_default_path_builds_no_seq_by_seq_tensor(tiny_gemma):
    length = 4096  # seq x seq = 16.8M elements; the largest tensor it needs is the logits, 4096 x 2048
    model = load_base(str(tiny_gemma), dtype="fp32")  # the default path: auto on CPU
    assert model.config._attn_implementation == WINDOWED_SDPA
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(10, 1000, (1, length))
    mask = torch.ones_like(ids)
    mask[0, -5:] = 0  # padding: sdpa could not skip the full layers' mask either
    largest = {}
    for attn in (WINDOWED_SDPA, "sdpa"):
        model.set_attn_implementation(attn)
        with TensorSizes() as sizes:
            model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        largest[attn] = sizes.largest
    assert largest[WINDOWED_SDPA][0] < length * length, largest[WINDOWED_SDPA]
    assert largest["sdpa"][0] >= length * length, largest["sdpa"]  # the check sees such a tensor when there is one


def attention_elements(model, monkeypatch, attn: str, length: int) -> int:
    """Elements allocated by the attention and mask functions in one forward + backward (checkpointed)."""
    sizes = TensorSizes()

    def counted(fn):
        def wrapper(*args, **kwargs):
            sizes.counting = True
            try:
                return fn(*args, **kwargs)
            finally:
                sizes.counting = False
        return wrapper

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, attn, counted(ALL_ATTENTION_FUNCTIONS[attn]))
    monkeypatch.setitem(ALL_MASK_ATTENTION_FUNCTIONS, attn, counted(ALL_MASK_ATTENTION_FUNCTIONS[attn]))
    model.set_attn_implementation(attn)
    ids = torch.randint(10, 1000, (1, length))
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0
    with sizes:
        model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False).loss.backward()
    monkeypatch.undo()
    return sizes.counted


def test_attention_memory_grows_linearly(model, monkeypatch):
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    try:
        ratios = {attn: attention_elements(model, monkeypatch, attn, 1024)
                  / attention_elements(model, monkeypatch, attn, 512) for attn in (WINDOWED_SDPA, "sdpa")}
    finally:
        model.gradient_checkpointing_disable()
    assert ratios[WINDOWED_SDPA] == pytest.approx(2.0, abs=0.1), ratios  # twice the tokens, twice the buffers
    assert ratios["sdpa"] > 3.5, ratios  # seq x seq masks: the measure sees quadratic growth


def test_a_padding_mask_with_holes_is_refused(model):
    ids = torch.randint(10, 1000, (1, 12))
    mask = torch.ones_like(ids)
    mask[0, 4] = 0  # neither left nor right padding
    model.set_attn_implementation(WINDOWED_SDPA)
    with pytest.raises(ValueError, match="attention_mask row has holes"), torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
