"""Raw DuckDB exemplars -> validated, normalised per-task JSONL + rejects + manifest.

    fab dataset.clean --schema-version v2

Per-row normalisation (label text, code fences, JSON validity, domain) runs as
one DuckDB projection over a plain table scan, streamed in Arrow batches, so
memory does not grow with the table and row order is the table's own. Python
only does what SQL cannot: canonical JSON (`contracts.canonical_target`: compact,
keys in the task's catalog order, the order of its `slots:` in the registry),
pydantic validation and routing each row to its output or to `rejects.jsonl`.
Invariant: rows in = rows clean + rows rejected. The manifest records
`target_key_order: catalog`; training and evaluation refuse any other.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import duckdb
import orjson
from pydantic import ValidationError

from scripts.config import UserError
from scripts.contracts import (
    OPTIONAL_RAW_COLUMNS,
    REQUIRED_RAW_COLUMNS,
    TARGET_KEY_ORDER,
    CleanManifest,
    CleanRecord,
    Reject,
    atomic_write,
    canonical_target,
    file_entry,
    sha256_file,
    write_model_json,
)
from scripts.dataset.config import DatasetsConfig, TaskSpec

TABLE = "examples"
HINT = "copy your exemplars to data/raw/dataset.duckdb (or set DATASET_DB_PATH), or run `fab dataset.sample`"

# One projection over a table scan: order-preserving, streamable.
NORMALISE_SQL = """
SELECT
    rowid AS rn,
    CAST(id AS VARCHAR) AS id,
    CAST(task AS VARCHAR) AS task,
    prompt_text,
    response_strong,
    coalesce(trim(prompt_text, E' \\t\\r\\n'), '') = '' AS prompt_empty,
    coalesce(trim(response_strong, E' \\t\\r\\n'), '') = '' AS response_empty,
    upper(regexp_replace(response_strong, '^\\s+|[\\s.!]+$', '', 'g')) AS label,
    regexp_replace(response_strong, '^\\s*```[A-Za-z]*\\s*|\\s*```\\s*$', '', 'g') AS json_body,
    {metadata} AS metadata,
    {slot_specs} AS slot_specs,
    {system_prompt} AS row_system_prompt
FROM {table}
"""

# AND does not short-circuit in DuckDB: json_type on invalid JSON would raise.
JSON_OBJECT_MACRO = """
CREATE TEMP MACRO json_object_ok(x) AS
    CASE WHEN json_valid(x) THEN json_type(x) = 'OBJECT' ELSE false END
"""

DERIVED_SQL = """
SELECT *,
    json_object_ok(json_body) AS json_ok,
    metadata IS NULL OR json_object_ok(metadata) AS metadata_ok,
    slot_specs IS NULL OR json_object_ok(slot_specs) AS slot_specs_ok,
    lower(regexp_replace(coalesce(
        CASE WHEN json_valid(metadata) THEN nullif(json_extract_string(metadata, '$.domain'), '') END,
        CASE WHEN json_valid(metadata) THEN nullif(regexp_extract(
            json_extract_string(metadata, '$.url'), '^[A-Za-z]+://([^/:?#\\s]+)', 1), '') END,
        nullif(regexp_extract(prompt_text, 'URL:\\s*https?://([^/:?#\\s"''<>]+)', 1), ''),
        nullif(regexp_extract(prompt_text, 'https?://([^/:?#\\s"''<>]+)', 1), ''),
        'unknown'), '^www\\.', '')) AS domain,
    CASE WHEN json_valid(metadata) THEN json_extract_string(metadata, '$.system_prompt') END
        AS metadata_system_prompt
FROM normalised
"""


def clean_dataset(
    db_path: Path,
    cfg: DatasetsConfig,
    schema_version: str,
    *,
    on_rows: Callable[[int], None] | None = None,
) -> CleanManifest:
    """Clean `db_path`'s `examples` table into `cfg.data_paths(schema_version).root`."""
    data = cfg.data_paths(schema_version)
    con = _open_source(db_path)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        source_sha = pool.submit(sha256_file, db_path)
        total = con.sql(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
        duplicate_rowids = _duplicate_rowids(con)
        con.execute(JSON_OBJECT_MACRO)
        con.execute(f"CREATE TEMP VIEW normalised AS {_normalise_query(con)}")
        reader = con.sql(DERIVED_SQL).to_arrow_reader(cfg.clean.batch_size)

        clean_counts: Counter[str] = Counter()
        reject_counts: Counter[str] = Counter()
        with contextlib.ExitStack() as stack:
            outputs = {
                task: stack.enter_context(atomic_write(data.clean_file(task))) for task in cfg.tasks
            }
            rejects = stack.enter_context(atomic_write(data.rejects))
            for batch in reader:
                for row in batch.to_pylist():
                    outcome = _clean_row(row, cfg, schema_version, duplicate_rowids)
                    if isinstance(outcome, Reject):
                        rejects.write(outcome.model_dump_json().encode() + b"\n")
                        reject_counts[outcome.reason] += 1
                    else:
                        outputs[outcome.task].write(outcome.model_dump_json().encode() + b"\n")
                        clean_counts[outcome.task] += 1
                if on_rows:
                    on_rows(batch.num_rows)
        source_sha256 = source_sha.result()
    con.close()

    rows_clean, rows_rejected = sum(clean_counts.values()), sum(reject_counts.values())
    if rows_clean + rows_rejected != total:  # the contract; a bug if it ever fires
        raise RuntimeError(f"row accounting broken: {total} in, {rows_clean}+{rows_rejected} out")
    files = {data.clean_file(task).name: file_entry(data.clean_file(task), clean_counts[task]) for task in cfg.tasks}
    files[data.rejects.name] = file_entry(data.rejects, rows_rejected)
    manifest = CleanManifest(
        schema_version=schema_version,
        target_key_order=TARGET_KEY_ORDER,
        source=str(db_path),
        source_sha256=source_sha256,
        rows_in=total,
        rows_clean=rows_clean,
        rows_rejected=rows_rejected,
        clean_by_task=dict(sorted(clean_counts.items())),
        rejected_by_reason=dict(sorted(reject_counts.items())),
        files=files,
    )
    write_model_json(data.clean_manifest, manifest)
    return manifest


def _open_source(db_path: Path) -> duckdb.DuckDBPyConnection:
    if not db_path.is_file():
        raise UserError(f"database not found: {db_path}; {HINT}")
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        raise UserError(f"cannot open {db_path} as DuckDB: {str(exc).splitlines()[0]}") from exc
    tables = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    if TABLE not in tables:
        con.close()
        found = ", ".join(sorted(tables)) or "none"
        raise UserError(f"table `{TABLE}` not found in {db_path} (tables: {found}); {HINT}")
    columns = _column_types(con)
    missing = [c for c in REQUIRED_RAW_COLUMNS if c not in columns]
    if missing:
        con.close()
        raise UserError(
            f"{db_path}: table `{TABLE}` lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_RAW_COLUMNS)} (+ optional system_prompt)"
        )
    return con


def _column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {r[0]: r[1] for r in con.sql(f"DESCRIBE {TABLE}").fetchall()}


def _normalise_query(con: duckdb.DuckDBPyConnection) -> str:
    columns = _column_types(con)

    def as_json_text(name: str) -> str:
        if columns[name] in ("VARCHAR", "JSON"):
            return f"CAST({name} AS VARCHAR)"
        return f"CAST(to_json({name}) AS VARCHAR)"

    system_prompt = "CAST(system_prompt AS VARCHAR)" if OPTIONAL_RAW_COLUMNS[0] in columns else "NULL"
    return NORMALISE_SQL.format(
        table=TABLE,
        metadata=as_json_text("metadata"),
        slot_specs=as_json_text("slot_specs"),
        system_prompt=system_prompt,
    )


def _duplicate_rowids(con: duckdb.DuckDBPyConnection) -> set[int]:
    """Rows whose id already appeared earlier in the table (the first one is kept)."""
    rows = con.sql(
        f"""SELECT rowid FROM {TABLE} QUALIFY row_number() OVER (PARTITION BY id ORDER BY rowid) > 1"""
    ).fetchall()
    return {r[0] for r in rows}


def _clean_row(
    row: dict[str, Any], cfg: DatasetsConfig, schema_version: str, duplicate_rowids: set[int]
) -> CleanRecord | Reject:
    def reject(reason: str, field: str, value: Any) -> Reject:
        text = None if value is None else str(value)[:200]
        return Reject(id=row["id"], task=row["task"], reason=reason, field=field, value=text)

    if not row["id"]:
        return reject("missing_id", "id", row["id"])
    if row["rn"] in duplicate_rowids:
        return reject("duplicate_id", "id", row["id"])
    spec: TaskSpec | None = cfg.tasks.get(row["task"])
    if spec is None:
        return reject("unknown_task", "task", row["task"])
    if row["prompt_empty"]:
        return reject("empty_prompt", "prompt_text", row["prompt_text"])
    if row["response_empty"]:
        return reject("empty_response", "response_strong", row["response_strong"])
    if not row["metadata_ok"]:
        return reject("invalid_metadata", "metadata", row["metadata"])
    if not row["slot_specs_ok"]:
        return reject("invalid_slot_specs", "slot_specs", row["slot_specs"])
    if spec.kind == "classification":
        if row["label"] not in spec.labels:
            return reject("label_not_in_set", "response_strong", row["response_strong"])
        target = row["label"]
    else:
        if not row["json_ok"]:
            reason = "invalid_json" if not _is_json(row["json_body"]) else "target_not_object"
            return reject(reason, "response_strong", row["response_strong"])
        target = canonical_target(orjson.loads(row["json_body"]), spec.slot_order)
    try:
        return CleanRecord(
            id=row["id"],
            task=row["task"],
            kind=spec.kind,
            system_prompt=row["row_system_prompt"] or row["metadata_system_prompt"] or spec.system_prompt,
            prompt=row["prompt_text"],
            target=target,
            domain=row["domain"],
            slot_specs=orjson.loads(row["slot_specs"]) if row["slot_specs"] is not None else None,
            metadata=orjson.loads(row["metadata"]) if row["metadata"] is not None else None,
            schema_version=schema_version,
            prompt_chars=len(row["prompt_text"]),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        return reject("invalid_json", ".".join(map(str, err["loc"])), err["msg"])


def _is_json(text: str | None) -> bool:
    try:
        orjson.loads(text or "")
        return True
    except orjson.JSONDecodeError:
        return False
