"""Where every artifact lives, derived from the configs: each path is built here, once.

    from scripts import paths
    data = datasets_cfg.data_paths()                         # paths.ProcessedData(data/processed/v2)
    data.split_file("validation")                            # .../v2/splits/validation.jsonl
    paths.candidates_file(eval_cfg.output_dir, "validation", zero_shot=eval_cfg.model.zero_shot)
    paths.judge_run_dir(judge_cfg.output_dir, run_id) / paths.JUDGE_SUMMARY
    paths.run_dir(training_cfg.output.runs_dir, run_id)      # models/runs/<run_id>
    paths.export_dir(Path("models/export"), name)            # models/export/<name>

Layout (the defaults of configs/*.yaml):

    data/processed/<schema_version>/        dataset.clean: <task>.jsonl, rejects.jsonl, clean_manifest.json
        splits/                             dataset.split: train|validation|test.jsonl, manifest.json
        stats.json                          dataset.stats
    models/runs/<run_id>/                   train.run: adapter/ (train.method lora) or model/ (full)
    reports/model_outputs/[zero_shot/]<split>_candidates.jsonl    eval.generate [--base]
    reports/judge/<split>[_zero_shot]_<UTC time>/results.jsonl, summary.json    eval.judge [--base]
    models/export/<name>/                   package.export
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")  # what dataset.split writes; eval.generate/judge take one of them
SPLITS_DIR = "splits"
SPLIT_MANIFEST = "manifest.json"
CLEAN_MANIFEST = "clean_manifest.json"
REJECTS = "rejects.jsonl"
STATS = "stats.json"
ZERO_SHOT_DIR = "zero_shot"  # the base model's candidates and judge runs sit apart: same names, other folder
JUDGE_RESULTS = "results.jsonl"
JUDGE_SUMMARY = "summary.json"
EXPORT_DIR = Path("models/export")  # package.export's default --output: bundles are <EXPORT_DIR>/<name>/
EXPORT_MANIFEST = "manifest.json"  # a finished bundle's; a bundle without it is not one
RUN_CONFIG = "config.yaml"  # a run's training config snapshot (train.prepare)
RUN_ADAPTER = "adapter"  # train.method lora: the PEFT adapter + tokenizer + generation_config.json
RUN_MODEL = "model"  # train.method full: every trained weight (safetensors) + config.json + tokenizer + generation


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


def run_weights_dir(run: Path, method: str) -> Path:
    """Where a finished run keeps what it trained: ``adapter/`` (lora) or ``model/`` (full)."""
    return Path(run) / (RUN_MODEL if method == "full" else RUN_ADAPTER)


def export_dir(output: Path, name: str) -> Path:
    return Path(output) / name
