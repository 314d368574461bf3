"""`fab ops.backfill`: one-line errors, and SIGKILL mid-run + rerun through the real `fab` entry point."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading

import duckdb
import pytest
from invoke import Context, Exit

from fab_tasks import ops
from scripts.config import REPO_ROOT
from tests.conftest import fab, fab_command
from tests.scripts.ops.test_backfill import (
    NAV,
    NAV_HTML,
    PRODUCT,
    PRODUCT_HTML,
    models,
    predictions,
    write_pages_db,
)

__all__ = ["models"]  # the module-scoped fixture: tiny base, adapter run, eval config


@pytest.mark.parametrize("case, message", [
    ("no_db", "error: DuckDB file"), ("no_table", "error: no table 'pages'"),
    ("no_model", "error: model path"),
    ("no_args", "error: pass --source DB (DB: the DuckDB file of pages"),
])
def test_bad_input_exits_1_with_one_line(models, tmp_path, case, message):
    _, base, _, config = models
    db = tmp_path / "pages.duckdb"
    if case != "no_db":
        write_pages_db(db, table="other" if case == "no_table" else "pages")
    kwargs = {"source": str(db), "model": str(tmp_path / "nope" if case == "no_model" else base),
              "config": str(config)}
    if case == "no_args":
        kwargs.pop("source")
    with pytest.raises(Exit) as exc:
        ops.backfill(Context(), **kwargs)
    assert exc.value.code == 1 and exc.value.message.startswith(message) and "\n" not in exc.value.message


def test_no_flags_names_both_missing_flags():
    with pytest.raises(Exit) as exc:
        ops.backfill(Context())
    assert exc.value.message == ("error: pass --source DB and --model PATH (DB: the DuckDB file of pages; PATH: a "
                                 "merged export or a run/adapter dir)")


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_sigkill_mid_run_then_rerun_leaves_exactly_one_prediction_per_page(models, tmp_path, engine):
    """On either engine (vLLM's workers die with the process group): every page once, none redone."""
    _, _, adapter, config = models
    # The first page is quick (a label), the rest are slow extractions: the kill lands mid-run.
    pages = [("a00", NAV, NAV_HTML, None)]
    pages += [(f"b{i:02d}", PRODUCT, PRODUCT_HTML * (i + 1), None) for i in range(9)]
    db = write_pages_db(tmp_path / "pages.duckdb", pages)
    args = ("ops.backfill", "--source", str(db), "--table", "pages", "--model", str(adapter.parent),
            "--config", str(config), "--batch-size", "1", "--engine", engine)
    proc = subprocess.Popen(fab_command(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
                            start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        while not any(line.startswith("committed ") for line in seen):  # printed after the first COMMIT
            seen.append(lines.get(timeout=60))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, seen

    before = predictions(db)
    assert 1 <= len(before) < len(pages), f"kill not mid-run: {len(before)} of {len(pages)} committed"
    again = fab(REPO_ROOT, *args)
    assert again.returncode == 0, again.stderr
    assert f"{len(pages) - len(before)} predicted, {len(before)} skipped (already done)" in again.stdout
    after = predictions(db)  # asserts no duplicate ids
    assert sorted(after) == [p[0] for p in pages]
    assert all(after[pid] == row for pid, row in before.items())  # same output, same created_at
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM predictions").fetchall() == [(10, 10)]
    assert {row[0].split()[0] for row in con.execute("SELECT engine FROM predictions").fetchall()} == {engine}
    con.close()
