"""`fab eval.generate`: one-line errors, and the real `fab` entry point on a temp setup."""

from __future__ import annotations

import pytest
import yaml
from invoke import Context, Exit

from fab_tasks import evaluate
from scripts.contracts import Candidate, read_jsonl
from scripts.config import REPO_ROOT
from tests.conftest import fab
from tests.scripts.evaluation import (
    eval_config_dict,
    make_adapter,
    records,
    write_datasets_config,
    write_split,
)


def _setup(tmp_path, base=None):
    """Split, datasets config and eval config under ``tmp_path``; an adapter on ``base`` when given."""
    run = tmp_path / "runs" / "20260101T000000Z"
    if base is not None:
        make_adapter(base, run / "adapter")
    write_split(tmp_path / "processed", "validation", records(2, 2))
    datasets = write_datasets_config(tmp_path / "datasets.yaml", tmp_path / "processed")
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(eval_config_dict(tmp_path, "latest", datasets)))
    return config


def test_missing_split_exits_1_with_one_line_naming_the_fix(tmp_path):
    config = _setup(tmp_path)
    with pytest.raises(Exit) as exc:
        evaluate.generate(Context(), split="test", config=str(config))
    assert exc.value.code == 1 and "\n" not in exc.value.message
    assert exc.value.message.startswith("error: split file") and "fab dataset.split" in exc.value.message


def test_missing_adapter_exits_1_with_one_line(tmp_path):
    config = _setup(tmp_path)
    with pytest.raises(Exit) as exc:
        evaluate.generate(Context(), split="validation", config=str(config), run_id="nope")
    assert exc.value.code == 1 and "no PEFT adapter" in exc.value.message and "\n" not in exc.value.message


@pytest.mark.integration
def test_fab_eval_generate_writes_candidates_and_resumes(tmp_path, tiny_gemma):
    config = _setup(tmp_path, base=tiny_gemma)
    args = ("eval.generate", "--split", "validation", "--config", str(config))
    result = fab(REPO_ROOT, *args, "--limit", "2", "--run-id", "20260101T000000Z")
    assert "No idea what" not in result.stderr, (
        'fabfile.py lacks: ns.add_collection(Collection.from_module(evaluate, name="eval"))'
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "model_outputs" / "validation_candidates.jsonl"
    assert "2 written, 0 skipped" in result.stdout and "valid 100.0%" in result.stdout
    assert f"wrote {out}" in result.stdout.replace("\n", "")
    assert [c.valid for c in read_jsonl(out, Candidate)] == [True, True]
    again = fab(REPO_ROOT, *args)
    assert again.returncode == 0, again.stderr
    assert "2 written, 2 skipped" in again.stdout and len(out.read_text().splitlines()) == 4
