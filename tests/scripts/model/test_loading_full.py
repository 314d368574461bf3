"""The model layer on a full fine-tune (train.method full): a run's model/ resolves from `latest`, the run
dir or model/ itself, loads as the trained model with the run's rope and stops; nonsense is one line."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from scripts.config import UserError
from scripts.model.gemma3 import end_of_turn_eos_ids, rope_summary
from scripts.model.loading import adapter_dir, load_resolved, resolve_weights, run_weights
from tests.scripts.evaluation import make_adapter
from tests.scripts.training.conftest import full_run, tiny_root  # noqa: F401 (fixtures)


def test_a_full_run_resolves_from_latest_its_dir_and_its_model_dir(full_run, tiny_root):
    base = str(tiny_root / "tiny-gemma3")
    model_dir = full_run / "model"
    for given in ("latest", str(full_run), str(model_dir)):
        resolved = resolve_weights(given, full_run.parent)
        assert (resolved.method, resolved.base, resolved.adapter_dir, resolved.run_dir) == (
            "full", str(model_dir), None, full_run), given
        assert resolved.tokenizer_dir == str(model_dir) and resolved.trained_from == base
        assert resolved.label == f"{base}+full (full)"
    assert run_weights(str(full_run), full_run.parent) == (model_dir, "full")
    # what each candidate records of it: the run's parts and settings, read from result.json and config.yaml
    prov = resolved.provenance()
    assert (prov.base, prov.method, prov.run_id, prov.adapter, prov.zero_shot) == (
        base, "full", "full", str(model_dir), False)
    assert prov.training.method == "full" and prov.training.global_step > 0 and prov.training.lr is not None
    # the zero-shot baseline of a full run is the model it started from
    zero = resolve_weights(str(full_run), full_run.parent, zero_shot=True)
    assert (zero.base, zero.adapter_dir, zero.run_dir) == (base, None, None)
    assert zero.provenance().model_dump(include={"base", "zero_shot", "method", "run_id", "training"}) == {
        "base": base, "zero_shot": True, "method": None, "run_id": None, "training": None}


def test_a_full_run_loads_as_the_trained_model(full_run):
    model, tokenizer = load_resolved(resolve_weights(str(full_run), full_run.parent), dtype="fp32")
    assert type(model).__name__ == "Gemma3ForCausalLM" and not model.training
    saved = load_file(full_run / "model" / "model.safetensors")
    params = dict(model.named_parameters())
    assert set(params) == set(saved) and len(saved) == 28
    assert all(torch.equal(params[name], saved[name]) for name in saved)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert rope_summary(model)["full_attention"]["measured_factor"] == pytest.approx(4.0)
    assert set(end_of_turn_eos_ids(tokenizer)) <= set(model.generation_config.eos_token_id)


def test_latest_is_the_newest_run_of_either_method(full_run, tiny_root, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(full_run, runs / "a-full")
    make_adapter(tiny_root / "tiny-gemma3", runs / "b-lora" / "adapter")
    full_marker = runs / "a-full" / "model" / "config.json"
    lora_marker = runs / "b-lora" / "adapter" / "adapter_config.json"
    os.utime(full_marker, (1_000_000, 1_000_000))
    os.utime(lora_marker, (2_000_000, 2_000_000))
    latest = resolve_weights("latest", runs)
    assert (latest.method, latest.run_dir) == ("lora", runs / "b-lora")
    os.utime(full_marker, (3_000_000, 3_000_000))  # the full run finished last
    latest = resolve_weights("latest", runs)
    assert (latest.method, latest.run_dir) == ("full", runs / "a-full")


def test_nonsense_on_a_full_run_is_one_line(full_run, tmp_path):
    with pytest.raises(UserError) as err:
        resolve_weights(str(full_run), full_run.parent, base="google/gemma-3-270m")
    message = str(err.value)
    assert message.startswith(f"{full_run} is a full fine-tune (train.method full)")
    assert "remove the base override" in message and "\n" not in message
    with pytest.raises(UserError, match="is a full fine-tune .* it has model/, no adapter"):
        adapter_dir(str(full_run), full_run.parent)
    with pytest.raises(UserError) as err:
        resolve_weights(str(tmp_path), tmp_path)
    assert str(err.value).startswith(f"no PEFT adapter at {tmp_path}") and "nor a full fine-tune" in str(err.value)
