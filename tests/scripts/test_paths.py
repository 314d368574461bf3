"""scripts.paths: the workspace every stage derives its paths from, pinned (other stages build no path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts import paths
from scripts.config import REPO_ROOT, UserError, load_config
from scripts.dataset.config import DatasetsConfig
from scripts.evaluation.generation.config import EvalConfig
from scripts.evaluation.generation.generate import candidates_path
from scripts.evaluation.judging.config import JudgeConfig
from scripts.ops.config import OpsConfig
from scripts.packaging.config import PackageConfig
from scripts.training.config import TrainingConfig

STAGES = {"training.yaml": TrainingConfig, "training_tiny.yaml": TrainingConfig, "eval.yaml": EvalConfig,
          "judge_slots.yaml": JudgeConfig, "package.yaml": PackageConfig, "ops.yaml": OpsConfig}


def test_workspace_layout():
    ws = paths.Workspace(Path("demo/tiny"), "v2")
    root = Path("demo/tiny")
    assert (ws.raw_db, ws.processed_dir, ws.runs_dir, ws.export_dir) == (
        root / "data/raw/dataset.duckdb", root / "data/processed", root / "models/runs", root / "models/export")
    assert (ws.candidates_dir, ws.judge_dir, ws.eval_report, ws.ops_dir, ws.configs_dir) == (
        root / "reports/model_outputs", root / "reports/judge", root / "reports/latest_eval.md",
        root / "reports/ops", root / "configs")
    data = ws.data
    assert data.root == root / "data/processed/v2" and data.schema_version == "v2"
    assert data.clean_file("navpage_classifier") == data.root / "navpage_classifier.jsonl"
    assert (data.rejects, data.clean_manifest, data.stats) == (
        data.root / "rejects.jsonl", data.root / "clean_manifest.json", data.root / "stats.json")
    assert data.split_file("validation") == data.root / "splits/validation.jsonl"
    assert data.split_manifest == data.root / "splits/manifest.json"
    # the default workspace is the repo's own layout, relative to the working directory
    assert paths.Workspace().runs_dir == Path("models/runs") and paths.Workspace().data.root == Path(
        "data/processed") / paths.SCHEMA_VERSION


def test_datasets_config_builds_the_workspace(datasets_cfg: DatasetsConfig, tmp_path):
    ws = datasets_cfg.workspace()
    assert ws.data.root == tmp_path / "processed" / datasets_cfg.schema_version == datasets_cfg.data_paths().root
    assert datasets_cfg.data_paths("v9").root == tmp_path / "processed" / "v9"
    moved = datasets_cfg.model_copy(update={"root": tmp_path / "ws", "processed_dir": None}).workspace()
    assert moved.data.root == tmp_path / "ws/data/processed/v2" and moved.runs_dir == tmp_path / "ws/models/runs"


def test_candidates_and_judge_runs():
    out = Path("reports/model_outputs")
    assert paths.candidates_file(out, "validation") == out / "validation_candidates.jsonl"
    assert paths.candidates_file(out, "validation", zero_shot=True) == out / "zero_shot" / "validation_candidates.jsonl"
    eval_cfg = EvalConfig.model_validate({"model": {"zero_shot": True}})
    assert candidates_path(eval_cfg, "test") == out / "zero_shot" / "test_candidates.jsonl"
    assert paths.judge_run_prefix("validation") == "validation"
    assert paths.judge_run_prefix("validation", zero_shot=True) == "validation_zero_shot"
    assert paths.judge_run_dir(Path("reports/judge"), "r1") / paths.JUDGE_SUMMARY == Path("reports/judge/r1/summary.json")


@pytest.fixture
def workspace_configs(tmp_path, monkeypatch) -> Path:
    """The repo's configs in a temp dir, the datasets config's root moved to ``ws``."""
    monkeypatch.chdir(tmp_path)
    configs = tmp_path / "configs"
    for name in ("datasets.yaml", *STAGES):
        (configs / name).parent.mkdir(exist_ok=True)
        (configs / name).write_text((REPO_ROOT / "configs" / name).read_text())
    raw = yaml.safe_load((configs / "datasets.yaml").read_text())
    (configs / "datasets.yaml").write_text(yaml.safe_dump({**raw, "root": "ws"}, sort_keys=False))
    return configs


def test_every_shipped_stage_config_derives_its_paths_from_the_one_workspace(workspace_configs):
    """Change `root` in datasets.yaml and every stage follows: no stage config restates a path."""
    for name, model in STAGES.items():
        text = (workspace_configs / name).read_text()
        for restated in ("data/processed", "models/runs", "reports/", "schema_version:"):
            assert restated not in [line.split("#")[0].strip() for line in text.splitlines()], (name, restated)
    ws = Path("ws")
    training = load_config(workspace_configs / "training.yaml", TrainingConfig).resolved()
    assert training.data.data_paths().splits_dir == ws / "data/processed/v2/splits"
    assert training.output.runs_dir == ws / "models/runs"
    evaluation = load_config(workspace_configs / "eval.yaml", EvalConfig).resolved()
    judge = load_config(workspace_configs / "judge_slots.yaml", JudgeConfig).resolved()
    assert evaluation.output_dir == judge.candidates_dir == ws / "reports/model_outputs"
    assert evaluation.model.runs_dir == ws / "models/runs" and judge.output_dir == ws / "reports/judge"
    assert judge.cache_path == ws / "reports/judge/cache.sqlite"
    package = load_config(workspace_configs / "package.yaml", PackageConfig).resolved()
    assert (package.runs_dir, package.judge_dir) == (ws / "models/runs", ws / "reports/judge")
    ops = load_config(workspace_configs / "ops.yaml", OpsConfig).resolved()
    assert (ops.stats_file, ops.output_dir) == (ws / "data/processed/v2/stats.json", ws / "reports/ops")


def test_a_stage_may_override_a_path_but_not_contradict_the_schema_version(workspace_configs, tmp_path):
    evaluation = load_config(workspace_configs / "eval.yaml", EvalConfig, {"output_dir": str(tmp_path / "out")})
    assert evaluation.resolved().output_dir == tmp_path / "out"
    # an old config naming the paths the workspace derives still works when it agrees with them ...
    agreeing = load_config(workspace_configs / "ops.yaml", OpsConfig, {"stats_file": "ws/data/processed/v2/stats.json"})
    assert agreeing.resolved().stats_file == Path("ws/data/processed/v2/stats.json")
    same = load_config(workspace_configs / "training.yaml", TrainingConfig, {"data.schema_version": "v2"})
    assert same.resolved().data.schema_version == "v2"
    # ... and is refused in one line when it reads another schema version than the dataset's
    old_ops = load_config(workspace_configs / "ops.yaml", OpsConfig, {"stats_file": "ws/data/processed/v1/stats.json"})
    with pytest.raises(UserError) as err:
        old_ops.resolved()
    assert str(err.value) == ("`stats_file: ws/data/processed/v1/stats.json` is schema v1's, the datasets config "
                              "reads v2; remove `stats_file` (it is derived from the datasets config)")
    for name, key in (("training.yaml", "data.schema_version"), ("eval.yaml", "data.schema_version"),
                      ("judge_slots.yaml", "schema_version"), ("package.yaml", "data.schema_version")):
        cfg = load_config(workspace_configs / name, STAGES[name], {key: "v1"})
        with pytest.raises(UserError, match=r"^`schema_version: v1` contradicts configs/datasets.yaml "
                                            r"\(schema_version v2\); remove it") as err:
            cfg.resolved()
        assert "\n" not in str(err.value)
