"""Training on the tiny model, CPU, backend hf: LoRA learns, base stays, checkpoints and resume."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from scripts.config import UserError
from scripts.training.callbacks import read_metrics
from scripts.training.run import run_training
from tests.scripts.training.conftest import tiny_config


class SnapshotParams(TrainerCallback):
    """Copies of every parameter at train begin and end (TRL's test pattern, without touching the model)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


class KillAt(TrainerCallback):
    """Sends this process a real SIGTERM at the end of step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_lora_params_change_base_params_do_not_and_loss_falls(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, tmp_path / "runs", train={"max_steps": 8, "save_steps": 4})
    snap = SnapshotParams()
    result = run_training(cfg, run_id="r1", extra_callbacks=(snap,), say=lambda *_: None)
    assert result.backend == "hf" and result.global_step == 8 and result.interrupted_by is None
    lora = {n for n in snap.trainable if "lora_" in n}
    assert lora and lora == snap.trainable  # only LoRA weights train
    for name in snap.before:
        changed = not torch.equal(snap.before[name], snap.after[name])
        assert changed == (name in lora), name  # every LoRA A and B moved, no base weight did

    run_dir = tmp_path / "runs" / "r1"
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m.step for m in metrics] == list(range(1, 9))
    assert all(isinstance(m.loss, float) and m.lr is not None and m.grad_norm is not None
               and m.peak_memory_mb > 0 for m in metrics)
    assert all(m.tokens_per_s > 0 for m in metrics[1:])
    assert max(m.loss for m in metrics[-2:]) < 0.6 * metrics[0].loss
    assert (run_dir / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    adapter = run_dir / "adapter"
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    assert (adapter / "tokenizer_config.json").is_file() and (run_dir / "config.yaml").is_file()


def test_sigterm_checkpoint_then_resume_equals_straight_run(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    # save_steps 4: the only checkpoint before step 4 is the one the signal causes
    cfg = tiny_config(tiny_root, runs, train={"max_steps": 6, "save_steps": 4, "per_device_batch_size": 2,
                                              "scheduler": "cosine", "warmup_ratio": 0.2},
                      lora={"dropout": 0.1})
    straight = run_training(cfg, run_id="straight", say=lambda *_: None)
    assert straight.global_step == 6

    # the signal lands after step 2 (during step 3, as far as the trainer sees): step 3 finishes, is saved
    killed = run_training(cfg, run_id="killed", extra_callbacks=(KillAt(2),), say=lambda *_: None)
    assert killed.interrupted_by == "SIGTERM" and killed.global_step == 3 and killed.adapter_dir is None
    assert [p.name for p in (runs / "killed" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert (runs / "killed" / "checkpoints" / "checkpoint-3" / "optimizer.pt").is_file()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler removed after training

    said = []
    resumed = run_training(cfg, run_id="killed", resume="latest", say=said.append)
    assert any("resuming killed from checkpoint-3 (step 3)" in s for s in said)
    assert resumed.global_step == 6
    a = load_file(runs / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(runs / "killed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    steps = [m.step for m in read_metrics(runs / "killed" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]
    straight_losses = [m.loss for m in read_metrics(runs / "straight" / "metrics.jsonl")]
    killed_losses = [m.loss for m in read_metrics(runs / "killed" / "metrics.jsonl")]
    assert killed_losses == pytest.approx(straight_losses, abs=1e-4)


def test_the_split_is_tokenized_once_and_resume_refuses_another_config(tiny_root, tmp_path, monkeypatch):
    import scripts.training.data

    def encode_again(*args, **kwargs):
        raise AssertionError("train.run tokenized the train split again")

    monkeypatch.setattr(scripts.training.data, "build_dataset", encode_again)  # prepare's rows must do
    cfg = tiny_config(tiny_root, tmp_path / "runs", train={"max_steps": 1, "save_steps": 1})
    result = run_training(cfg, run_id="a", say=lambda *_: None)
    assert result.global_step == 1 and result.train_examples > 0

    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": str(tmp_path / "other")}),
                                   "train": cfg.train.model_copy(update={"lr": 0.5})})
    with pytest.raises(UserError) as err:
        run_training(other, run_id="a", resume="latest", say=lambda *_: None)
    assert str(err.value) == (
        f"run a was trained with another config ({tmp_path / 'runs/a/config.yaml'}): model.name_or_path "
        f"{cfg.model.name_or_path} -> {tmp_path / 'other'}; train.lr 0.02 -> 0.5; resume it with the config it "
        "was trained with")
