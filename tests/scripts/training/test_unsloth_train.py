"""Backend unsloth trains for real on CPU (Unsloth 2026.10's CPU fallback), in a subprocess.

Importing Unsloth patches transformers/TRL for the rest of the process, so the
Unsloth run happens in ``tests.scripts.training.train_probe`` launched with a
fresh interpreter; the hf comparison run happens here. Fails, never skips, when
Unsloth is missing or ``import unsloth`` fails: the README's test command installs it.
"""

import importlib.util
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from scripts.config import REPO_ROOT
from scripts.training.callbacks import read_metrics
from scripts.training.run import run_training
from tests.scripts.training.conftest import tiny_config, write_config
from tests.scripts.training.train_probe import IMPORT_FAILED, make_probe

NO_UNSLOTH = ("unsloth is not installed: the README's test command (setup_env.sh --dev --gpu) installs it; "
              "a missing backend is a failure here, never a skip")


def _rows(batches):
    """``(input_ids, labels)`` of every sequence the model received, padding removed."""
    rows = []
    for batch in batches:
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            keep = mask.bool()
            rows.append((tuple(ids[keep].tolist()), tuple(labels[keep].tolist())))
    return rows


def run_unsloth_probe(tiny_root, tmp_path, train: dict, timeout: int, **sections):
    """Train ``train`` (and other config ``sections``) on the unsloth backend in a fresh interpreter; the
    probe's facts, after the checks every Unsloth run must pass (imported first, by our run path, and did
    the loading)."""
    assert importlib.util.find_spec("unsloth") is not None, NO_UNSLOTH
    config = write_config(tmp_path / "unsloth.yaml",
                          tiny_config(tiny_root, tmp_path / "runs", backend="unsloth", train=train, **sections))
    out = tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    probe_cmd = [sys.executable, "-m", "tests.scripts.training.train_probe", str(config), str(out), "u"]
    done = subprocess.run(probe_cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    log = done.stdout + done.stderr
    assert done.returncode != IMPORT_FAILED, f"import unsloth fails: {log.strip().splitlines()[-1]}"
    assert done.returncode == 0, log[-4000:]
    facts = json.loads((out / "probe.json").read_text())
    assert facts["preloaded"] == [] and facts["late"] == [] and facts["unsloth_warnings"] == []
    assert "backend: unsloth (requested" in done.stdout
    assert "Unsloth" in log and "Gemma3ForCausalLM" in log
    return facts


def test_unsloth_backend_trains_like_hf(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    train = {"max_steps": 3, "gradient_checkpointing": True}  # Unsloth's checkpointing path, as configured
    facts = run_unsloth_probe(tiny_root, tmp_path, train, timeout=240)
    out = tmp_path / "probe"
    result = facts["result"]
    assert result["backend"] == "unsloth" and result["global_step"] == 3 and result["interrupted_by"] is None

    # TRL-style: exactly the LoRA weights train, all of them move, no base weight does
    trainable = set(facts["trainable"])
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"}
    for name, changed in facts["changed"].items():
        assert changed == (name in trainable), name

    # loss logged and falling
    run_dir = runs / "u"
    losses = [m.loss for m in read_metrics(run_dir / "metrics.jsonl")]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]

    # the model that trained: rope x4 on global layers only, <end_of_turn> an EOS again
    rope = facts["rope"]
    assert rope["max_position_embeddings"] == 131072
    assert (rope["full_attention"]["rope_type"], rope["full_attention"]["measured_factor"]) == ("linear", 4.0)
    local = rope["sliding_attention"]
    assert (local["measured_factor"], local["measured_theta"]) == (1.0, 1e4)
    assert facts["eos_token_id"] == [1, 6]  # <eos>, <end_of_turn>

    # adapter saved, with the generation config that stops on <end_of_turn>
    adapter = run_dir / "adapter"
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert json.loads((adapter / "generation_config.json").read_text())["eos_token_id"] == [1, 6]
    assert json.loads((run_dir / "result.json").read_text())["backend"] == "unsloth"

    # same examples, same labels as the hf backend feeds its model
    probe = make_probe()
    hf_cfg = tiny_config(tiny_root, runs, backend="hf", train={**train, "max_steps": 1})
    run_training(hf_cfg, run_id="hf", extra_callbacks=(probe,), say=lambda *_: None)
    unsloth_rows = _rows(torch.load(out / "batches.pt"))
    hf_rows = _rows(probe.batches)
    assert len(unsloth_rows) == 12 and len(hf_rows) == 4
    assert unsloth_rows[:4] == hf_rows  # same data order (same seed) and identical label masks
    assert all(any(label != -100 for label in labels) for _, labels in unsloth_rows)
