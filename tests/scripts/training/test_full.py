"""``train.method: full`` on the tiny model, CPU, backend hf: every weight trains (embeddings tied to the
LM head), the same answer-only chunked loss falls, model/ is a plain model folder, checkpoints resume
exactly, and a checkpoint or run of the other method is refused in one line."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from scripts.config import UserError
from scripts.model.gemma3 import rope_summary
from scripts.training.backends import load_model
from scripts.training.callbacks import read_metrics
from scripts.training.prepare import load_checked_tokenizer
from scripts.training.run import adapter_fingerprint, run_training
from tests.scripts.training.conftest import tiny_config
from tests.scripts.training.test_run import KillAt, SnapshotParams

FULL = {"method": "full", "lr": 2e-3}


def test_full_model_has_no_peft_every_weight_trainable_and_rope(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, tmp_path / "runs", train=FULL)
    model = load_model(cfg, "hf", load_checked_tokenizer(cfg), torch.float32)
    assert type(model).__name__ == "Gemma3ForCausalLM"  # no PeftModel around it
    params = dict(model.named_parameters())
    assert len(params) == 28 and all(p.requires_grad for p in params.values())
    assert not any("lora_" in n for n in params) and "lm_head.weight" not in params  # tied: listed once
    assert model.lm_head.weight is model.model.embed_tokens.weight
    rope = rope_summary(model)
    assert rope["full_attention"]["measured_factor"] == 4.0 and rope["max_position_embeddings"] == 131072
    assert rope["sliding_attention"]["measured_factor"] == 1.0
    assert model.generation_config.eos_token_id == [1, 6]  # <eos>, <end_of_turn>


def test_full_fine_tune_moves_every_weight_and_loss_falls(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    cfg = tiny_config(tiny_root, runs, train={**FULL, "max_steps": 8, "save_steps": 4})
    snap = SnapshotParams()
    result = run_training(cfg, run_id="f1", extra_callbacks=(snap,), say=lambda *_: None)
    assert (result.method, result.global_step, result.interrupted_by, result.adapter_dir) == ("full", 8, None, None)
    run_dir = runs / "f1"
    assert result.model_dir == result.weights_dir == str(run_dir / "model")

    # TRL-style: all 28 parameters (embeddings = LM head included) train and every one of them moved
    assert snap.trainable == set(snap.before) and len(snap.before) == 28
    assert "model.embed_tokens.weight" in snap.trainable
    moved = {n for n in snap.before if not torch.equal(snap.before[n], snap.after[n])}
    assert moved == set(snap.before)

    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m.step for m in metrics] == list(range(1, 9))
    assert all(isinstance(m.loss, float) and m.grad_norm is not None for m in metrics)
    assert max(m.loss for m in metrics[-2:]) < 0.5 * metrics[0].loss
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert not (run_dir / "adapter").exists()

    # model/: the trained weights (tied head stored once), config with the rope, tokenizer, stops
    model_dir = run_dir / "model"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja"} <= {p.name for p in model_dir.iterdir()}
    saved = load_file(model_dir / "model.safetensors")
    assert set(saved) == set(snap.after) and "lm_head.weight" not in saved
    for name, value in snap.after.items():
        assert torch.equal(saved[name], value), name
    assert adapter_fingerprint(saved) == adapter_fingerprint(snap.after)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["rope_parameters"]["full_attention"] == {"rope_type": "linear", "factor": 4.0,
                                                           "rope_theta": 1_000_000.0}
    assert config["max_position_embeddings"] == 131072 and config["tie_word_embeddings"] is True
    assert GenerationConfig.from_pretrained(model_dir).eos_token_id == [1, 6]

    # plain transformers reloads it as the trained model, still tied
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir)
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    assert torch.equal(reloaded.lm_head.weight, snap.after["model.embed_tokens.weight"])
    assert AutoTokenizer.from_pretrained(model_dir).chat_template == load_checked_tokenizer(cfg).chat_template

    # the method is on record for later stages
    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert snapshot["train"]["method"] == "full"
    assert json.loads((run_dir / "prepare.json").read_text())["method"] == "full"
    assert json.loads((run_dir / "result.json").read_text())["method"] == "full"


def test_full_sigterm_checkpoint_then_resume_equals_straight_run(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    cfg = tiny_config(tiny_root, runs, train={**FULL, "max_steps": 6, "save_steps": 4, "per_device_batch_size": 2,
                                              "scheduler": "cosine", "warmup_ratio": 0.2})
    straight = run_training(cfg, run_id="straight", say=lambda *_: None)
    assert straight.global_step == 6

    killed = run_training(cfg, run_id="killed", extra_callbacks=(KillAt(2),), say=lambda *_: None)
    assert killed.interrupted_by == "SIGTERM" and killed.global_step == 3 and killed.model_dir is None
    checkpoint = runs / "killed" / "checkpoints" / "checkpoint-3"
    assert [p.name for p in (runs / "killed" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()}
    assert not (checkpoint / "adapter_config.json").exists() and not (runs / "killed" / "model").exists()
    assert len(load_file(checkpoint / "model.safetensors")) == 28  # every weight is in the checkpoint

    said = []
    resumed = run_training(cfg, run_id="killed", resume="latest", say=said.append)
    assert any("resuming killed from checkpoint-3 (step 3)" in s for s in said)
    assert resumed.global_step == 6 and resumed.method == "full"
    a = load_file(runs / "straight" / "model" / "model.safetensors")
    b = load_file(runs / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and len(a) == 28
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert [m.step for m in read_metrics(runs / "killed" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    straight_losses = [m.loss for m in read_metrics(runs / "straight" / "metrics.jsonl")]
    killed_losses = [m.loss for m in read_metrics(runs / "killed" / "metrics.jsonl")]
    assert killed_losses == pytest.approx(straight_losses, abs=1e-4)


def test_a_checkpoint_or_run_of_the_other_method_is_refused_in_one_line(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    lora = tiny_config(tiny_root, runs, train={"max_steps": 1, "save_steps": 1})
    full = tiny_config(tiny_root, runs, train={**FULL, "max_steps": 1, "save_steps": 1})
    run_training(lora, run_id="lora", say=lambda *_: None)
    with pytest.raises(UserError) as err:
        run_training(full, run_id="lora", resume="latest", say=lambda *_: None)
    message = str(err.value)
    assert message.startswith("run lora was trained with another config") and "train.method lora -> full" in message
    assert "\n" not in message

    run_training(full, run_id="full", say=lambda *_: None)
    with pytest.raises(UserError, match="run full was trained with another config .*train.method full -> lora"):
        run_training(lora, resume=str(runs / "full"), say=lambda *_: None)

    from scripts.training.prepare import prepare_run

    prepare_run(lora, "prepared-lora")
    with pytest.raises(UserError, match="run prepared-lora was prepared with another config .*train.method lora -> full"):
        run_training(full, run_id="prepared-lora", say=lambda *_: None)
