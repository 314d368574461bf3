"""A shortened `fab demo` end to end through the real entry point, checking its artifacts' content."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scripts.config import REPO_ROOT, load_config
from scripts.contracts import BundleManifest, Candidate, read_jsonl, sha256_file
from scripts.dataset.config import DatasetsConfig

pytestmark = pytest.mark.integration


def test_short_demo_leaves_a_checked_chain_of_artifacts(tmp_path):
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    fab = [str(Path(sys.executable).parent / "fab"), "--search-root", str(REPO_ROOT)]
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "LITELLM_API_KEY": ""}
    # transformers generates here: vLLM's engine and the export's vLLM check are tested in tests/scripts/serving
    run = subprocess.run([*fab, "demo", "--rows", "500", "--steps", "60", "--eval-limit", "16", "--engine", "hf"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "demo finished" in run.stdout and "navpage_classifier: accuracy" in run.stdout
    # the headline says what "valid" means and how many answers a bound closed
    assert "valid = the answer parses against the task's schema" in run.stdout
    closed = re.search(r": (\d+) of 16 answers closed early", run.stdout)
    assert closed and 0 <= int(closed.group(1)) <= 16

    demo = tmp_path / "demo" / "tiny"  # the demo's own workspace: everything it writes is in this folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "demo"]
    raw = duckdb.connect(str(demo / "data/raw/dataset.duckdb"), read_only=True)
    assert raw.sql("SELECT count(*) FROM examples").fetchall()[0][0] == 500
    clean = json.loads((demo / "data/processed/v2/clean_manifest.json").read_text())
    assert clean["rows_in"] == 500 == clean["rows_clean"] + clean["rows_rejected"]
    assert clean["target_key_order"] == "catalog"
    datasets = load_config(demo / "configs/datasets.yaml", DatasetsConfig)
    slots = datasets.tasks["productpage_extractor"].slot_order
    assert slots == list(load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
                         .tasks["productpage_extractor"].slots)  # the written config kept the catalog order
    targets = [json.loads(json.loads(line)["target"])
               for line in open(demo / "data/processed/v2/productpage_extractor.jsonl")]
    assert targets and all(list(t) == slots for t in targets)  # the sample answers carry every slot

    metrics = [json.loads(line) for line in open(demo / "models/runs/demo/metrics.jsonl")]
    assert metrics[-1]["step"] == 60 and metrics[-1]["loss"] < metrics[0]["loss"]

    candidates = list(read_jsonl(demo / "reports/model_outputs/validation_candidates.jsonl", Candidate))
    assert len(candidates) == 16 and all(c.valid for c in candidates)  # constrained: valid by construction
    assert all(list(c.parsed) == slots for c in candidates if c.kind == "extraction")  # as trained

    report = (demo / "reports/latest_eval.md").read_text()
    assert "## Verdict" in report and "navpage_classifier" in report
    judge_run = next((demo / "reports/judge").glob("validation_*/summary.json"))
    judge = json.loads(judge_run.read_text())["judge"]
    # no key: slots that need the LLM judge are reported as not judged, never passed
    assert judge["enabled"] is False and judge["not_judged"] == judge["needed"]
    assert ("were NOT judged" in report) == (judge["needed"] > 0)

    bundle = demo / "models/export/demo"
    manifest = BundleManifest.model_validate_json((bundle / "manifest.json").read_text())
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(manifest.files)
    assert all(sha256_file(bundle / name) == entry.sha256 for name, entry in manifest.files.items())
    assert manifest.eval_summary and set(manifest.eval_summary["tasks"]) == {
        "navpage_classifier", "productpage_extractor"}
    assert json.loads((bundle / "config.json").read_text())["max_position_embeddings"] == 131072

    projection = json.loads((demo / "reports/ops/token_projection.json").read_text())
    assert projection["today_paid_tokens"] > projection["after_paid_tokens"] > 0
