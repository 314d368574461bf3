"""The whole chain on the sample data with a tiny Gemma 3 trained from scratch, on CPU.

    fab demo [--rows 2000] [--steps 800] [--eval-limit 0]

sample -> clean -> split -> stats -> tiny model -> train -> generate -> judge
-> report -> export -> project tokens. Every stage runs through the same
scripts/ function its `fab` task calls, with the repo's configs plus the
overrides below; the derived configs are written to `reports/demo/configs/`
so any stage can be rerun by hand (`fab eval.judge --config
reports/demo/configs/judge_slots.yaml`). Demo artifacts live in their own
folders (data/raw/demo.duckdb, data/processed/demo, models/runs/demo,
models/export/demo, reports/demo*), never over a user's real data, and a
rerun starts them afresh.

The tiny model's quality proves only that the chain learns: expect 100%
valid outputs and nav accuracy above the validation split's majority class.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from scripts.config import REPO_ROOT, DatasetsConfig, TrainingConfig, load_config, set_dotted

SCHEMA_VERSION = "demo"
RAW_DB = Path("data/raw/demo.duckdb")
TINY_MODEL = Path("models/demo-tiny-gemma3")  # models/tiny-gemma3 belongs to train.init-tiny
RUN_ID = "demo"
CONFIG_DIR = Path("reports/demo/configs")
REPORT = Path("reports/demo_eval.md")
EXPORT_DIR = Path("models/export")
BUNDLE_NAME = "demo"
OWNED = (Path("data/processed") / SCHEMA_VERSION, Path("models/runs") / RUN_ID, EXPORT_DIR / BUNDLE_NAME,
         Path("reports/demo"), TINY_MODEL)


@dataclass
class DemoSettings:
    rows: int = 2000
    seed: int = 0
    steps: int = 800
    eval_limit: int = 0  # validation examples generated and judged; 0 = all of them
    hidden_size: int = 64
    layers: int = 2


@dataclass
class DemoResult:
    artifacts: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)


def overrides(settings: DemoSettings) -> dict[str, dict[str, Any]]:
    """Per config file: the dotted keys the demo changes."""
    datasets = str(CONFIG_DIR / "datasets.yaml")
    return {
        "datasets.yaml": {"schema_version": SCHEMA_VERSION, "stats.tokenizer": str(TINY_MODEL)},
        "training_tiny.yaml": {
            "model.name_or_path": str(TINY_MODEL),
            "data.schema_version": SCHEMA_VERSION,
            "output.run_id": RUN_ID,
            "train.max_steps": settings.steps,
            "train.save_steps": max(settings.steps // 2, 1),
        },
        "eval.yaml": {
            "model.adapter": str(Path("models/runs") / RUN_ID),
            "model.attn_implementation": "eager",
            "data.datasets_config": datasets,
            "decoding.batch_size": 4,
            # A tiny model loops inside strings: tight bounds keep every answer inside max_new_tokens.
            "decoding.max_new_tokens": {"classification": 4, "extraction": 512},
            "schema_bounds.max_string_tokens": 12,
            "schema_bounds.max_list_items": 3,
            "output_dir": "reports/demo/model_outputs",
        },
        "judge_slots.yaml": {
            "datasets_config": datasets,
            "candidates_dir": "reports/demo/model_outputs",
            "output_dir": "reports/demo/judge",
            "cache_path": "reports/demo/judge/cache.sqlite",
        },
        "package.yaml": {
            "adapter": str(Path("models/runs") / RUN_ID),
            "name": BUNDLE_NAME,
            "data.datasets_config": datasets,
            "judge_dir": "reports/demo/judge",
        },
        "ops.yaml": {
            "stats_file": f"data/processed/{SCHEMA_VERSION}/stats.json",
            "output_dir": "reports/demo/ops",
        },
    }


def write_configs(settings: DemoSettings) -> dict[str, Path]:
    """Repo config + demo overrides, written out so each stage can be rerun by hand."""
    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, changes in overrides(settings).items():
        raw = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())
        for dotted, value in changes.items():
            set_dotted(raw, dotted, value)
        path = CONFIG_DIR / name
        header = f"# Written by `fab demo`: configs/{name} with the demo's overrides (scripts/demo.py).\n"
        path.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        paths[name] = path
    return paths


def run_demo(settings: DemoSettings, say: Callable[[str], None] = print, console=None) -> DemoResult:
    result = DemoResult()

    def stage(name: str):
        return _Stage(name, result, say)

    for path in OWNED:
        shutil.rmtree(path, ignore_errors=True)
    configs = write_configs(settings)
    datasets = load_config(configs["datasets.yaml"], DatasetsConfig)

    with stage("sample"):
        from scripts.sample_data import generate_sample

        generate_sample(RAW_DB, rows=settings.rows, seed=settings.seed)
        result.artifacts["raw data"] = RAW_DB
    with stage("clean + split"):
        from scripts.dataset.clean import clean_dataset
        from scripts.dataset.split import split_dataset

        clean = clean_dataset(RAW_DB, datasets, SCHEMA_VERSION)
        split = split_dataset(datasets)
        say(f"  {clean.rows_clean} clean, {clean.rows_rejected} rejected; splits {split.counts}")
        result.artifacts["splits"] = datasets.version_dir() / "splits"
    with stage("tiny model"):
        from scripts.tiny_model import build_tiny_gemma, texts_for_tokenizer

        texts, _ = texts_for_tokenizer(datasets.version_dir() / "splits")
        build_tiny_gemma(TINY_MODEL, texts, hidden_size=settings.hidden_size,
                         num_layers=settings.layers, seed=settings.seed, embedding_scale=10.0)
        result.artifacts["tiny base model"] = TINY_MODEL
    with stage("stats"):
        from scripts.dataset.stats import STATS_FILE, compute_stats

        compute_stats(datasets)
        result.artifacts["stats"] = datasets.version_dir() / STATS_FILE
    with stage("train"):
        from scripts.training.run import run_training

        training = run_training(load_config(configs["training_tiny.yaml"], TrainingConfig), console=console,
                                say=lambda s: say(f"  {s}"))
        say(f"  {training.global_step} steps, final loss {training.final_loss:.3f}")
        result.artifacts["adapter"] = training.adapter_dir
    with stage("generate"):
        from scripts.evaluation.config import EvalConfig
        from scripts.evaluation.generate import generate_candidates

        generated = generate_candidates(load_config(configs["eval.yaml"], EvalConfig), "validation",
                                        limit=settings.eval_limit or None)
        say(f"  {generated.written} candidates, valid {generated.valid_rate:.0%}")
        for warning in generated.warnings:
            say(f"  warning: {warning}")
        result.artifacts["candidates"] = generated.path
    with stage("judge + report"):
        from scripts.evaluation.judge import run_judge
        from scripts.evaluation.judge_config import JudgeConfig
        from scripts.evaluation.report import write_report

        judge_cfg = load_config(configs["judge_slots.yaml"], JudgeConfig)
        judge_dir, summary = run_judge(judge_cfg, "validation")
        write_report(judge_cfg.output_dir, judge_dir.name, REPORT, cfg=judge_cfg.report)
        result.artifacts["judge run"] = judge_dir
        result.artifacts["report"] = REPORT
        result.headline = _headline(summary, datasets)
    with stage("export"):
        from scripts.packaging.export import PackageConfig, export_bundle

        bundle = export_bundle(load_config(configs["package.yaml"], PackageConfig), EXPORT_DIR, force=True)
        result.artifacts["bundle"] = bundle.path
    with stage("project tokens"):
        from scripts.ops.projection import OpsConfig, project_tokens, write_projection

        projection = project_tokens(load_config(configs["ops.yaml"], OpsConfig))
        json_path, _ = write_projection(projection, Path("reports/demo/ops"))
        result.artifacts["token projection"] = json_path
    result.artifacts["configs"] = CONFIG_DIR
    return result


def _headline(summary: dict, datasets: DatasetsConfig) -> list[str]:
    """Validity and nav accuracy next to the majority-class baseline of the judged examples."""
    lines = []
    for task, t in summary["tasks"].items():
        validity = t["json_validity"]
        if t["kind"] == "classification":
            m = t["classification"]
            majority = _majority_share(m)
            lines.append(f"{task}: accuracy {m['accuracy']:.1%} (majority-class baseline {majority:.1%}), "
                         f"valid {validity:.0%}, n={t['n']}")
        else:
            lines.append(f"{task}: slot accuracy {t['metrics']['slot_accuracy']:.1%}, "
                         f"valid {validity:.0%}, n={t['n']}")
    return lines


def _majority_share(metrics: dict) -> float:
    """Accuracy of always answering the most common reference label."""
    support = [sum(row.values()) for row in metrics["confusion"].values()]
    return max(support) / sum(support) if sum(support) else 0.0


class _Stage:
    def __init__(self, name: str, result: DemoResult, say: Callable[[str], None]):
        self.name, self.result, self.say = name, result, say

    def __enter__(self):
        self.start = time.perf_counter()
        self.say(f"== {self.name}")
        return self

    def __exit__(self, *exc_info):
        self.result.seconds[self.name] = time.perf_counter() - self.start
        if exc_info[0] is None:
            self.say(f"  done in {self.result.seconds[self.name]:.1f}s")
