"""``train.prepare``: every check that can fail before GPU time is spent, then the run directory.

    fab train.prepare --config configs/training.yaml

    from scripts.training.prepare import prepare_run
    report = prepare_run(cfg, run_id=None)     # -> models/runs/<run_id>/

Checks: split files exist and match ``splits/manifest.json`` sha256, whose
``target_key_order`` is ``catalog`` (the order decoding generates); the
tokenizer loads and has a chat template with ``<end_of_turn>``; the model
config takes the rope scaling; every example encodes, and the longest one vs
``max_seq_length`` under the truncation policy (counts), and with
``packing.enabled`` how the training examples pack (rows, examples per row,
fill, examples alone over the budget); the runs dir is
writable. Writes (atomically) ``config.yaml`` (secrets masked),
``dataset_manifest.json`` (copy) and ``prepare.json`` (this report, with the
code version).
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml
from pydantic import BaseModel

from scripts.config import REPO_ROOT, TrainingConfig, UserError, config_snapshot
from scripts.contracts import (
    SplitManifest, atomic_write, check_target_key_order, sha256_file, write_model_json,
)
from scripts.gguf_import import base_model_label
from scripts.paths import run_dir as run_dir_of, split_file_name
from scripts.training.data import EncodeStats, build_examples, load_split, pack_rows

TRAIN_SPLITS = ("train", "validation")
PREPARE_FILE = "prepare.json"
CONFIG_FILE = "config.yaml"
MANIFEST_COPY = "dataset_manifest.json"


class PrepareReport(BaseModel):
    run_id: str
    run_dir: str
    created: str
    code_version: str
    base_model: str
    base_model_label: str = ""  # what the base is: an import names its source, e.g. "(GGUF Q4_K_M, dequantised)"
    tokenizer: str
    method: str = "lora"  # train.method: lora (adapter/) or full (model/)
    max_seq_length: int
    truncation: str
    packing_max_tokens: int | None = None  # packing.max_tokens when packing.enabled (splits.train.packing: how)
    dataset_manifest_sha256: str
    splits: dict[str, EncodeStats]


def code_version() -> str:
    """``git rev-parse HEAD`` (+ ``-dirty``), or ``unknown`` outside a checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_splits(cfg: TrainingConfig) -> SplitManifest:
    """The split manifest, after checking the training splits still match it byte for byte."""
    data = cfg.data.data_paths()
    manifest_path = data.split_manifest
    if not manifest_path.is_file():
        raise UserError(f"no split manifest at {manifest_path}; run `fab dataset.split` first")
    check_target_key_order(manifest_path)  # never train on targets in another key order than decoding uses
    manifest = SplitManifest.model_validate_json(manifest_path.read_bytes())
    for split in TRAIN_SPLITS:
        path, entry = data.split_file(split), manifest.files.get(split_file_name(split))
        if entry is None:
            raise UserError(f"{manifest_path} lists no {split}.jsonl; rerun `fab dataset.split`")
        if not path.is_file():
            raise UserError(f"split file missing: {path}; rerun `fab dataset.split`")
        if sha256_file(path) != entry.sha256:
            raise UserError(f"{path} changed since `dataset.split` (sha256 differs from {manifest_path}); "
                            "rerun `fab dataset.split` to record the new data")
    return manifest


def load_checked_tokenizer(cfg: TrainingConfig):
    from scripts.model_loading import load_tokenizer

    name = cfg.model.tokenizer_path
    try:
        tokenizer = load_tokenizer(name)
    except (OSError, ValueError) as exc:
        raise UserError(f"tokenizer {name} does not load: {str(exc).splitlines()[0]}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"tokenizer {name} has no chat template; training needs Gemma 3's")
    if tokenizer.convert_tokens_to_ids("<end_of_turn>") in (None, tokenizer.unk_token_id):
        raise UserError(f"tokenizer {name} has no <end_of_turn> token; is it a Gemma 3 tokenizer?")
    return tokenizer


def encode_stats(cfg: TrainingConfig, tokenizer) -> dict[str, EncodeStats]:
    stats = {}
    for split in TRAIN_SPLITS:
        try:
            rows, stats[split] = build_examples(
                load_split(cfg.data, split), tokenizer, cfg.model.max_seq_length, cfg.data.truncation
            )
            if split == "train" and cfg.packing.enabled:
                _, stats[split].packing = pack_rows(rows, cfg.packing.max_tokens)
        except ValueError as exc:
            raise UserError(f"{split}: {exc}") from exc
    if stats["train"].examples_kept == 0:
        raise UserError(f"no training example fits max_seq_length {cfg.model.max_seq_length} "
                        f"({stats['train'].dropped_too_long} too long); raise it or use truncate_prompt_left")
    return stats


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"output dir {directory} is not writable: {exc.strerror}") from exc


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def prepare_run(cfg: TrainingConfig, run_id: str | None = None) -> PrepareReport:
    """Run all checks, then create ``<runs_dir>/<run_id>/`` with the snapshots; returns the report."""
    from scripts.training.backends import load_model_config

    check_splits(cfg)
    tokenizer = load_checked_tokenizer(cfg)
    load_model_config(cfg)
    stats = encode_stats(cfg, tokenizer)
    check_writable(cfg.output.runs_dir)

    run_id = run_id or cfg.output.run_id or new_run_id()
    run_dir = run_dir_of(cfg.output.runs_dir, run_id)
    if any((run_dir / "checkpoints").glob("checkpoint-*")):
        raise UserError(f"run {run_id} has already trained ({run_dir}/checkpoints); "
                        "resume it with `fab train.run --resume latest` or choose another run_id")
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"run_id": run_id})})
    label = base_model_label(cfg.model.name_or_path)
    with atomic_write(run_dir / CONFIG_FILE, "w") as fh:
        fh.write(f"# base model: {label}\n")
        yaml.safe_dump(config_snapshot(cfg), fh, sort_keys=False)
    manifest_bytes = cfg.data.data_paths().split_manifest.read_bytes()
    with atomic_write(run_dir / MANIFEST_COPY) as fh:
        fh.write(manifest_bytes)
    report = PrepareReport(
        run_id=run_id, run_dir=str(run_dir), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        code_version=code_version(), base_model=cfg.model.name_or_path, base_model_label=label,
        tokenizer=cfg.model.tokenizer_path, method=cfg.train.method,
        max_seq_length=cfg.model.max_seq_length, truncation=cfg.data.truncation,
        packing_max_tokens=cfg.packing.max_tokens if cfg.packing.enabled else None,
        dataset_manifest_sha256=sha256_file(run_dir / MANIFEST_COPY), splits=stats,
    )
    write_model_json(run_dir / PREPARE_FILE, report)
    return report


def read_prepare(run_dir: Path) -> PrepareReport | None:
    path = run_dir / PREPARE_FILE
    return PrepareReport.model_validate_json(path.read_bytes()) if path.is_file() else None
