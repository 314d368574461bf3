"""Data contracts every stage reads and writes (see DESIGN.md, "Data contracts").

A stage reads the previous stage's files through these models, never by
re-parsing JSON by hand:

    from scripts.contracts import CleanRecord, read_jsonl
    for record in read_jsonl(path, CleanRecord): ...
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

REQUIRED_RAW_COLUMNS = ("id", "task", "prompt_text", "response_strong", "metadata", "slot_specs")
OPTIONAL_RAW_COLUMNS = ("system_prompt",)

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


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CleanRecord(Record):
    id: str = Field(min_length=1)
    task: str
    kind: Literal["classification", "extraction"]
    system_prompt: str
    prompt: str = Field(min_length=1)
    target: str = Field(min_length=1, description="exact text the model must emit")
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


class Candidate(Record):
    """One small-model output: reports/model_outputs/<split>_candidates.jsonl."""

    id: str
    task: str
    kind: Literal["classification", "extraction"]
    prompt_sha256: str
    model: str = Field(description="base model id or export path, plus adapter run id if any")
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


class BundleManifest(Record):
    """models/export/<name>/manifest.json: what the bundle is and how to check it."""

    name: str
    created_at: str
    base_model: str
    adapter_path: str
    adapter_run_id: str | None
    adapter_sha256: str | None
    training_config: dict[str, Any] | None
    dataset_manifest_sha256: str | None
    eval_summary: dict[str, Any] | None
    parity: dict[str, Any]
    rope: dict[str, Any]
    dtype: str
    vllm_command: str
    package_versions: dict[str, str]
    files: dict[str, FileEntry] = Field(description="every other file in the bundle: sha256 and size")


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
    """Write to a temp file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_json(path: Path, model: BaseModel) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(model.model_dump_json(indent=2) + "\n")


CleanManifest.model_rebuild()
