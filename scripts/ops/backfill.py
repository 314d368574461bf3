"""Backfill: batch inference of a merged export (or a training run) over a DuckDB table of pages.

    fab ops.backfill --source data/pages.duckdb --table pages --model models/export/gemma-crawler
    fab ops.backfill --source data/pages.duckdb --table pages --model models/runs/RUN \
        --task navpage_classifier --limit 1000 --batch-size 16

    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.ops.backfill import backfill
    cfg = load_config("configs/eval.yaml", EvalConfig)
    s = backfill(Path("data/pages.duckdb"), "pages", "models/export/x", cfg, limit=None, task=None)
    print(s.predicted, s.skipped, s.bad, s.valid_rate)

Reads ``<table>`` (``id``, ``task``, ``prompt_text``; optional ``system_prompt``)
and writes ``predictions`` (``id`` PRIMARY KEY, ``task``, ``output``, ``valid``,
``model_sha``, ``created_at`` (TIMESTAMP, UTC, one per batch), ``error``) into the
same DuckDB file.

* Generation is eval.generate's (``generate_outputs``): the chat template,
  the task registry's system prompt when a row has none, xgrammar-constrained
  decoding and the decoding/schema settings of the eval config. So a page the
  model rambles on costs at most ``max_new_tokens`` and still gets a valid row:
  the answer is closed within the budget, and ``error`` names the slots that
  were cut (``valid`` stays true; those values are not the model's full answer).
* Crash-safe and idempotent: pages are read in ``id`` order with an anti-join
  against ``predictions``, and each batch is one transaction (INSERT, COMMIT).
  A kill loses at most the batch in flight; a rerun predicts exactly the pages
  that have no prediction yet. The primary key refuses a second row per id.
* ``--limit N`` selects the first N pages (by id, after ``--task``); a rerun
  with a larger N goes on where the last stopped.
* Bad rows are recorded, not crashed on: an unknown task or an empty prompt is
  a prediction with ``valid = false`` and ``error`` saying why. Rows with a NULL
  id cannot be keyed: they are counted and reported. Rows sharing an id are
  predicted once (the first by task, prompt) and the extra rows are counted.
* ``model_sha`` is the sha256 of the merged ``model.safetensors`` (shards: of
  their concatenation in name order; a full fine-tune's ``model/`` likewise),
  or of ``adapter_model.safetensors`` + a newline + the base model id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple

from scripts.config import UserError, load_config
from scripts.contracts import PredictionRow
from scripts.dataset.config import DatasetsConfig
from scripts.evaluation.generation.config import EvalConfig
from scripts.model.loading import ResolvedModel, is_full_model_dir, resolve_weights
from scripts.serving.engines import resolve_engine

PREDICTIONS = "predictions"
PREDICTION_COLUMNS = ("id", "task", "output", "valid", "model_sha", "created_at", "error", "engine")
ENGINE_COLUMN = "engine VARCHAR"  # added 2026-12-06: tables written before get it (NULL there: hf then)
ProgressFn = Callable[[int, int], None]  # (pages written this run, pages pending at start)


class Page(NamedTuple):
    """One row to predict; ``system_prompt`` and ``prompt`` are what ``scripts.chat.prompt_messages`` reads."""

    id: Any
    task: str | None
    prompt: str | None
    system_prompt: str | None


@dataclass
class BackfillSummary:
    source: Path
    table: str
    model: str
    model_sha: str
    selected: int = 0  # keyed pages in scope (after --task / --limit)
    skipped: int = 0  # of those, already predicted before this run
    predicted: int = 0  # model outputs written this run
    valid: int = 0
    bad: int = 0  # bad rows recorded as invalid predictions this run
    null_ids: int = 0  # rows without an id: cannot be keyed, not recorded
    duplicate_ids: int = 0  # extra rows sharing an id: not recorded
    batches: int = 0
    warnings: list[str] = field(default_factory=list)
    engine: str = "hf"

    @property
    def written(self) -> int:
        return self.predicted + self.bad

    @property
    def valid_rate(self) -> float | None:
        return self.valid / self.predicted if self.predicted else None

    def headline(self) -> str:
        valid = f"{self.valid_rate:.1%}" if self.valid_rate is not None else "n/a"
        unkeyed = (f"; not recorded: {self.null_ids} rows without id, {self.duplicate_ids} duplicate-id rows"
                   if self.null_ids or self.duplicate_ids else "")
        return (f"{self.predicted} predicted, {self.skipped} skipped (already done), {self.bad} bad "
                f"(recorded invalid){unkeyed}; valid {valid} of predicted; model {self.model} "
                f"sha256 {self.model_sha[:12]}; engine {self.engine}")


# --- model -----------------------------------------------------------------


def resolve_model_path(path: str | Path, cfg: EvalConfig) -> ResolvedModel:
    """A merged export (config.json), or a training run: its dir, its adapter/ or (full) its model/."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model path {path} does not exist; pass a merged export dir or a run/adapter dir")
    merged = (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()
    if merged and not is_full_model_dir(path):
        return resolve_weights("", cfg.model.runs_dir, merged=path)
    return resolve_weights(str(path), cfg.model.runs_dir, base=cfg.model.base)


def model_sha(resolved: ResolvedModel) -> str:
    digest = hashlib.sha256()
    if resolved.adapter_dir is None:
        files = sorted(Path(resolved.base).glob("*.safetensors"))
        if not files:
            raise UserError(f"merged model {resolved.base} has no *.safetensors; re-run `fab package.export`")
    else:
        files = [resolved.adapter_dir / "adapter_model.safetensors"]
        if not files[0].is_file():
            raise UserError(f"{resolved.adapter_dir} has no adapter_model.safetensors (pickles are refused)")
    for path in files:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    if resolved.adapter_dir is not None:
        digest.update(b"\n" + resolved.base.encode())
    return digest.hexdigest()


# --- database --------------------------------------------------------------


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def check_source(source: Path) -> None:
    if not source.is_file():
        raise UserError(f"DuckDB file {source} not found; pass --source PATH of an existing database")


def open_db(source: Path):
    import duckdb

    check_source(source)
    try:
        return duckdb.connect(str(source))
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"cannot open {source} read-write ({first}); is another process using it?") from None


def page_columns(con, table: str) -> dict[str, str]:
    """Column name -> type of ``table``; a missing table or column is a UserError."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
    if table not in tables:
        listed = ", ".join(tables) or "none"
        raise UserError(f"no table {table!r} in the database (tables: {listed}); pass --table")
    if table == PREDICTIONS:
        raise UserError(f"--table {PREDICTIONS} is the output table; pass the table of pages")
    columns = {r[0]: r[1] for r in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()}
    missing = [c for c in ("id", "task", "prompt_text") if c not in columns]
    if missing:
        raise UserError(f"table {table!r} lacks column(s) {', '.join(missing)} (needs id, task, prompt_text)")
    return columns


def ensure_predictions(con, id_type: str) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} (id {id_type} PRIMARY KEY, task VARCHAR, output VARCHAR, "
        f"valid BOOLEAN NOT NULL, model_sha VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, error VARCHAR, "
        f"{ENGINE_COLUMN})"
    ).fetchall()

    def columns() -> list[str]:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
            "ORDER BY ordinal_position", [PREDICTIONS]).fetchall()]

    have = columns()
    if tuple(have) == PREDICTION_COLUMNS[:-1]:  # a table of an earlier backfill: record engines from now on
        con.execute(f"ALTER TABLE {PREDICTIONS} ADD COLUMN {ENGINE_COLUMN}").fetchall()
        have = columns()
    if tuple(have) != PREDICTION_COLUMNS:
        raise UserError(f"existing table {PREDICTIONS!r} has columns {have}, expected "
                        f"{list(PREDICTION_COLUMNS)}; rename it or use another database")
    has_key = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [PREDICTIONS]).fetchall()[0][0]
    if not has_key:
        raise UserError(f"existing table {PREDICTIONS!r} has no PRIMARY KEY on id; rebuild it with one")


def _selection_sql(table: str, columns: dict, task: str | None, limit: int | None) -> tuple[str, list]:
    """The keyed pages in scope: one row per id (first by task, prompt), first ``limit`` by id."""
    system = "system_prompt" if "system_prompt" in columns else "NULL"
    where = "id IS NOT NULL" + (" AND task = ?" if task else "")
    sql = (
        f"SELECT id, task, prompt_text, {system} AS system_prompt FROM {_quote(table)} WHERE {where} "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY task NULLS LAST, prompt_text NULLS LAST) = 1 "
        "ORDER BY id" + (" LIMIT ?" if limit else "")
    )
    return sql, ([task] if task else []) + ([limit] if limit else [])


# --- the run ---------------------------------------------------------------


def backfill(
    source: Path, table: str, model_path: str | Path, cfg: EvalConfig, *, limit: int | None = None,
    task: str | None = None, batch_size: int | None = None, progress: ProgressFn | None = None,
) -> BackfillSummary:
    """Predict every page of ``table`` in scope that has no row in ``predictions`` yet."""
    if limit is not None and limit <= 0:
        raise UserError("--limit must be a positive number")
    if batch_size is not None and batch_size <= 0:
        raise UserError("--batch-size must be a positive number")
    source = Path(source)
    check_source(source)  # before the model: a wrong --source is reported whatever --model is
    datasets = load_config(cfg.data.datasets_config, DatasetsConfig)
    if task and task not in datasets.tasks:
        known = ", ".join(datasets.tasks)
        raise UserError(f"--task {task!r} is not in {cfg.data.datasets_config} (tasks: {known})")
    resolved = resolve_model_path(model_path, cfg)
    con = open_db(source)
    try:
        columns = page_columns(con, table)
        ensure_predictions(con, columns["id"])
        summary = BackfillSummary(source, table, resolved.label, model_sha(resolved),
                                  engine=resolve_engine(cfg.engine.name))
        return _run(con, summary, columns, cfg, datasets, resolved, limit, task, batch_size, progress)
    finally:
        con.close()


def _run(con, summary, columns, cfg, datasets, resolved, limit, task, batch_size, progress):
    selection, params = _selection_sql(summary.table, columns, task, limit)
    task_filter, task_params = (" AND task = ?", [task]) if task else ("", [])
    summary.null_ids, distinct, rows = con.execute(
        f"SELECT count(*) FILTER (WHERE id IS NULL), count(DISTINCT id), count(id) "
        f"FROM {_quote(summary.table)} WHERE TRUE{task_filter}", task_params).fetchall()[0]
    summary.duplicate_ids = rows - distinct
    summary.selected, summary.skipped = con.execute(
        f"SELECT count(*), count(q.id) FROM ({selection}) s LEFT JOIN {PREDICTIONS} q ON s.id = q.id", params
    ).fetchall()[0]
    other = con.execute(f"SELECT count(*) FROM ({selection}) s JOIN {PREDICTIONS} q ON s.id = q.id "
                        "WHERE q.model_sha <> ?", params + [summary.model_sha]).fetchall()[0][0]
    if other:
        summary.warnings.append(f"{other} page(s) already have a prediction of another model; they are kept "
                                f"(delete those rows from {PREDICTIONS} to redo them)")
    pending = summary.selected - summary.skipped
    if progress:
        progress(0, pending)
    if not pending:
        return summary

    cfg = cfg.model_copy(deep=True)
    if batch_size:
        cfg.decoding.batch_size = batch_size
    size = cfg.decoding.batch_size
    from scripts.serving.runners import open_runner

    engine = summary.engine
    with open_runner(engine, resolved, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
                     settings=cfg.engine, max_model_len=cfg.engine.max_model_len or _model_context(resolved)) as (
            runner, tokenizer):
        predictor = _Predictor(cfg, datasets, runner, tokenizer, summary)
        _predict_pending(con, summary, predictor, selection, params, size, pending, progress)
    return summary


def _model_context(resolved: ResolvedModel) -> int:
    """The model's own context (131072 for a bundle of a rope-scaled run): what a page may fill."""
    from scripts.model.loading import load_model_config

    return load_model_config(resolved.base).get_text_config().max_position_embeddings


def _predict_pending(con, summary, predictor, selection, params, size, pending, progress) -> None:
    reader = con.cursor()  # streams the pending pages while `con` commits each batch
    try:
        result = reader.execute(f"SELECT s.* FROM ({selection}) s ANTI JOIN {PREDICTIONS} q ON s.id = q.id "
                                "ORDER BY s.id", params)
        while batch := result.fetchmany(size):
            records, bad = predictor.predict([Page(*row) for row in batch])
            created_at = datetime.now(timezone.utc).replace(tzinfo=None)  # UTC; naive: no pytz for readers
            con.begin()  # one transaction per batch: a kill before COMMIT leaves none of its rows
            con.executemany(f"INSERT INTO {PREDICTIONS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [r.insert_values(created_at) for r in records])
            con.commit()
            summary.batches += 1
            for row, is_bad in zip(records, bad):
                summary.bad += is_bad
                summary.predicted += not is_bad
                summary.valid += row.valid
            if progress:
                progress(summary.written, pending)
    finally:
        reader.close()


class _Predictor:
    """Holds the engine's runner, builds each task's decoder on first use, answers a batch of pages."""

    def __init__(self, cfg: EvalConfig, datasets: DatasetsConfig, runner, tokenizer, summary):
        from scripts.evaluation.generation.decoding import make_compiler

        self.cfg, self.datasets, self.summary = cfg, datasets, summary
        self.runner, self.tokenizer = runner, tokenizer
        from scripts.serving.engines import engine_version

        self.engine = f"{runner.name} {engine_version(runner.name)}"  # e.g. "vllm 0.32.0"
        self.compiler = make_compiler(self.tokenizer, runner.vocab) if cfg.decoding.constrained else None
        self.decoders: dict[str, tuple[Any, int]] = {}

    def decoder(self, task: str):
        from scripts.evaluation.generation.generate import build_task_decoder

        if task not in self.decoders:
            spec = self.datasets.tasks[task]
            self.decoders[task] = build_task_decoder(
                self.cfg, self.runner.vocab, self.tokenizer, spec, task, self.compiler
            )
            self.summary.warnings += self.decoders[task][0].warnings
        return self.decoders[task]

    def over_context_reason(self, page: Page, system: str) -> str | None:
        from scripts.chat import encode_chat, prompt_messages

        _, max_new = self.decoder(page.task)
        messages = prompt_messages(SimpleNamespace(system_prompt=system, prompt=str(page.prompt)))
        needed = len(encode_chat(self.tokenizer, messages)) + max_new
        context = self.runner.context_length
        if needed > context:
            return f"prompt + max_new_tokens = {needed} tokens exceeds the model's context of {context}"
        return None

    def predict(self, pages: list[Page]) -> tuple[list[PredictionRow], list[bool]]:
        """Prediction rows in the pages' order, and which were bad rows."""
        from scripts.evaluation.generation.generate import generate_outputs
        sha = self.summary.model_sha
        rows: list[PredictionRow | None] = [None] * len(pages)
        bad = [False] * len(pages)
        by_task: dict[str, list[Page]] = {}
        for i, page in enumerate(pages):
            error = bad_row_reason(page, self.datasets, self.cfg.data.datasets_config)
            if error:
                rows[i], bad[i] = PredictionRow(id=page.id, task=page.task, output=None, valid=False,
                                                model_sha=sha, error=error, engine=self.engine), True
                continue
            spec = self.datasets.tasks[page.task]
            own = page.system_prompt if isinstance(page.system_prompt, str) else None
            system = own if own and own.strip() else spec.system_prompt
            error = self.over_context_reason(page, system)
            if error:  # would raise inside the model on every rerun: record it, never stop on it
                rows[i], bad[i] = PredictionRow(id=page.id, task=page.task, output=None, valid=False,
                                                model_sha=sha, error=error, engine=self.engine), True
                continue
            # Candidate ids are strings: carry the row's position, map back below.
            by_task.setdefault(page.task, []).append(page._replace(id=str(i), system_prompt=system))
        for task, items in by_task.items():
            decoder, max_new = self.decoder(task)
            spec = self.datasets.tasks[task]
            invalid = f"output is not a valid {spec.kind} answer for {task}"
            for batch in generate_outputs(self.cfg, self.runner, self.tokenizer, decoder, spec, task, items,
                                          max_new, self.summary.model):
                for candidate, _ in batch:
                    i = int(candidate.id)
                    error = None if candidate.valid else invalid
                    if candidate.valid and candidate.truncated_slots:  # valid, but closed at the budget
                        cut = ", ".join(candidate.truncated_slots)
                        error = f"closed early at max_new_tokens/the string bound: {cut}"
                    rows[i] = PredictionRow(id=pages[i].id, task=task, output=candidate.raw,
                                            valid=candidate.valid, model_sha=sha, error=error, engine=self.engine)
        return rows, bad


def bad_row_reason(page: Page, datasets: DatasetsConfig, registry: Path) -> str | None:
    if page.task is None or page.task not in datasets.tasks:
        return f"unknown task {page.task!r} (not in {registry})"
    if page.prompt is None or not str(page.prompt).strip():
        return "empty prompt_text"
    return None
