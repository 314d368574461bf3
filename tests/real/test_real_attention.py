"""windowed_sdpa on the real Gemma 3 270M's weights (512-token sliding window): the loss sdpa gives, at ~1.2k tokens.

Its first six layers (five sliding, one global: the model's repeating unit) keep the test to seconds; the whole
model gives the same loss to the last bit at 1,152 tokens and to 6e-8 relative at 1,536 (scripts/model/attention.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripts.model.attention import WINDOWED_SDPA
from scripts.sample_data import sample_prompts

TOKENS = 1152  # 2.25 sliding windows: the causal first window, one full block of queries and a partial one
SCORED = 256  # tokens whose next-token loss is compared: full logits of 1.2k x 262k fp32 would be 1.1 GiB
LAYERS = 6  # layer_types repeat 5 x sliding_attention + full_attention
LOSS_RTOL = 1e-4  # fp32; measured 0 to 6e-8


def test_real_model_loss_matches_sdpa(real_gemma):
    tokenizer = AutoTokenizer.from_pretrained(real_gemma)
    ids = tokenizer("\n\n".join(sample_prompts(4)), return_tensors="pt").input_ids[:, :TOKENS]
    assert ids.shape[1] == TOKENS
    model = AutoModelForCausalLM.from_pretrained(real_gemma, dtype=torch.float32, attn_implementation="sdpa").eval()
    model.config.num_hidden_layers = LAYERS  # Gemma3TextModel runs layers[:num_hidden_layers]
    assert model.config.sliding_window * 2 < TOKENS
    assert model.config.layer_types[:LAYERS] == ["sliding_attention"] * 5 + ["full_attention"]
    losses, hidden = {}, {}
    for attn in ("sdpa", WINDOWED_SDPA):
        model.set_attn_implementation(attn)
        with torch.no_grad():
            out = model(input_ids=ids, logits_to_keep=SCORED + 1, output_hidden_states=True, use_cache=False)
        losses[attn] = F.cross_entropy(out.logits[0, :-1].float(), ids[0, -SCORED:]).item()
        hidden[attn] = out.hidden_states[-1]
    assert losses[WINDOWED_SDPA] == pytest.approx(losses["sdpa"], rel=LOSS_RTOL)
    torch.testing.assert_close(hidden[WINDOWED_SDPA], hidden["sdpa"], rtol=1e-3, atol=1e-3)
