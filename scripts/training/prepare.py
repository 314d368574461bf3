"""``train.prepare``: every check that can fail before GPU time is spent, then the run directory.

    fab train.prepare --config configs/training.yaml

    from scripts.training.prepare import prepare_run
    report = prepare_run(cfg, run_id=None)     # -> models/runs/<run_id>/

Checks: split files exist and match ``splits/manifest.json`` sha256, whose
``target_key_order`` is ``catalog`` (the order decoding generates); the
tokenizer loads and has a chat template with ``<end_of_turn>``; the model
config takes the rope scaling; every example encodes, and the longest one vs
``max_seq_length`` under the truncation policy (counts); with
``packing.enabled`` how the training examples pack (rows, examples per row,
fill, examples alone over the budget); the memory plan
(``scripts.training.memory_plan``) of one step at the longest kept example fits
this host's device, or, with ``device_memory`` (planning another host), the step
at ``max_seq_length`` fits there too; the runs dir is writable. Writes (atomically) ``config.yaml`` (secrets masked),
``dataset_manifest.json`` (copy) and ``prepare.json`` (this report, with the
code version).
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from scripts.config import REPO_ROOT, UserError, config_snapshot
from scripts.contracts import (
    SplitManifest, atomic_write, check_target_key_order, sha256_file, write_model_json,
)
from scripts.model.identity import base_model_label
from scripts.paths import (
    RUN_CHECKPOINTS, RUN_CONFIG, RUN_DATASET_MANIFEST, RUN_PREPARE, RUN_TRAIN_TOKENS, run_dir as run_dir_of,
    split_file_name,
)
from scripts.training.config import TrainingConfig
from scripts.training.data import EncodeStats, build_examples, load_split, pack_rows
from scripts.training.memory_plan import MemoryPlan, check_fits, make_plan

TRAIN_SPLITS = ("train", "validation")


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
    train_tokens_key: str | None = Field(default=None, description="what train_tokens/ was encoded from (split, "
                                         "tokenizer, max_seq_length, truncation); runs prepared before: none")
    attn_implementation: str = ""  # resolved for this host (never `auto`): what train.run loads
    memory_plan: MemoryPlan | None = None


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
    from scripts.model.loading import load_tokenizer

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


def encode_splits(cfg: TrainingConfig, tokenizer) -> tuple[list[dict], dict[str, EncodeStats]]:
    """The train split's rows as train.run trains on them (encoded; with packing.enabled, packed) and both
    splits' counts."""
    stats, rows = {}, []
    for split in TRAIN_SPLITS:
        try:
            encoded, stats[split] = build_examples(
                load_split(cfg.data, split), tokenizer, cfg.model.max_seq_length, cfg.data.truncation
            )
        except ValueError as exc:
            raise UserError(f"{split}: {exc}") from exc
        if split == "train":
            rows = encoded
            if cfg.packing.enabled:
                rows, stats[split].packing = pack_rows(encoded, cfg.packing.max_tokens)
    if stats["train"].examples_kept == 0:
        raise UserError(f"no training example fits max_seq_length {cfg.model.max_seq_length} "
                        f"({stats['train'].dropped_too_long} too long); raise it or use truncate_prompt_left")
    return rows, stats


def train_tokens_key(cfg: TrainingConfig) -> str:
    """What the train split's token ids depend on: its bytes, the tokenizer's files, the length policy. A
    run trains on its prepared train_tokens/ only while this is unchanged (a re-import changes it)."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(sha256_file(cfg.data.data_paths().split_file("train")).encode())
    tokenizer = Path(cfg.model.tokenizer_path)
    files = sorted(tokenizer.glob("tokenizer*")) + sorted(tokenizer.glob("*.jinja")) if tokenizer.is_dir() else []
    for path in files:
        digest.update(path.name.encode() + sha256_file(path).encode())
    if not files:
        digest.update(cfg.model.tokenizer_path.encode())  # a hub id: its revision is what the cache holds
    digest.update(f"{cfg.model.max_seq_length}/{cfg.data.truncation}".encode())
    if cfg.packing.enabled:  # train_tokens/ holds the packed rows
        digest.update(f"/packed {cfg.packing.max_tokens}".encode())
    return digest.hexdigest()


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"output dir {directory} is not writable: {exc.strerror}") from exc


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def plan_memory(cfg: TrainingConfig, model_config, stats: dict[str, EncodeStats], *,
                device_memory: int | None = None, device: str | None = None) -> MemoryPlan:
    """The memory plan at the longest kept example (of both splits) and at ``max_seq_length``."""
    kept = [s for s in stats.values() if s.examples_kept]
    longest = max(min(s.longest_tokens, cfg.model.max_seq_length) for s in kept)
    answer = max(s.longest_answer_tokens for s in kept)
    packed = stats["train"].packing
    if packed is not None:  # a micro-batch is a packed row: its length and its label tokens
        longest, answer = max(longest, packed.longest_row), max(answer, packed.most_answer_tokens)
    return make_plan(cfg, model_config, longest_tokens=longest, longest_answer=answer,
                     device_memory=device_memory, device=device)


def prepare_run(cfg: TrainingConfig, run_id: str | None = None, *, device_memory: int | None = None,
                device: str | None = None) -> PrepareReport:
    """Run all checks, then create ``<runs_dir>/<run_id>/`` with the snapshots; returns the report.
    ``device_memory`` (bytes) and ``device`` (cpu | gpu, default gpu) plan for another host."""
    from scripts.model.gemma3 import resolve_attn_implementation
    from scripts.training.backends import load_model_config

    check_splits(cfg)
    tokenizer = load_checked_tokenizer(cfg)
    model_config = load_model_config(cfg)
    attn = resolve_attn_implementation(cfg.model.attn_implementation)
    train_rows, stats = encode_splits(cfg, tokenizer)
    plan = plan_memory(cfg, model_config, stats, device_memory=device_memory, device=device)
    check_fits(plan, tuple(plan.checked))
    cfg = cfg.resolved()  # the snapshot records where the data and the run are, not "the workspace's"
    check_writable(cfg.output.runs_dir)

    run_id = run_id or cfg.output.run_id or new_run_id()
    run_dir = run_dir_of(cfg.output.runs_dir, run_id)
    if any((run_dir / RUN_CHECKPOINTS).glob("checkpoint-*")):
        raise UserError(f"run {run_id} has already trained ({run_dir}/checkpoints); "
                        "resume it with `fab train.run --resume latest` or choose another run_id")
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"run_id": run_id})})
    label = base_model_label(cfg.model.name_or_path)
    with atomic_write(run_dir / RUN_CONFIG, "w") as fh:
        fh.write(f"# base model: {label}\n")
        yaml.safe_dump(config_snapshot(cfg), fh, sort_keys=False)
    manifest_bytes = cfg.data.data_paths().split_manifest.read_bytes()
    with atomic_write(run_dir / RUN_DATASET_MANIFEST) as fh:
        fh.write(manifest_bytes)
    report = PrepareReport(
        run_id=run_id, run_dir=str(run_dir), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        code_version=code_version(), base_model=cfg.model.name_or_path, base_model_label=label,
        tokenizer=cfg.model.tokenizer_path, method=cfg.train.method,
        max_seq_length=cfg.model.max_seq_length, truncation=cfg.data.truncation,
        packing_max_tokens=cfg.packing.max_tokens if cfg.packing.enabled else None,
        dataset_manifest_sha256=sha256_file(run_dir / RUN_DATASET_MANIFEST), splits=stats,
        train_tokens_key=train_tokens_key(cfg), attn_implementation=attn, memory_plan=plan,
    )
    save_train_tokens(train_rows, run_dir / RUN_TRAIN_TOKENS)
    write_model_json(run_dir / RUN_PREPARE, report)  # last: a run without prepare.json is not prepared
    return report


def save_train_tokens(rows: list[dict], folder: Path) -> None:
    """The encoded train split, written beside the run's snapshots (replaced whole, never half-written)."""
    import shutil

    from datasets import Dataset

    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    Dataset.from_list(rows).save_to_disk(str(staging))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def load_train_tokens(cfg: TrainingConfig, run_dir: Path):
    """``(dataset, train EncodeStats)`` as train.prepare encoded them, or None when the run has none or they
    were encoded from other inputs than ``cfg`` names now (then train.run encodes the split itself)."""
    report = read_prepare(run_dir)
    folder = run_dir / RUN_TRAIN_TOKENS
    if report is None or report.train_tokens_key is None or not folder.is_dir():
        return None
    if report.train_tokens_key != train_tokens_key(cfg):
        return None
    from datasets import load_from_disk

    return load_from_disk(str(folder)), report.splits["train"]


def read_prepare(run_dir: Path) -> PrepareReport | None:
    path = run_dir / RUN_PREPARE
    return PrepareReport.model_validate_json(path.read_bytes()) if path.is_file() else None
