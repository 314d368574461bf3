"""Shared fixtures: raw DuckDB tables built from explicit rows, and the dataset config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scripts.config import REPO_ROOT, load_config
from scripts.contracts import REQUIRED_RAW_COLUMNS as RAW_COLUMNS
from scripts.dataset.config import DatasetsConfig


def write_raw_db(path: Path, rows: list[dict], extra_columns: tuple[str, ...] = ()) -> Path:
    """Write an `examples` table; dict values that are dicts are stored as JSON text."""
    columns = RAW_COLUMNS + extra_columns
    con = duckdb.connect(str(path))
    con.execute(f"CREATE OR REPLACE TABLE examples ({', '.join(f'{c} VARCHAR' for c in columns)})")
    values = [
        tuple(json.dumps(r.get(c)) if isinstance(r.get(c), dict) else r.get(c) for c in columns)
        for r in rows
    ]
    if values:
        con.executemany(f"INSERT INTO examples VALUES ({', '.join('?' for _ in columns)})", values)
    con.close()
    return path


@pytest.fixture
def datasets_cfg(tmp_path) -> DatasetsConfig:
    return load_config(
        REPO_ROOT / "configs/datasets.yaml", DatasetsConfig, {"processed_dir": str(tmp_path / "processed")}
    )


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory) -> Path:
    """One tiny random Gemma 3 (hidden 64, 2 layers) + locally trained tokenizer for the whole session,
    built from a config, never downloaded. Shared: tests read it; to change it, copy it first."""
    from scripts.model.tiny import build_tiny_gemma
    from tests.scripts.evaluation import TOKENIZER_TEXTS

    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma3") / "model", TOKENIZER_TEXTS)


FAB = [str(Path(sys.executable).parent / "fab"), "--search-root", str(REPO_ROOT)]


def fab_command(*args: str) -> list[str]:
    """The real `fab` entry point of this environment on the repo's fabfile, from any working dir."""
    return [*FAB, *args]


def fab(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
        check: bool = False, process: bool = False) -> subprocess.CompletedProcess:
    """Run `fab ARGS` in ``cwd`` (COLUMNS=200, so rich does not wrap the lines tests read); ``check`` asserts
    exit 0 and shows the output's tail when it is not.

    Fabric's own program runs in this process (its parser, the fabfile, the tasks, exit codes and
    stdout/stderr as a user sees them) unless it needs a process of its own: a fresh interpreter costs
    ~7 s of imports per call on 2 cores, but libraries read variables such as HF_HUB_OFFLINE once at
    import (``env``), and `--nproc` ranks write to the process's own stdout."""
    if process or env or "--nproc" in args:
        run = subprocess.run(fab_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "COLUMNS": "200", **(env or {})})
    else:
        run = _fab_in_process(cwd, args)
    if check:
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run


def _fab_in_process(cwd: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import traceback

    from fabric.main import make_program

    # fresh task objects per call, as a new process has: invoke consumes a task's option help when it
    # builds the parser (a second parse of the same objects would print options without their help)
    for name in [m for m in sys.modules if m == "fabfile" or m.split(".")[0] == "fab_tasks"]:
        del sys.modules[name]
    out, err, code = io.StringIO(), io.StringIO(), 0
    environ, here = dict(os.environ), Path.cwd()
    os.environ["COLUMNS"] = "200"
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                make_program().run(["fab", "--search-root", str(REPO_ROOT), *args], exit=True)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            except Exception:  # what the interpreter would print on its way out
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(["fab", *args], code, out.getvalue(), err.getvalue())
