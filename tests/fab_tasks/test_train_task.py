"""`fab train.prepare` / `fab train.run` end to end through the real `fab` entry point."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.config import REPO_ROOT
from tests.scripts.training.conftest import tiny_config, tiny_root, write_config  # noqa: F401 (fixture)

FAB = [sys.executable, "-c", "from fabric.main import program; program.run()"]


def fab(*args, cwd=REPO_ROOT):
    return subprocess.run([*FAB, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_fab_train_run_end_to_end(tiny_root, tmp_path):
    if "train.run" not in fab("-l").stdout:
        pytest.skip("fabfile.py does not register the train collection yet")
    runs = tmp_path / "runs"
    config = write_config(tmp_path / "training.yaml",
                          tiny_config(tiny_root, runs, train={"max_steps": 3, "save_steps": 2}))
    done = fab("train.run", "--config", str(config), "--run-id", "e2e")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend: hf (requested)" in done.stdout and "trained 3 steps" in done.stdout
    run_dir = runs / "e2e"
    assert (run_dir / "prepare.json").is_file() and (run_dir / "config.yaml").is_file()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(isinstance(m["loss"], float) for m in metrics)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()

    resumed = fab("train.run", "--config", str(config), "--run-id", "e2e", "--resume", "latest",
                  "--max-steps", "4")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming e2e from checkpoint-3 (step 3)" in resumed.stdout and "trained 4 steps" in resumed.stdout


@pytest.mark.integration
def test_fab_user_errors_are_one_line(tmp_path):
    if "train.run" not in fab("-l").stdout:
        pytest.skip("fabfile.py does not register the train collection yet")
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO_ROOT / "configs/training.yaml").read_text().replace("  lr: 2.0e-4", "  lrate: 2.0e-4"))
    done = fab("train.prepare", "--config", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {bad}: unknown key `train.lrate`"
    missing = tiny_config(tmp_path, tmp_path / "runs")  # tmp_path has no splits
    done = fab("train.run", "--config", str(write_config(tmp_path / "m.yaml", missing)), "--backend", "hf")
    assert done.returncode == 1 and "run `fab dataset.split` first" in done.stderr
    assert "Traceback" not in done.stderr
