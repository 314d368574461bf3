"""scripts.contracts' file edge: atomic writes, with the permissions a plain `open` gives, and no side effect."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from scripts.config import REPO_ROOT
from scripts.contracts import atomic_write


def test_an_atomic_write_has_the_permissions_of_a_plain_open(tmp_path):
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    with atomic_write(tmp_path / "atomic.txt", "w") as fh:
        fh.write("x")
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert mode & stat.S_IRGRP  # not mkstemp's 0600: others of the group read the artifacts
    assert (tmp_path / "atomic.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]  # no temp file left


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_importing_contracts_leaves_the_process_umask_alone():
    """No module flips the umask (a process-wide setting another thread may be creating files under)."""
    code = ("import os\ndef refuse(*a): raise AssertionError('os.umask called')\nos.umask = refuse\n"
            "import scripts.contracts, scripts.config, scripts.paths\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-1000:]
