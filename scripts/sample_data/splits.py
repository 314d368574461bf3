"""The sample table through the dataset stage: a workspace with clean files and splits, for the benches,
the tiny-model tokenizer and tests.

    from scripts.sample_data.splits import sample_splits
    datasets = sample_splits(Path("/tmp/bench"), rows=400, schema_version="bench")
    datasets.data_paths().split_file("validation")          # /tmp/bench/processed/bench/splits/validation.jsonl
    texts, source = texts_for_tokenizer(datasets.data_paths().splits_dir)  # what a tiny tokenizer learns
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from scripts.config import REPO_ROOT, load_config, set_dotted
from scripts.dataset.config import DatasetsConfig

SAMPLE_DB = "sample.duckdb"


def sample_datasets_config(path: Path, processed_dir: Path, schema_version: str | None = None,
                           overrides: dict[str, Any] | None = None) -> Path:
    """configs/datasets.yaml written to ``path`` with its data under ``processed_dir``, ``schema_version``
    (None: the repository's) and dotted ``overrides`` set; the key order (the slot catalog's) is kept."""
    raw = yaml.safe_load((REPO_ROOT / "configs/datasets.yaml").read_text())
    raw["processed_dir"] = str(processed_dir)
    if schema_version is not None:
        raw["schema_version"] = schema_version
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def sample_splits(folder: Path, rows: int, seed: int = 0, *, schema_version: str | None = None,
                  config: Path | None = None, processed_dir: Path | None = None,
                  overrides: dict[str, Any] | None = None, keep_raw: bool = True) -> DatasetsConfig:
    """Sample -> clean -> split in ``folder``: the datasets config at ``config`` (default
    ``folder/datasets.yaml``, see ``sample_datasets_config``), the raw table at ``folder/sample.duckdb``
    (removed after the split unless ``keep_raw``), the data under ``processed_dir`` (default
    ``folder/processed``). Splits already there are reused, not rebuilt."""
    from scripts.dataset.clean import clean_dataset
    from scripts.dataset.split import split_dataset
    from scripts.sample_data import generate_sample

    config = sample_datasets_config(config or folder / "datasets.yaml", processed_dir or folder / "processed",
                                    schema_version, overrides)
    datasets = load_config(config, DatasetsConfig)
    if datasets.data_paths().split_manifest.is_file():
        return datasets
    raw_db = folder / SAMPLE_DB
    generate_sample(raw_db, rows=rows, seed=seed)
    clean_dataset(raw_db, datasets, datasets.schema_version)
    split_dataset(datasets)
    if not keep_raw:
        raw_db.unlink()
    return datasets


def texts_for_tokenizer(splits_dir: Path, fallback_rows: int = 400) -> tuple[list[str], str]:
    """Text the tiny tokenizer is trained on: the processed train split when present, else fresh
    sample data (so the tokenizer covers the prompts, system prompts and answers it will see)."""
    train = Path(splits_dir) / "train.jsonl"
    if train.is_file():
        texts: list[str] = []
        with open(train, "rb") as fh:
            for line in fh:
                record = json.loads(line)
                texts += [record["system_prompt"], record["prompt"], record["target"]]
        return texts, str(train)
    import tempfile

    import duckdb

    from scripts.sample_data import generate_sample

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sample.duckdb"
        generate_sample(db, rows=fallback_rows, seed=0, dirty_rate=0.0)
        with duckdb.connect(str(db), read_only=True) as con:
            rows = con.sql("SELECT prompt_text, response_strong FROM examples").fetchall()
    return [text for row in rows for text in row], f"{fallback_rows} fresh sample rows"
