"""Shared fixtures: raw DuckDB tables built from explicit rows, and the dataset config."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from scripts.config import REPO_ROOT, DatasetsConfig, load_config

RAW_COLUMNS = ("id", "task", "prompt_text", "response_strong", "metadata", "slot_specs")


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
