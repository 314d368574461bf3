"""What a model folder is: an import's record (``import.json``) and the label stages print for a base.

    from scripts.model.identity import base_model_label, check_current_import
    base_model_label("models/gemma-3-270m")   # "google/gemma-3-270m (GGUF Q4_K_M, dequantised)"

``fab train.import-gguf`` (``scripts.model.gguf_import``) writes the record; the
model layer, training, evaluation and export read it through here, so loading
a model never imports the importer (nor anything it pulls in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scripts.config import UserError

IMPORT_FILE = "import.json"
# 1: agreed with a plain SentencePiece processor, which split Gemma's whitespace pieces;
# 2: control and user-defined pieces matched literally on the raw text, as Gemma does.
TOKENIZER_VERSION = 2


def existing_import(output: Path) -> dict[str, Any] | None:
    path = output / IMPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def stale_tokenizer(record: dict[str, Any]) -> bool:
    """An import whose tokenizer was built by older rules than this code's (no version: version 1)."""
    return int(record.get("tokenizer_version", 1)) < TOKENIZER_VERSION


def check_current_import(folder: Path) -> None:
    """Refuse a model folder imported with an older tokenizer: its ids are not Gemma's, and a model
    trained or evaluated on them sees token sequences it never saw in pretraining."""
    record = existing_import(folder)
    if record and stale_tokenizer(record):
        raise UserError(
            f"{folder} was imported with tokenizer version {record.get('tokenizer_version', 1)}, which splits "
            f"Gemma's whitespace pieces; re-import it with `fab train.import-gguf --output {folder}` (version "
            f"{TOKENIZER_VERSION}), then retrain runs made on it")


def base_model_label(name_or_path: str) -> str:
    """What a base model is, for snapshots, reports and model cards: an import's own label
    (``google/gemma-3-270m (GGUF Q4_K_M, dequantised)``), else the name or path as given."""
    record = existing_import(Path(name_or_path)) if Path(name_or_path).is_dir() else None
    return record["label"] if record and record.get("label") else str(name_or_path)
