"""ops.backfill on a full fine-tune (train.method full): its run dir or its model/ predicts like the run."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from scripts.config import UserError
from scripts.evaluation.generation.config import EvalConfig
from scripts.ops.backfill import backfill, resolve_model_path
from tests.scripts.evaluation import eval_config_dict, write_datasets_config
from tests.scripts.ops.test_backfill import NAV, NAV_HTML, PRODUCT, PRODUCT_HTML, predictions, write_pages_db
from tests.scripts.training.conftest import full_run, tiny_root  # noqa: F401 (fixtures)

PAGES = [("a", NAV, NAV_HTML, None), ("b", PRODUCT, PRODUCT_HTML, None), ("c", NAV, "", None)]


def _cfg(tmp_path, runs_dir, **model) -> EvalConfig:
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tmp_path / "processed")
    raw = eval_config_dict(tmp_path, "latest", datasets)
    raw["model"].update(runs_dir=str(runs_dir), **model)
    return EvalConfig.model_validate(yaml.safe_load(yaml.safe_dump(raw)))


def test_backfill_of_a_full_run_dir_and_of_its_model_dir(full_run, tiny_root, tmp_path):
    cfg = _cfg(tmp_path, full_run.parent)
    weights_sha = hashlib.sha256((full_run / "model" / "model.safetensors").read_bytes()).hexdigest()
    resolved = resolve_model_path(full_run / "model", cfg)
    assert (resolved.method, resolved.run_dir) == ("full", full_run)  # model/ is the run's, not a bare export

    by_run = write_pages_db(tmp_path / "run.duckdb", PAGES)
    s = backfill(by_run, "pages", full_run, cfg)
    assert (s.selected, s.predicted, s.bad, s.valid) == (3, 2, 1, 2)
    assert s.model_sha == weights_sha and s.model == f"{tiny_root / 'tiny-gemma3'}+full (full)"
    got = predictions(by_run)
    assert got["a"]["output"] in {"YES", "NO"} and got["c"]["valid"] is False
    assert {p["model_sha"] for p in got.values()} == {weights_sha}

    by_model_dir = write_pages_db(tmp_path / "model.duckdb", PAGES)
    again = backfill(by_model_dir, "pages", full_run / "model", cfg)
    assert again.model_sha == weights_sha
    assert {k: v["output"] for k, v in predictions(by_model_dir).items()} == {k: v["output"] for k, v in got.items()}


def test_backfill_refuses_a_base_override_on_a_full_run(full_run, tmp_path):
    cfg = _cfg(tmp_path, full_run.parent, base="google/gemma-3-270m")
    with pytest.raises(UserError, match="is a full fine-tune .*remove the base override"):
        backfill(write_pages_db(tmp_path / "pages.duckdb", PAGES), "pages", full_run, cfg)
