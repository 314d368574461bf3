"""Backend unsloth, ``train.method: full`` (``FastModel.from_pretrained(full_finetuning=True)``), for real on
CPU in a subprocess (importing Unsloth patches transformers/TRL for the whole process), against the hf
backend's full fine-tune of the same config. Fails, never skips, when Unsloth is missing."""

import json

import pytest
import torch
from safetensors.torch import load_file

from scripts.training.callbacks import read_metrics
from scripts.training.run import run_training
from tests.scripts.training.conftest import tiny_config
from tests.scripts.training.test_unsloth_train import _rows, run_unsloth_probe
from tests.scripts.training.train_probe import make_probe


def test_unsloth_full_fine_tune_trains_like_hf(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    train = {"method": "full", "lr": 2e-3, "max_steps": 3, "gradient_checkpointing": True}
    facts = run_unsloth_probe(tiny_root, tmp_path, train, timeout=300)
    out = tmp_path / "probe"
    result = facts["result"]
    assert (result["backend"], result["method"], result["global_step"]) == ("unsloth", "full", 3)

    # no PEFT: the plain Gemma 3, all 28 parameters train (the LM head is the embeddings), all moved
    assert facts["model_class"] == "Gemma3ForCausalLM" and facts["tied"] is True
    assert len(facts["trainable"]) == 28 and not any("lora_" in n for n in facts["trainable"])
    assert set(facts["changed"]) == set(facts["trainable"]) and all(facts["changed"].values())
    assert facts["weight_dtypes"] == ["torch.float32"]

    # the same rope and stops as the hf backend
    rope = facts["rope"]
    assert rope["max_position_embeddings"] == 131072
    assert (rope["full_attention"]["rope_type"], rope["full_attention"]["measured_factor"]) == ("linear", 4.0)
    assert (rope["sliding_attention"]["measured_factor"], rope["sliding_attention"]["measured_theta"]) == (1.0, 1e4)
    assert facts["eos_token_id"] == [1, 6]

    # model/ as the hf backend writes it
    model_dir = runs / "u" / "model"
    unsloth_weights = load_file(model_dir / "model.safetensors")
    assert len(unsloth_weights) == 28 and "lm_head.weight" not in unsloth_weights
    config_json = json.loads((model_dir / "config.json").read_text())
    assert config_json["rope_parameters"]["full_attention"]["factor"] == 4.0
    assert config_json["max_position_embeddings"] == 131072
    assert json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"] == [1, 6]
    assert (model_dir / "tokenizer.json").is_file() and not (runs / "u" / "adapter").exists()

    # the hf backend's full fine-tune of the same config: same batches and labels, same losses, same weights
    probe = make_probe()
    hf_cfg = tiny_config(tiny_root, runs, backend="hf", train=train)
    hf = run_training(hf_cfg, run_id="hf", extra_callbacks=(probe,), say=lambda *_: None)
    assert hf.method == "full" and hf.global_step == 3
    assert _rows(torch.load(out / "batches.pt")) == _rows(probe.batches)
    unsloth_losses = [m.loss for m in read_metrics(runs / "u" / "metrics.jsonl")]
    hf_losses = [m.loss for m in read_metrics(runs / "hf" / "metrics.jsonl")]
    assert len(unsloth_losses) == 3 and unsloth_losses[-1] < 0.8 * unsloth_losses[0]
    assert unsloth_losses == pytest.approx(hf_losses, rel=1e-3)
    hf_weights = load_file(runs / "hf" / "model" / "model.safetensors")
    assert hf_weights.keys() == unsloth_weights.keys()
    for key in hf_weights:
        assert torch.allclose(hf_weights[key], unsloth_weights[key], atol=1e-4), key
