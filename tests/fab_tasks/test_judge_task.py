"""`fab eval.judge` / `fab eval.report` tasks: one-line user errors, the run id, the report file."""

from __future__ import annotations

import pytest
from invoke import Context, Exit

from fab_tasks import evaluate
from tests.scripts.evaluation.judging.test_judge import make_inputs


def _config_file(tmp_path, cfg) -> str:
    import yaml

    path = tmp_path / "judge_slots.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return str(path)


def test_judge_then_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LITELLM_API_KEY", "")  # deterministic only; no server needed
    config = _config_file(tmp_path, make_inputs(tmp_path))
    evaluate.judge(Context(), split="validation", config=config)
    out = capsys.readouterr().out
    run_id = out.strip().splitlines()[-1].removeprefix("run id: ")
    assert run_id.startswith("validation_") and "NOT judged" in out
    report_path = tmp_path / "rep" / "eval.md"
    evaluate.report(Context(), run_id=run_id, output=str(report_path), config=config)
    assert report_path.read_text().startswith(f"# Evaluation report: `{run_id}`")


def test_missing_candidates_is_one_line(tmp_path, monkeypatch):
    cfg = make_inputs(tmp_path)
    (tmp_path / "model_outputs" / "validation_candidates.jsonl").unlink()
    with pytest.raises(Exit) as exc:
        evaluate.judge(Context(), split="validation", config=_config_file(tmp_path, cfg))
    assert exc.value.code == 1 and "\n" not in exc.value.message
    assert "run fab eval.generate --split validation first" in exc.value.message


def test_report_needs_a_known_run_id(tmp_path):
    cfg = make_inputs(tmp_path)
    with pytest.raises(Exit) as exc:
        evaluate.report(Context(), run_id="validation_nope", output=str(tmp_path / "r.md"),
                        config=_config_file(tmp_path, cfg))
    assert exc.value.code == 1 and "no judge run" in exc.value.message
