"""scripts.paths: the artifact layout every stage reads and writes, pinned (other stages build no path)."""

from __future__ import annotations

from pathlib import Path

from scripts import paths
from scripts.config import DatasetsConfig, TrainingDataSettings, load_config
from scripts.evaluation.config import EvalConfig
from scripts.evaluation.generate import candidates_path, split_path
from scripts.evaluation.judge_config import JudgeConfig


def test_processed_data_layout(datasets_cfg: DatasetsConfig):
    data = datasets_cfg.data_paths()
    root = datasets_cfg.processed_dir / datasets_cfg.schema_version
    assert data.root == root == datasets_cfg.version_dir()
    assert data.schema_version == datasets_cfg.schema_version
    assert data.clean_file("navpage_classifier") == root / "navpage_classifier.jsonl"
    assert (data.rejects, data.clean_manifest, data.stats) == (
        root / "rejects.jsonl", root / "clean_manifest.json", root / "stats.json")
    assert data.splits_dir == root / "splits"
    assert data.split_file("validation") == root / "splits" / "validation.jsonl"
    assert data.split_manifest == root / "splits" / "manifest.json"
    assert datasets_cfg.data_paths("v9").root == datasets_cfg.processed_dir / "v9"


def test_training_and_eval_read_the_same_split_files(tmp_path):
    training = TrainingDataSettings(processed_dir=tmp_path, schema_version="v2")
    datasets = DatasetsConfig(processed_dir=tmp_path, schema_version="v1", tasks={})
    eval_cfg = EvalConfig.model_validate({"data": {"schema_version": "v2"}})
    assert training.splits_dir() == tmp_path / "v2" / "splits"
    assert split_path(eval_cfg, datasets, "test") == training.data_paths().split_file("test") == (
        tmp_path / "v2" / "splits" / "test.jsonl")
    assert split_path(EvalConfig(), datasets, "test") == tmp_path / "v1" / "splits" / "test.jsonl"


def test_candidates_and_judge_runs(tmp_path):
    out = Path("reports/model_outputs")
    assert paths.candidates_file(out, "validation") == out / "validation_candidates.jsonl"
    assert paths.candidates_file(out, "validation", zero_shot=True) == out / "zero_shot" / "validation_candidates.jsonl"
    eval_cfg = EvalConfig.model_validate({"model": {"zero_shot": True}})
    assert candidates_path(eval_cfg, "test") == eval_cfg.output_dir / "zero_shot" / "test_candidates.jsonl"
    assert paths.judge_run_prefix("validation") == "validation"
    assert paths.judge_run_prefix("validation", zero_shot=True) == "validation_zero_shot"
    assert paths.judge_run_dir(Path("reports/judge"), "r1") / paths.JUDGE_SUMMARY == Path("reports/judge/r1/summary.json")
    assert paths.run_dir(Path("models/runs"), "demo") == Path("models/runs/demo")
    assert paths.export_dir(Path("models/export"), "demo") == Path("models/export/demo")


def test_the_repo_configs_agree_on_where_candidates_and_splits_are():
    """eval.generate writes where eval.judge reads: eval.yaml's output_dir and data, judge_slots.yaml's."""
    from scripts.config import REPO_ROOT

    eval_cfg = load_config(REPO_ROOT / "configs/eval.yaml", EvalConfig)
    judge_cfg = load_config(REPO_ROOT / "configs/judge_slots.yaml", JudgeConfig)
    assert eval_cfg.output_dir == judge_cfg.candidates_dir
    assert eval_cfg.data.datasets_config == judge_cfg.datasets_config
    assert eval_cfg.data.schema_version == judge_cfg.schema_version
