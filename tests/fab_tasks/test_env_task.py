"""`fab env.check`: the task's exit codes, and the real `fab` entry point end to end."""

from __future__ import annotations

import pytest
from invoke import Context, Exit

from fab_tasks import env
from scripts.config import REPO_ROOT
from tests.conftest import fab

SECRET = "sk-test-Zq9-never-print-me-4242"


def test_task_exits_1_naming_the_failed_check(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DB_PATH", str(tmp_path / "missing.duckdb"))
    with pytest.raises(Exit) as exc:
        env.check(Context(), for_="dataset")
    assert exc.value.code == 1
    assert "dataset DB" in exc.value.message and "\n" not in exc.value.message


def test_task_report_only_never_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DB_PATH", str(tmp_path / "missing.duckdb"))
    env.check(Context())  # no --for: prints the table, returns normally


def test_task_rejects_unknown_stage_in_one_line():
    with pytest.raises(Exit) as exc:
        env.check(Context(), for_="nope")
    assert exc.value.code == 1 and exc.value.message.startswith("error: unknown stage")


@pytest.mark.integration
def test_fab_env_check_for_dataset_with_missing_db_exits_1_in_one_line(tmp_path):
    missing = tmp_path / "missing.duckdb"
    result = fab(REPO_ROOT, "env.check", "--for", "dataset", env={"DATASET_DB_PATH": str(missing),
                                                               "LITELLM_API_KEY": SECRET})
    assert result.returncode == 1, result.stderr
    err_lines = result.stderr.strip().splitlines()
    assert len(err_lines) == 1, result.stderr
    assert err_lines[0].startswith("error: not ready for `dataset`: dataset DB")
    assert str(missing) in err_lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert "dataset DB" in result.stdout  # the table went to stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.integration
def test_fab_env_check_for_judge_ignores_missing_db(tmp_path):
    result = fab(REPO_ROOT, "env.check", "--for", "judge", env={"DATASET_DB_PATH": str(tmp_path / "missing.duckdb")})
    assert result.returncode == 0, result.stderr
    assert "ready for `judge`" in result.stdout


@pytest.mark.integration
def test_fab_help_shows_the_docstring_and_the_for_option():
    result = fab(REPO_ROOT, "--help", "env.check")
    assert result.returncode == 0, result.stderr
    assert "Doctor: is this machine ready for a stage?" in result.stdout
    assert "--for=STRING" in result.stdout and "dataset|train|eval|judge|package|serve|all" in result.stdout
