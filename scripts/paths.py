"""Where every artifact lives: one workspace, built from one root and configs/datasets.yaml.

    from scripts.config import load_config
    from scripts.dataset.config import DatasetsConfig
    ws = load_config("configs/datasets.yaml", DatasetsConfig).workspace()
    ws.data.split_file("validation")                         # data/processed/v2/splits/validation.jsonl
    ws.runs_dir / run_id                                     # models/runs/<run_id>
    paths.candidates_file(ws.candidates_dir, "validation", zero_shot=True)
    ws.judge_dir / run_id / paths.JUDGE_SUMMARY

Every stage config names the datasets config (``datasets_config``) and derives
its paths from its workspace; a stage may still override one (``output_dir``,
``runs_dir``, ...). Layout under the workspace root (``root:`` in
configs/datasets.yaml, ``.`` by default; the demo's is ``demo/<tiny|real>``):

    data/raw/dataset.duckdb                 dataset.sample (DATASET_DB_PATH overrides it)
    data/processed/<schema_version>/        dataset.clean: <task>.jsonl, rejects.jsonl, clean_manifest.json
        splits/                             dataset.split: train|validation|test.jsonl, manifest.json
        stats.json                          dataset.stats
    models/runs/<run_id>/                   train.prepare + train.run: config.yaml, adapter/ (lora) or model/ (full)
    models/export/<name>/                   package.export
    reports/model_outputs/[zero_shot/]<split>_candidates.jsonl    eval.generate [--base]
    reports/judge/<split>[_zero_shot]_<UTC time>/results.jsonl, summary.json    eval.judge [--base]
    reports/judge/cache.sqlite              the LLM judge's verdicts, shared by runs
    reports/latest_eval.md                  eval.report
    reports/ops/                            ops.project-tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Processed-data version (data/processed/<v>/). v2: extraction targets in catalog key order (v1: sorted keys).
SCHEMA_VERSION = "v2"
SPLITS = ("train", "validation", "test")  # what dataset.split writes; eval.generate/judge take one of them
SPLITS_DIR = "splits"
SPLIT_MANIFEST = "manifest.json"
CLEAN_MANIFEST = "clean_manifest.json"
REJECTS = "rejects.jsonl"
STATS = "stats.json"
ZERO_SHOT_DIR = "zero_shot"  # the base model's candidates and judge runs sit apart: same names, other folder
JUDGE_RESULTS = "results.jsonl"
JUDGE_SUMMARY = "summary.json"
JUDGE_CACHE = "cache.sqlite"  # in the judge folder: verdicts shared by its runs, so a rerun never pays twice
EXPORT_MANIFEST = "manifest.json"  # a finished bundle's; a bundle without it is not one
RUN_CONFIG = "config.yaml"  # a run's training config snapshot (train.prepare)
RUN_ADAPTER = "adapter"  # train.method lora: the PEFT adapter + tokenizer + generation_config.json
RUN_MODEL = "model"  # train.method full: every trained weight (safetensors) + config.json + tokenizer + generation
RUN_PREPARE = "prepare.json"  # train.prepare's report (checks, encode counts, code version)
RUN_DATASET_MANIFEST = "dataset_manifest.json"  # the split manifest the run was prepared on (copy)
RUN_CHECKPOINTS = "checkpoints"
RUN_METRICS = "metrics.jsonl"
RUN_RESULT = "result.json"  # train.run's RunResult
RUN_TRAIN_TOKENS = "train_tokens"  # the train split as train.prepare tokenized it (datasets' save_to_disk)
DEMO_DIR = Path("demo")  # `fab demo` workspaces: demo/tiny, demo/real, each a root of its own


@dataclass(frozen=True)
class Workspace:
    """Every artifact path of one project folder, derived from its root and the dataset's schema version.

    ``processed`` replaces ``<root>/data/processed`` when the datasets config (or a training config's
    ``data.processed_dir``) sets one."""

    root: Path = Path(".")
    schema_version: str = SCHEMA_VERSION
    processed: Path | None = None

    @property
    def processed_dir(self) -> Path:
        return Path(self.processed) if self.processed is not None else self.root / "data" / "processed"

    @property
    def data(self) -> ProcessedData:
        return ProcessedData.of(self.processed_dir, self.schema_version)

    @property
    def raw_db(self) -> Path:
        return self.root / "data" / "raw" / "dataset.duckdb"

    @property
    def runs_dir(self) -> Path:
        return self.root / "models" / "runs"

    @property
    def export_dir(self) -> Path:
        return self.root / "models" / "export"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def candidates_dir(self) -> Path:
        return self.reports_dir / "model_outputs"

    @property
    def judge_dir(self) -> Path:
        return self.reports_dir / "judge"

    @property
    def eval_report(self) -> Path:
        return self.reports_dir / "latest_eval.md"

    @property
    def ops_dir(self) -> Path:
        return self.reports_dir / "ops"

    @property
    def configs_dir(self) -> Path:
        """Where a generated workspace (the demo's) keeps the configs its stages ran with."""
        return self.root / "configs"

    def check_version(self, path: Path, key: str) -> Path:
        """``path`` unless it lies in another schema version's folder than this workspace's: then a
        one-line `UserError` (a stage reading v1 files while every other stage reads v2)."""
        try:
            version = Path(path).relative_to(self.processed_dir).parts[0]
        except (ValueError, IndexError):
            return Path(path)
        if version != self.schema_version:
            from scripts.config import UserError

            raise UserError(f"`{key}: {path}` is schema {version}'s, the datasets config reads "
                            f"{self.schema_version}; remove `{key}` (it is derived from the datasets config)")
        return Path(path)


@dataclass(frozen=True)
class ProcessedData:
    """``<processed_dir>/<schema_version>/``: what dataset.clean, dataset.split and dataset.stats write."""

    root: Path

    @classmethod
    def of(cls, processed_dir: Path, schema_version: str) -> ProcessedData:
        return cls(Path(processed_dir) / schema_version)

    @property
    def schema_version(self) -> str:
        return self.root.name

    def clean_file(self, task: str) -> Path:
        return self.root / f"{task}.jsonl"

    @property
    def rejects(self) -> Path:
        return self.root / REJECTS

    @property
    def clean_manifest(self) -> Path:
        return self.root / CLEAN_MANIFEST

    @property
    def stats(self) -> Path:
        return self.root / STATS

    @property
    def splits_dir(self) -> Path:
        return self.root / SPLITS_DIR

    def split_file(self, split: str) -> Path:
        return self.splits_dir / split_file_name(split)

    @property
    def split_manifest(self) -> Path:
        return self.splits_dir / SPLIT_MANIFEST


def check_split(split: str) -> str:
    """``split`` if it is one of SPLITS; else a UserError that lists them."""
    if split not in SPLITS:
        from scripts.config import UserError

        raise UserError(f"unknown split {split!r}: the splits are {', '.join(SPLITS)}")
    return split


def split_file_name(split: str) -> str:
    """``<split>.jsonl``: the file name, also the key of the split manifest's ``files``."""
    return f"{split}.jsonl"


def candidates_dir(output_dir: Path, zero_shot: bool = False) -> Path:
    """eval.generate's output folder (eval.yaml ``output_dir`` = judge_slots.yaml ``candidates_dir``);
    the zero-shot baseline's candidates go to its ``zero_shot/`` sub-folder."""
    return Path(output_dir) / ZERO_SHOT_DIR if zero_shot else Path(output_dir)


def candidates_file(output_dir: Path, split: str, zero_shot: bool = False) -> Path:
    return candidates_dir(output_dir, zero_shot) / f"{split}_candidates.jsonl"


def judge_run_prefix(split: str, zero_shot: bool = False) -> str:
    """Judge run ids are ``<prefix>_<UTC time>``; the zero-shot baseline's prefix is ``<split>_zero_shot``."""
    return f"{split}_{ZERO_SHOT_DIR}" if zero_shot else split


def judge_run_dir(output_dir: Path, run_id: str) -> Path:
    return Path(output_dir) / run_id


def run_dir(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id


def other_workspaces(root: Path = Path(".")) -> list[Path]:
    """The demo's workspaces beside ``root``'s own (where a run id a user asks for may be)."""
    return sorted(d for d in (Path(root) / DEMO_DIR).glob("*") if d.is_dir())


def run_weights_dir(run: Path, method: str) -> Path:
    """Where a finished run keeps what it trained: ``adapter/`` (lora) or ``model/`` (full)."""
    return Path(run) / (RUN_MODEL if method == "full" else RUN_ADAPTER)


def export_dir(output: Path, name: str) -> Path:
    return Path(output) / name
