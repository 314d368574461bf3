"""train.import-gguf on bad sources, without the real GGUF (the real import is tested in tests/real/)."""

from __future__ import annotations

import sys

import pytest

from scripts.config import REPO_ROOT, UserError
from scripts.model.gguf_import import import_gguf
from scripts.model.gguf_source import read_gguf
from scripts.model.gguf_weights import quiet_dequantising_bar
from tests.conftest import fab


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a plain text file, long enough to be read as a GGUF header by a careless reader\n" * 4)
    return path


@pytest.mark.parametrize("gguf_installed", [True, False])
def test_a_text_file_is_not_a_gguf_file_with_or_without_the_gguf_package(notes, tmp_path, monkeypatch,
                                                                         gguf_installed):
    if not gguf_installed:
        monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError
    with pytest.raises(UserError, match=rf"^{notes} is not a GGUF file"):
        import_gguf(notes, tmp_path / "out")
    with pytest.raises(UserError, match=rf"^{notes} is not a GGUF file"):
        read_gguf(notes)
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_fab_import_gguf_of_a_text_file_is_one_line(notes, tmp_path):
    done = fab(REPO_ROOT, "train.import-gguf", "--gguf", str(notes), "--output", str(tmp_path / "out"))
    assert done.returncode == 1 and done.stdout.strip() == "" and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: {notes} is not a GGUF file (it does not start with the GGUF "
                                   "magic bytes)")


def test_the_dequantising_bar_of_transformers_is_silenced(capfd):
    """tqdm reads TQDM_DISABLE only at import, so the bar of transformers' GGUF loader is swapped out."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    with quiet_dequantising_bar():
        assert sum(1 for _ in gguf_utils.tqdm(range(50), desc="Converting and de-quantizing GGUF tensors...")) == 50
    assert "de-quantizing" not in capfd.readouterr().err
    original = gguf_utils.tqdm
    list(original(range(3), desc="restored bar", disable=False))
    assert "restored bar" in capfd.readouterr().err  # only the import is quiet
