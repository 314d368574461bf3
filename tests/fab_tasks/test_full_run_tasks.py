"""A full fine-tune (train.method full) through the real `fab` entry point: DDP on two CPU ranks (gloo),
then eval.generate and package.export on a full run."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from scripts.config import REPO_ROOT
from scripts.contracts import BundleManifest, Candidate, read_jsonl
from tests.conftest import fab
from tests.scripts.evaluation import eval_config_dict, write_datasets_config
from tests.scripts.training.conftest import full_run, tiny_config, tiny_root, write_config  # noqa: F401


@pytest.mark.integration
def test_fab_train_run_method_full_nproc_2_ddp_on_cpu_gloo(tiny_root, tmp_path):
    """Two torchrun ranks train every weight; each hashes its own, rank 0 alone writes model/ and metrics."""
    from scripts.training.run import adapter_fingerprint

    runs = tmp_path / "runs"
    config = write_config(tmp_path / "training.yaml",
                          tiny_config(tiny_root, runs, train={"lr": 2e-3, "max_steps": 3, "save_steps": 2,
                                                              "per_device_batch_size": 2}))
    done = fab(REPO_ROOT, "train.run", "--config", str(config), "--run-id", "ddp", "--nproc", "2",
               "--method", "full")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "launching 2 processes (torchrun, DDP) on run ddp, backend hf" in done.stdout
    run_dir = runs / "ddp"
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["world_size"], result["global_step"], result["method"]) == (2, 3, "full")
    assert result["adapter_dir"] is None and result["model_dir"] == str(run_dir / "model")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["method"] == "full"

    ranks = dict(line.split(": model sha256 ", 1) for line in out.splitlines() if line.startswith("rank "))
    assert set(ranks) == {"rank 0/2", "rank 1/2"}, out[-4000:]
    sha = {rank: value.split(",")[0] for rank, value in ranks.items()}
    assert sha["rank 0/2"] == sha["rank 1/2"] and result["rank_adapter_sha256"] == [sha["rank 0/2"]] * 2
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert len(saved) == 28 and adapter_fingerprint(saved) == sha["rank 0/2"]
    base = load_file(tiny_root / "tiny-gemma3" / "model.safetensors")
    assert all(not torch.equal(saved[k], base[k]) for k in saved)  # every weight trained, on both ranks
    assert "wrote model: yes" in ranks["rank 0/2"] and "wrote model: no" in ranks["rank 1/2"]
    assert all(value.endswith("process group gloo") for value in ranks.values())
    assert "2 ranks trained the same model" in done.stdout and not (run_dir / "adapter").exists()

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and metrics[-1]["loss"] < metrics[0]["loss"]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    checkpoint = run_dir / "checkpoints" / "checkpoint-2"
    assert len(load_file(checkpoint / "model.safetensors")) == 28
    assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]

    # and it resumes under DDP as well: one more step from checkpoint-3
    more = fab(REPO_ROOT, "train.run", "--config", str(config), "--run-id", "ddp", "--nproc", "2",
               "--method", "full", "--resume", "latest", "--max-steps", "4")
    assert more.returncode == 0, (more.stdout + more.stderr)[-4000:]
    assert "resuming ddp from checkpoint-3 (step 3)" in more.stdout
    resumed = json.loads((run_dir / "result.json").read_text())
    assert resumed["global_step"] == 4 and resumed["resumed_from"].endswith("checkpoint-3")
    assert len(set(resumed["rank_adapter_sha256"])) == 1  # both ranks restored the same weights and optimizer
    assert resumed["rank_adapter_sha256"][0] == adapter_fingerprint(load_file(run_dir / "model" / "model.safetensors"))
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.integration
def test_fab_eval_generate_and_package_export_on_a_full_run(full_run, tiny_root, tmp_path):
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tiny_root / "processed")
    raw = eval_config_dict(tmp_path, "latest", datasets)
    raw["model"]["runs_dir"] = str(full_run.parent)
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(raw))
    label = f"{tiny_root / 'tiny-gemma3'}+full (full)"

    done = fab(REPO_ROOT, "eval.generate", "--split", "validation", "--config", str(config),
               "--adapter", str(full_run), "--limit", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 written, 0 skipped" in done.stdout and f"model {label}" in done.stdout.replace("\n", "")
    rows = list(read_jsonl(tmp_path / "model_outputs" / "validation_candidates.jsonl", Candidate))
    assert len(rows) == 2 and {r.model for r in rows} == {label} and all(r.raw for r in rows)
    again = fab(REPO_ROOT, "eval.generate", "--split", "validation", "--config", str(config), "--run-id", "full")
    assert again.returncode == 0, again.stderr[-2000:]
    assert ", 2 skipped" in again.stdout  # --run-id names the same full run: the first two are done

    package = tmp_path / "package.yaml"
    package.write_text(yaml.safe_dump({
        "adapter": "latest", "runs_dir": str(full_run.parent), "dtype": "fp32",
        "data": {"datasets_config": str(datasets)}, "judge_dir": str(tmp_path / "judge"),
        "parity": {"prompts": 2, "max_new_tokens": 8}, "vllm": {"check_pages": 0}}))  # vLLM: tests/scripts/serving
    export = fab(REPO_ROOT, "package.export", "--config", str(package), "--output", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr[-2000:]
    assert "parity: max |logit diff| 0.00e+00 <= 1e-03, greedy identical on 2 prompts" in export.stdout
    manifest = BundleManifest.model_validate_json((tmp_path / "export" / "full" / "manifest.json").read_text())
    assert manifest.method == "full" and manifest.adapter_run_id == "full"
    assert manifest.parity["greedy_identical"] and manifest.parity["reload_identical"]
