"""`fab train.prepare` / `fab train.run` end to end through the real `fab` entry point."""

import json

import pytest

from scripts.config import REPO_ROOT
from tests.conftest import fab
from tests.scripts.training.conftest import tiny_config, tiny_root, write_config  # noqa: F401 (fixture)

@pytest.mark.integration
def test_fab_train_run_end_to_end(tiny_root, tmp_path):
    runs = tmp_path / "runs"
    config = write_config(tmp_path / "training.yaml",
                          tiny_config(tiny_root, runs, train={"max_steps": 3, "save_steps": 2}))
    done = fab(REPO_ROOT, "train.run", "--config", str(config), "--run-id", "e2e")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend: hf (requested)" in done.stdout and "trained 3 steps" in done.stdout
    run_dir = runs / "e2e"
    assert (run_dir / "prepare.json").is_file() and (run_dir / "config.yaml").is_file()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(isinstance(m["loss"], float) for m in metrics)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()

    resumed = fab(REPO_ROOT, "train.run", "--config", str(config), "--run-id", "e2e", "--resume", "latest",
                  "--max-steps", "4")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming e2e from checkpoint-3 (step 3)" in resumed.stdout and "trained 4 steps" in resumed.stdout


@pytest.mark.integration
def test_fab_user_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO_ROOT / "configs/training.yaml").read_text().replace("  lr: 3.0e-4", "  lrate: 3.0e-4"))
    done = fab(REPO_ROOT, "train.prepare", "--config", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {bad}: unknown key `train.lrate` (did you mean `lr`?)"
    missing = tiny_config(tmp_path, tmp_path / "runs")  # tmp_path has no splits
    done = fab(REPO_ROOT, "train.run", "--config", str(write_config(tmp_path / "m.yaml", missing)), "--backend", "hf")
    assert done.returncode == 1 and "run `fab dataset.split` first" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_fab_train_says_which_model_cannot_be_found(tiny_root, tmp_path):
    """A missing local dir is reported as missing; an unloadable hub id names `fab train.import-gguf`."""
    gone = tmp_path / "models" / "gemma-typo"
    cfg = tiny_config(tiny_root, tmp_path / "runs", model={"name_or_path": str(gone)})
    done = fab(REPO_ROOT, "train.prepare", "--config", str(write_config(tmp_path / "gone.yaml", cfg)))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: local model dir {gone} does not exist; fix the path")
    cfg = tiny_config(tiny_root, tmp_path / "runs", model={"name_or_path": "google/gemma-3-270m"})
    done = fab(REPO_ROOT, "train.run", "--config", str(write_config(tmp_path / "hub.yaml", cfg)),
               env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: cannot load google/gemma-3-270m from the Hugging Face hub (not in the "
                                  "local cache and the hub is unreachable)")
    assert "`fab train.import-gguf`" in done.stderr


@pytest.mark.integration
@pytest.mark.parametrize("flags, line", [
    (("--backend", "hfx"), "`backend` = hfx (override): Input should be 'auto', 'unsloth' or 'hf'"),
    (("--max-steps", "0"), "`train.max_steps` = 0 (override): Input should be greater than 0"),
    (("--max-steps", "0", "--nproc", "2"), "`train.max_steps` = 0 (override): Input should be greater than 0"),
])
def test_fab_train_run_validates_overrides_like_yaml(flags, line):
    """A bad flag is the same one-line error as a bad YAML value, in-process and under --nproc."""
    done = fab(REPO_ROOT, "train.run", *flags, "--config", "configs/training_tiny.yaml")
    assert done.returncode == 1 and done.stdout == ""
    config = "configs/training_tiny.yaml" if "--nproc" not in flags else str(REPO_ROOT / "configs/training_tiny.yaml")
    assert done.stderr.strip() == f"error: {config}: {line}"


@pytest.mark.integration
def test_fab_train_run_nproc_2_ddp_on_cpu_gloo(tiny_root, tmp_path):
    """Two torchrun ranks (gloo, CPU) train one adapter; only rank 0 writes metrics, checkpoints, adapter."""
    from safetensors.torch import load_file

    from scripts.training.run import adapter_fingerprint
    runs = tmp_path / "runs"
    config = write_config(tmp_path / "training.yaml",
                          tiny_config(tiny_root, runs, train={"max_steps": 3, "save_steps": 2,
                                                              "per_device_batch_size": 2}))
    done = fab(REPO_ROOT, "train.run", "--config", str(config), "--run-id", "ddp", "--nproc", "2")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "launching 2 processes (torchrun, DDP) on run ddp, backend hf" in done.stdout
    run_dir = runs / "ddp"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 3 and result["backend"] == "hf"

    # each rank hashed its own final LoRA weights: equal, and equal to the saved adapter
    ranks = dict(line.split(": adapter sha256 ", 1) for line in out.splitlines() if line.startswith("rank "))
    assert set(ranks) == {"rank 0/2", "rank 1/2"}, out[-4000:]
    sha = {rank: value.split(",")[0] for rank, value in ranks.items()}
    assert sha["rank 0/2"] == sha["rank 1/2"]
    assert result["rank_adapter_sha256"] == [sha["rank 0/2"]] * 2
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert adapter_fingerprint(saved) == sha["rank 0/2"]
    assert any(key.endswith("lora_B.weight") and saved[key].abs().sum() > 0 for key in saved)  # trained

    # only rank 0 wrote: one metrics line per step, one adapter, checkpoint weights once
    assert all(value.endswith("process group gloo") for value in ranks.values())
    assert "wrote adapter: yes" in ranks["rank 0/2"] and "wrote adapter: no" in ranks["rank 1/2"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert metrics[0]["epoch"] == pytest.approx(4 / 40)  # 2 ranks x batch 2 per step over 40 examples
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-3"]
    # transformers stores each rank's RNG state in the checkpoint, for an exact resume
    assert sorted(p.name for p in (run_dir / "checkpoints" / "checkpoint-2").glob("rng_state*")) == [
        "rng_state_0.pth", "rng_state_1.pth"]


@pytest.mark.integration
def test_fab_train_run_unsloth_with_nproc_is_one_line_error(tiny_root, tmp_path):
    config = write_config(tmp_path / "training.yaml", tiny_config(tiny_root, tmp_path / "runs"))
    done = fab(REPO_ROOT, "train.run", "--config", str(config), "--backend", "unsloth", "--nproc", "2")
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: --nproc 2: Unsloth trains on a single GPU; "
                                   "use --backend hf for multi-process DDP")


@pytest.mark.integration
def test_fab_train_prepare_prints_and_records_the_memory_plan(tiny_root, tmp_path):
    """`memory plan: peak X GiB at N tokens (device Y GiB)` for the longest example and max_seq_length;
    prepare.json records the resolved attention and the plan; a plan over the device is one line."""
    from scripts.model.gemma3 import resolve_attn_implementation

    runs = tmp_path / "runs"
    config = write_config(tmp_path / "t.yaml", tiny_config(tiny_root, runs, train={"per_device_batch_size": 1,
                                                                                 "gradient_checkpointing": True}))
    done = fab(REPO_ROOT, "train.prepare", "--config", str(config), "--run-id", "plan", "--device-memory", "80GiB",
               check=True)
    saved = json.loads((runs / "plan" / "prepare.json").read_text())
    attn = resolve_attn_implementation("auto", flash=False)
    assert saved["attn_implementation"] == resolve_attn_implementation("auto") != "auto"
    plan = saved["memory_plan"]
    assert plan["device"] == "gpu" and plan["device_memory"] == 80 * 2**30 and plan["attn_implementation"] == attn
    longest = saved["splits"]["train"]["longest_tokens"]
    steps = plan["steps"]
    assert steps["longest example"]["tokens"] == longest and steps["max_seq_length"]["tokens"] == 131072
    for step in steps.values():
        assert set(step["terms"]) == {"weights", "optimizer", "checkpoints", "attention masks", "layer recompute",
                                      "attention kernel", "loss tile", "runtime"}
        line = f"memory plan: peak {step['peak'] / 2**30:.1f} GiB at {step['tokens']} tokens (device 80.0 GiB)"
        assert line in done.stdout
    assert steps["longest example"]["terms"]["weights"] < steps["max_seq_length"]["peak"]

    sdpa = write_config(tmp_path / "s.yaml", tiny_config(tiny_root, runs, model={"attn_implementation": "sdpa"}))
    done = fab(REPO_ROOT, "train.prepare", "--config", str(sdpa), "--run-id", "too-big", "--device-memory", "8GiB")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: memory plan: peak ") and (
        "at 131072 tokens (max_seq_length, sdpa) exceeds 90% of the device's 8.0 GiB; largest term: attention"
        in done.stderr)  # batch 4: the masks of both layer types and the kernel's float copies
    assert not (runs / "too-big").exists()

    done = fab(REPO_ROOT, "train.prepare", "--config", str(config), "--device-memory", "80")
    assert done.returncode == 1 and done.stderr.strip() == (
        "error: --device-memory '80': expected a size with a unit, e.g. 80GB, 80GiB or 512MB (GB = 10^9 bytes, "
        "GiB = 2^30)")
