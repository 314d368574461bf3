"""Data contracts: every artifact one stage writes and another reads, as a pydantic model.

A stage reads the previous stage's files through these models, never by
re-parsing JSON by hand:

    from scripts.contracts import CleanRecord, read_jsonl
    for record in read_jsonl(path, CleanRecord): ...
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from scripts.config import UserError
from scripts.paths import SCHEMA_VERSION

REQUIRED_RAW_COLUMNS = ("id", "task", "prompt_text", "response_strong", "metadata", "slot_specs")
OPTIONAL_RAW_COLUMNS = ("system_prompt",)
RAW_COLUMNS = REQUIRED_RAW_COLUMNS + OPTIONAL_RAW_COLUMNS  # the raw `examples` table, in this order

RejectReason = Literal[
    "duplicate_id",
    "missing_id",
    "unknown_task",
    "empty_prompt",
    "empty_response",
    "label_not_in_set",
    "invalid_json",
    "target_not_object",
    "invalid_slot_specs",
    "invalid_metadata",
]


# Key order of extraction targets, recorded in the clean and split manifests. "catalog": the task's
# `slots:` order in configs/datasets.yaml (schema v2 on). "sorted": sorted keys (v1; a manifest
# without the field). Training and evaluation refuse processed data in another order than this one.
TARGET_KEY_ORDER = "catalog"
TargetKeyOrder = Literal["catalog", "sorted"]
KEY_ORDER_BEFORE_FIELD: TargetKeyOrder = "sorted"


def canonical_target(value: dict[str, Any], slot_order: list[str]) -> str:
    """The canonical text of an extraction answer: compact JSON, the task's slots in catalog order
    (``TaskSpec.slot_order``), then any keys outside the catalog, sorted; nested objects sorted.

    A key missing from ``value`` stays missing and an unknown one stays in (clean rejects neither).
    """
    catalog = set(slot_order)
    keys = [k for k in slot_order if k in value] + sorted(k for k in value if k not in catalog)
    parts = [orjson.dumps(k) + b":" + orjson.dumps(value[k], option=orjson.OPT_SORT_KEYS) for k in keys]
    return (b"{" + b",".join(parts) + b"}").decode()


def check_target_key_order(manifest: Path, *, required: bool = True) -> None:
    """Refuse processed data whose clean or split manifest records another target key order.

    ``required=False``: a missing manifest (a hand-made split) is taken as it is.
    """
    if not manifest.is_file():
        if required:
            raise UserError(f"no manifest at {manifest}; run `fab dataset.clean` and `fab dataset.split`")
        return
    try:
        data = json.loads(manifest.read_text())
    except ValueError as exc:
        raise UserError(f"{manifest}: not valid JSON ({exc.__class__.__name__})") from exc
    order = data.get("target_key_order", KEY_ORDER_BEFORE_FIELD) if isinstance(data, dict) else None
    if order != TARGET_KEY_ORDER:
        version = data.get("schema_version", "?") if isinstance(data, dict) else "?"
        raise UserError(
            f"{manifest}: extraction targets in {order} key order (schema {version}), this code trains "
            f"and decodes in {TARGET_KEY_ORDER} order; rerun `fab dataset.clean --schema-version "
            f"{SCHEMA_VERSION}` and `fab dataset.split` (the shipped configs read {SCHEMA_VERSION})"
        )


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CleanRecord(Record):
    id: str = Field(min_length=1)
    task: str
    kind: Literal["classification", "extraction"]
    system_prompt: str
    prompt: str = Field(min_length=1)
    target: str = Field(min_length=1, description="exact text the model must emit: a label, or "
                        "`canonical_target` (compact JSON, keys in catalog order)")
    domain: str
    slot_specs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    schema_version: str
    prompt_chars: int = Field(ge=1)


class Reject(Record):
    id: str | None
    task: str | None
    reason: RejectReason
    field: str
    value: str | None = Field(description="offending value, abbreviated to 200 chars")


class CleanManifest(Record):
    schema_version: str
    target_key_order: TargetKeyOrder = Field(
        default=KEY_ORDER_BEFORE_FIELD, description="key order of extraction targets (TARGET_KEY_ORDER); "
        "absent in manifests written before schema v2, whose targets had sorted keys")
    source: str
    source_sha256: str
    rows_in: int
    rows_clean: int
    rows_rejected: int
    clean_by_task: dict[str, int]
    rejected_by_reason: dict[str, int]
    files: dict[str, "FileEntry"]


class FileEntry(Record):
    sha256: str
    bytes: int
    rows: int | None = None


class SplitManifest(Record):
    schema_version: str
    target_key_order: TargetKeyOrder = Field(
        default=KEY_ORDER_BEFORE_FIELD, description="the clean manifest's; absent before schema v2 (sorted)")
    seed: int
    ratios: dict[str, float]
    config: dict[str, Any]
    clean_manifest_sha256: str
    counts: dict[str, int]
    counts_by_task: dict[str, dict[str, int]]
    counts_by_label: dict[str, dict[str, int]]
    domains: dict[str, list[str]]
    warnings: list[str]
    files: dict[str, FileEntry]

    def counts_text(self) -> str:
        """``train 1567, validation 196, test 197``: the counts as a log line says them."""
        return ", ".join(f"{split} {n}" for split, n in self.counts.items())


class RunSettings(Record):
    """A training run's settings as the eval report shows them, read from the run's result.json and
    config.yaml when its candidates are generated (the run folder may be gone by report time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # frozen: hashable, as Provenance holds it

    method: Literal["lora", "full"]
    global_step: int
    train_examples: int
    final_loss: float | None
    backend: str
    world_size: int = 1
    lr: float | None = Field(default=None, description="None when the run has no config.yaml snapshot (nor "
                             "the batch fields below)")
    batch_size: int | None = Field(default=None, description="per device; None when packing")
    packed_max_tokens: int | None = Field(default=None, description="packing: tokens per packed row")
    grad_accum: int | None = None


class Provenance(Record):
    """Where a candidate's model came from, captured when it is generated: the report reads these fields,
    never the ``Candidate.model`` label nor models/ (an import or a run may have changed or gone since)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # frozen: hashable, so a summary lists each once

    base: str = Field(description="hub id or path of the base: a LoRA adapter's base, the model a full "
                      "fine-tune started from, a merged bundle itself")
    base_label: str = Field(description="what the base is: an import's own label (`google/gemma-3-270m (GGUF "
                            "Q4_K_M, dequantised)`), else `base` as given")
    zero_shot: bool = Field(default=False, description="the base model alone, as released (the baseline)")
    method: Literal["lora", "full"] | None = Field(default=None, description="the run's train.method; None: "
                                                   "a base alone or a merged bundle")
    run_id: str | None = Field(default=None, description="the training run's folder name (an adapter outside "
                               "a run: its folder's name)")
    adapter: str | None = Field(default=None, description="the run's adapter/ (lora) or model/ (full)")
    training: RunSettings | None = Field(default=None, description="None: no readable result.json in the run")


class Candidate(Record):
    """One small-model output: reports/model_outputs/<split>_candidates.jsonl."""

    id: str
    task: str
    kind: Literal["classification", "extraction"]
    prompt_sha256: str
    model: str = Field(description="the model's label, for display: base model id or export path, plus "
                       "adapter run id if any; its parts are in `provenance`")
    constrained: bool
    raw: str = Field(description="decoded text before parsing")
    parsed: Any = Field(description="label text, or the JSON object; None when invalid")
    valid: bool
    latency_s: float
    prompt_tokens: int
    output_tokens: int
    label_probs: dict[str, float] | None = Field(
        default=None, description="classification: P(label) from the first-token logits"
    )
    slot_logprob: dict[str, float] | None = Field(
        default=None, description="extraction: mean token log-probability of each slot's value"
    )
    truncated_slots: list[str] = Field(
        default_factory=list,
        description="slots closed early by constrained decoding (max_new_tokens or the string bound), in "
        "answer order; classification: ['label']. Scored wrong whatever their value",
    )
    engine: Literal["hf", "vllm"] = Field(default="hf", description="what generated it (files before "
                                          "engines were recorded: hf, the only one then)")
    engine_version: str | None = Field(default=None, description="transformers' or vLLM's version")
    provenance: Provenance | None = Field(default=None, description="None in files written before it was "
                                          "recorded (the report then shows no base, adapter or training)")


class BundleManifest(Record):
    """models/export/<name>/manifest.json: what the bundle is and how to check it."""

    name: str
    created_at: str
    base_model: str
    method: Literal["lora", "full"] = Field(
        default="lora", description="the run's train.method: lora (adapter merged) or full (weights copied)")
    adapter_path: str = Field(description="the run's adapter/ (lora) or model/ (full) the bundle was made from")
    adapter_run_id: str | None
    adapter_sha256: str | None = Field(
        description="sha256 of adapter_model.safetensors (lora) or of the run's model.safetensors (full)")
    training_config: dict[str, Any] | None
    dataset_manifest_sha256: str | None
    eval_summary: dict[str, Any] | None
    parity: dict[str, Any]
    rope: dict[str, Any]
    dtype: str
    vllm_command: str
    serve_commands: dict[str, str] = Field(default_factory=dict, description="cuda, rocm, cpu: the serve "
                                           "command per host kind (bundles before 2026-12-06: none)")
    vllm_check: dict[str, Any] | None = Field(default=None, description="the bundle served by vLLM at export: "
                                              "version, answers valid and equal to eval.generate's, or why not checked")
    package_versions: dict[str, str]
    files: dict[str, FileEntry] = Field(description="every other file in the bundle: sha256 and size")


# --- dataset.stats ----------------------------------------------------------


class TokenCounter(BaseModel):
    source: str
    exact: bool
    note: str


class TaskSplitStats(BaseModel):
    n: int
    prompt_tokens: dict[str, int]
    prompt_tokens_mean: float
    target_tokens_mean: float
    over_max_seq_length: int
    labels: dict[str, int] | None = None
    slot_fill_rate: dict[str, float] | None = None
    answer_in_prompt: float | None = None
    answer_in_truncated_prompt: float | None = None


class SlotProposal(BaseModel):
    """A slot constraint ``dataset.stats`` proposes from the training targets (``scripts.dataset.constraints``)."""

    constraints: dict[str, Any] = Field(description="registry keys to add to the slot (enum, max_chars, ...)")
    evidence: str = Field(description="the counts behind them")


class ConstraintViolations(BaseModel):
    """Training targets of one slot that break its configured constraints."""

    count: int
    first: str = Field(description="what the first one breaks")
    example_ids: list[str] = Field(default_factory=list)


class StatsReport(BaseModel):
    """data/processed/<schema_version>/stats.json, read by ops.project-tokens."""

    schema_version: str
    tokenizer: TokenCounter
    max_seq_length: int
    per_split: dict[str, dict[str, TaskSplitStats]]
    top_domains: dict[str, list[tuple[str, int]]]
    near_duplicates_across_splits: int
    near_duplicate_examples: list[list[str]]
    constraints_from: str | None = Field(default=None, description="split the constraint proposals and checks read")
    constraint_proposals: dict[str, dict[str, SlotProposal]] = Field(
        default_factory=dict, description="task -> slot -> constraints proposed from the training targets")
    constraint_proposals_yaml: dict[str, str] = Field(default_factory=dict, description="task -> lines to paste")
    constraint_violations: dict[str, dict[str, ConstraintViolations]] = Field(
        default_factory=dict, description="task -> slot -> training targets breaking the configured constraints")


# --- train.run ----------------------------------------------------------------


class MetricsRow(Record):
    """One line of models/runs/<run_id>/metrics.jsonl (one per logging step)."""

    step: int
    epoch: float
    loss: float | None = Field(description="mean training loss over the answer tokens since the last line")
    lr: int | float | None  # int | float: a value is written back exactly as the trainer logged it
    grad_norm: int | float | None
    tokens: int | float | None = Field(description="input tokens seen so far (all ranks)")
    tokens_per_s: int | float | None
    peak_memory_mb: float


class RunResult(BaseModel):
    """models/runs/<run_id>/result.json: what ``train.run`` did (rank 0 of a DDP run)."""

    run_id: str
    run_dir: str
    backend: str
    backend_reason: str
    method: Literal["lora", "full"] = "lora"  # train.method
    resumed_from: str | None
    global_step: int
    interrupted_by: str | None = None
    adapter_dir: str | None = None  # train.method lora: <run_dir>/adapter
    model_dir: str | None = None  # train.method full: <run_dir>/model (every trained weight, a plain model folder)
    final_loss: float | None = None
    train_examples: int
    dropped_too_long: int
    truncated: int
    world_size: int = 1
    rank_adapter_sha256: list[str] | None = None  # one per DDP rank, all equal; None on one process
    # (the hash of the LoRA weights, or of every weight for method full)

    @property
    def weights_dir(self) -> str | None:
        """What the run trained, whatever the method: adapter_dir (lora) or model_dir (full)."""
        return self.model_dir if self.method == "full" else self.adapter_dir


# --- ops.backfill ---------------------------------------------------------------


class PredictionRow(Record):
    """One row of the backfill's ``predictions`` table (``created_at`` is added at insert time)."""

    id: Any = Field(description="the source table's id, in its own type (text, integer, ...)")
    task: str | None
    output: str | None
    valid: bool
    model_sha: str
    error: str | None = None
    engine: str | None = Field(default=None, description="what generated it and its version: 'vllm 0.32.0'")

    def insert_values(self, created_at) -> tuple:
        """In the table's column order: id, task, output, valid, model_sha, created_at, error, engine."""
        return (self.id, self.task, self.output, self.valid, self.model_sha, created_at, self.error, self.engine)


ModelT = TypeVar("ModelT", bound=BaseModel)


def read_jsonl(path: Path, model: type[ModelT]) -> Iterator[ModelT]:
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield model.model_validate_json(line)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path, rows: int | None = None) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size, rows=rows)


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside `path`, fsync, then rename over it. The temp file is created as
    `open` would create it (0666 less the process umask, applied by the kernel), not with mkstemp's
    private 0600, so artifacts stay readable by whoever may read the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_model_json(path: Path, model: BaseModel) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(model.model_dump_json(indent=2) + "\n")


CleanManifest.model_rebuild()

# eval.judge's files, kept in their own module (they are many); read them from here like every other contract
from scripts.contracts.judge import (  # noqa: E402,F401 (re-exported; they subclass Record, defined above)
    Acceptance, AcceptanceCheck, DomainStats, Escalation, EscalationRow, JudgeRow, JudgeRunStats, JudgeSummary,
    Latency, SlotStats, TaskSummary,
)
