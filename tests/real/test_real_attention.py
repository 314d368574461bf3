"""windowed_sdpa on the real Gemma 3 270M (512-token sliding window): the loss sdpa gives, at ~1.5k tokens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripts.attention import WINDOWED_SDPA
from scripts.sample_data import sample_prompts

TOKENS = 1536  # three sliding windows
SCORED = 256  # tokens whose next-token loss is compared: full logits of 1.5k x 262k fp32 would be 1.5 GiB
LOSS_RTOL = 1e-4  # fp32 through 18 layers; measured ~1e-6


def test_real_model_loss_matches_sdpa(real_gemma):
    tokenizer = AutoTokenizer.from_pretrained(real_gemma)
    ids = tokenizer("\n\n".join(sample_prompts(40)), return_tensors="pt").input_ids[:, :TOKENS]
    assert ids.shape[1] == TOKENS
    model = AutoModelForCausalLM.from_pretrained(real_gemma, dtype=torch.float32, attn_implementation="sdpa").eval()
    assert model.config.sliding_window * 3 <= TOKENS
    losses, hidden = {}, {}
    for attn in ("sdpa", WINDOWED_SDPA):
        model.set_attn_implementation(attn)
        with torch.no_grad():
            out = model(input_ids=ids, logits_to_keep=SCORED + 1, output_hidden_states=True, use_cache=False)
        losses[attn] = F.cross_entropy(out.logits[0, :-1].float(), ids[0, -SCORED:]).item()
        hidden[attn] = out.hidden_states[-1]
    assert losses[WINDOWED_SDPA] == pytest.approx(losses["sdpa"], rel=LOSS_RTOL)
    assert losses["sdpa"] < 5  # a real model reading real text, not noise
    torch.testing.assert_close(hidden[WINDOWED_SDPA], hidden["sdpa"], rtol=1e-3, atol=1e-3)
