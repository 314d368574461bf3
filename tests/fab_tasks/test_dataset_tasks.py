"""The dataset chain through the real `fab` entry point, in a temp working dir."""

import json
from pathlib import Path

import pytest

from scripts.config import REPO_ROOT
from scripts.paths import SCHEMA_VERSION
from tests.conftest import fab

pytestmark = pytest.mark.integration
CONFIG = str(REPO_ROOT / "configs/datasets.yaml")


def test_sample_clean_split_stats_chain(tmp_path):
    env = {"DATASET_DB_PATH": str(tmp_path / "raw.duckdb")}
    run = fab(tmp_path, "dataset.sample", "--rows", "600", "--seed", "3", env=env)
    assert run.returncode == 0, run.stderr
    assert "wrote 600 rows" in run.stdout

    run = fab(tmp_path, "dataset.clean", "--schema-version", SCHEMA_VERSION, "--config", CONFIG, env=env)
    assert run.returncode == 0, run.stderr
    out = tmp_path / f"data/processed/{SCHEMA_VERSION}"
    manifest = json.loads((out / "clean_manifest.json").read_text())
    assert manifest["rows_in"] == 600 == manifest["rows_clean"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == sum(1 for _ in open(out / "rejects.jsonl")) > 0
    assert f"{manifest['rows_clean']} clean" in run.stdout.replace("\n", " ")
    nav = [json.loads(line) for line in open(out / "navpage_classifier.jsonl")]
    assert {r["target"] for r in nav} == {"YES", "NO"}
    assert manifest["target_key_order"] == "catalog"
    slots = ["title", "brand", "price", "original_price", "currency", "availability", "sku", "categories",
             "rating", "review_count", "image_url"]  # configs/datasets.yaml, as the prompt's catalog
    for line in open(out / "productpage_extractor.jsonl"):  # the sample answers carry every key
        assert list(json.loads(json.loads(line)["target"])) == slots

    run = fab(tmp_path, "dataset.split", "--config", CONFIG, env=env)
    assert run.returncode == 0, run.stderr
    splits = {s: [json.loads(line) for line in open(out / "splits" / f"{s}.jsonl")]
              for s in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == manifest["rows_clean"]
    domains = [{r["domain"] for r in rows} for rows in splits.values()]
    assert not (domains[0] & domains[1]) and not (domains[0] & domains[2]) and not (domains[1] & domains[2])

    run = fab(tmp_path, "dataset.stats", "--config", CONFIG, env={**env, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    assert "APPROXIMATE" in run.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert sum(t["n"] for s in stats["per_split"].values() for t in s.values()) == manifest["rows_clean"]


def test_missing_database_is_one_line_and_no_traceback(tmp_path):
    run = fab(tmp_path, "dataset.clean", "--config", CONFIG, env={"DATASET_DB_PATH": str(tmp_path / "x.duckdb")})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"error: database not found: {tmp_path / 'x.duckdb'}; copy your exemplars to data/raw/dataset.duckdb "
        "(or set DATASET_DB_PATH), or run `fab dataset.sample`"]


def test_typo_in_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIG).read_text().replace("batch_size:", "batch_sise:"))
    run = fab(tmp_path, "dataset.split", "--config", str(bad))
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {bad}: unknown key `clean.batch_sise` (did you mean `batch_size`?)"


def test_every_dataset_task_documents_itself(tmp_path):
    listing = fab(tmp_path, "-l").stdout
    for name in ("env.check", "dataset.sample", "dataset.clean", "dataset.split", "dataset.stats"):
        assert name in listing
        help_text = fab(tmp_path, "--help", name).stdout
        assert "Docstring:" in help_text and "Options:" in help_text
