"""Gemma 3 specifics: rope scaling that really reaches the global layers, stop tokens, one <bos>."""

import copy
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig, LogitsProcessor

from scripts.chat import encode_chat
from scripts.chat import GEMMA3_CHAT_TEMPLATE_ORIGINAL
from scripts.model.gemma3 import (
    apply_rope_scaling,
    end_of_turn_eos_ids,
    restore_end_of_turn_eos,
    rope_summary,
)

MESSAGES = [
    {"role": "system", "content": "Answer YES or NO."},
    {"role": "user", "content": "<p>Preis: 3 €</p>"},
]
SCALED_GLOBAL = {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6}
FLAT = {"rope_type": "linear", "factor": 4.0}


@pytest.fixture(scope="module")
def tiny_dir(tiny_gemma):
    return tiny_gemma  # the session's shared tiny Gemma 3 (tests/conftest.py); only read here


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def _inv_freq(model, layer_type):
    return getattr(model.model.rotary_emb, f"{layer_type}_inv_freq")


def _scaled_model(tiny_dir):
    config = AutoConfig.from_pretrained(tiny_dir)
    apply_rope_scaling(config, factor=4.0, max_seq_length=131072)
    return AutoModelForCausalLM.from_pretrained(tiny_dir, config=config)


def test_rope_scaling_reaches_global_layers_only(tiny_dir):
    plain = AutoModelForCausalLM.from_pretrained(tiny_dir)
    scaled = _scaled_model(tiny_dir)
    assert torch.allclose(_inv_freq(scaled, "full_attention"), _inv_freq(plain, "full_attention") / 4)
    assert torch.equal(_inv_freq(scaled, "sliding_attention"), _inv_freq(plain, "sliding_attention"))
    s = rope_summary(scaled)
    assert s["full_attention"] == {
        "rope_type": "linear",
        "factor": 4.0,
        "theta": 1e6,
        "measured_factor": 4.0,
        "measured_theta": 1e6,
    }
    assert s["sliding_attention"]["rope_type"] == "default"
    assert s["sliding_attention"]["theta"] == s["sliding_attention"]["measured_theta"] == 1e4
    assert s["sliding_attention"]["measured_factor"] == 1.0
    assert s["max_position_embeddings"] == 131072
    assert s["original_max_position_embeddings"] == 32768
    assert s["ignored_flat_keys"] == {}
    # Positions past the pretrained length now rotate like positions / 4 did before.
    pos = torch.tensor([[40000]])
    x = torch.zeros(1, 1, 64)
    cos_scaled, _ = scaled.model.rotary_emb(x, pos, "full_attention")
    cos_plain, _ = plain.model.rotary_emb(x, pos // 4, "full_attention")
    assert torch.allclose(cos_scaled, cos_plain, atol=1e-4)


def test_rope_scaling_survives_save_and_reload(tiny_dir, tmp_path):
    _scaled_model(tiny_dir).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["rope_parameters"]["full_attention"] == SCALED_GLOBAL
    assert saved["rope_parameters"]["sliding_attention"] == {"rope_type": "default", "rope_theta": 1e4}
    assert saved["max_position_embeddings"] == 131072
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    s = rope_summary(reloaded)
    assert s["full_attention"]["measured_factor"] == 4.0 and s["sliding_attention"]["measured_factor"] == 1.0
    assert s["max_position_embeddings"] == 131072
    # Re-applying to the already scaled config is a no-op, not 4 x 4.
    apply_rope_scaling(reloaded.config)
    assert rope_summary(reloaded.config) == rope_summary(AutoConfig.from_pretrained(tmp_path))


def test_apply_to_a_built_model_refreshes_its_rotary_buffers(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    before = _inv_freq(model, "full_attention").clone()
    apply_rope_scaling(model)
    assert torch.allclose(_inv_freq(model, "full_attention"), before / 4)
    assert rope_summary(model)["full_attention"]["measured_factor"] == 4.0


def test_flat_rope_dict_is_reported_as_not_applied(tiny_dir):
    # As a from_pretrained/AutoConfig keyword it replaces the per-layer dict ...
    config = AutoConfig.from_pretrained(tiny_dir, rope_parameters=dict(FLAT))
    s = rope_summary(config)
    assert s["full_attention"]["rope_type"] is None and s["ignored_flat_keys"] == FLAT
    with pytest.raises(KeyError, match="full_attention"):
        AutoModelForCausalLM.from_config(config)
    # ... merged in place it is silently ignored: the model builds unscaled.
    config = AutoConfig.from_pretrained(tiny_dir)
    config.rope_parameters.update(FLAT)
    model = AutoModelForCausalLM.from_config(config)
    s = rope_summary(model)
    assert s["ignored_flat_keys"] == FLAT
    assert s["full_attention"]["factor"] == 1.0 and s["full_attention"]["measured_factor"] == 1.0
    # apply_rope_scaling repairs either form.
    apply_rope_scaling(model)
    s = rope_summary(model)
    assert s["ignored_flat_keys"] == {} and s["full_attention"]["measured_factor"] == 4.0


def test_legacy_rope_scaling_argument_lands_on_global_layers():
    """Fact check for this transformers version."""
    layer_types = ["sliding_attention", "full_attention"]
    config = Gemma3TextConfig(num_hidden_layers=2, layer_types=layer_types, rope_scaling=dict(FLAT))
    assert config.rope_parameters["full_attention"] == SCALED_GLOBAL
    assert config.rope_parameters["sliding_attention"] == {"rope_type": "default", "rope_theta": 1e4}


def test_inconsistent_context_length_is_refused(tiny_dir):
    with pytest.raises(ValueError, match="pretrained context"):
        apply_rope_scaling(AutoConfig.from_pretrained(tiny_dir), factor=4.0, max_seq_length=8192)


def test_restore_end_of_turn_eos(tiny_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    eos, eot = tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn_eos_ids(tok) == [eos, eot]
    model.generation_config.eos_token_id = eos  # what Unsloth leaves behind
    restore_end_of_turn_eos(model, tok)
    assert model.generation_config.eos_token_id == [eos, eot]
    restore_end_of_turn_eos(model, tok)
    assert model.generation_config.eos_token_id == [eos, eot]


class _ForceEndOfTurn(LogitsProcessor):
    """Greedy picks <end_of_turn> at new-token index `at`; <eos> is never picked."""

    def __init__(self, prompt_len, eos, eot, at=2):
        self.prompt_len, self.eos, self.eot, self.at = prompt_len, eos, eot, at

    def __call__(self, input_ids, scores):
        scores[:, self.eos] = -float("inf")
        if input_ids.shape[1] - self.prompt_len == self.at:
            scores[:, :] = -float("inf")
            scores[:, self.eot] = 0.0
        return scores


def test_generation_stops_at_end_of_turn(tiny_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    eos, eot = tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")
    ids = torch.tensor([encode_chat(tok, MESSAGES)])

    def generate():
        force = _ForceEndOfTurn(ids.shape[1], eos, eot)
        out = model.generate(ids, max_new_tokens=10, do_sample=False, logits_processor=[force])
        return out[0, ids.shape[1] :].tolist()

    model.generation_config.eos_token_id = eos  # Unsloth-style: <end_of_turn> is not a stop
    assert len(generate()) == 10
    restore_end_of_turn_eos(model, tok)
    new = generate()
    assert len(new) == 3 and new[-1] == eot


def test_encode_chat_has_exactly_one_bos(tok):
    ids = encode_chat(tok, MESSAGES)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids).endswith("<start_of_turn>model\n")
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert tok(text)["input_ids"].count(tok.bos_token_id) == 2  # the path encode_chat avoids
    assert ids == tok(text, add_special_tokens=False)["input_ids"]


def test_encode_chat_refuses_a_template_without_bos(tok):
    no_bos = copy.deepcopy(tok)
    no_bos.chat_template = GEMMA3_CHAT_TEMPLATE_ORIGINAL.replace("{{ bos_token }}", "", 1)
    with pytest.raises(ValueError, match="exactly one <bos>"):
        encode_chat(no_bos, MESSAGES)
