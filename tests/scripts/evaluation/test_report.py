"""The Markdown report: verdict lines, tables and numbers that match summary.json; baseline deltas; charts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.config import UserError
from scripts.evaluation.judge import run_judge
from scripts.evaluation.report import write_report
from tests.scripts.evaluation.judge_server import JudgeServer
from tests.scripts.evaluation.test_judge import (  # noqa: F401 - fixture
    EXTRACTOR, CLASSIFIER, KEY, default_examples, judge_env, make_inputs,
)


def _table(md: str, first_header: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


@pytest.fixture
def two_runs(tmp_path, judge_env):
    """A baseline run and a newer one where one title regressed; judged by the local server."""
    cfg = make_inputs(tmp_path)
    with JudgeServer() as server:
        judge_env(server)
        base_dir, _ = run_judge(cfg, "validation", run_id="validation_20260101T000000Z")
        refs, cands = default_examples()
        for c in cands:
            if c["id"] == "prod-2":
                c["parsed"]["title"] = "Garden Hose"  # regresses
            if c["id"] == "nav-2":
                c["parsed"] = "YES"  # improves
        make_inputs(tmp_path, refs, cands)
        new_dir, summary = run_judge(cfg, "validation", run_id="validation_20260102T000000Z")
    return cfg, base_dir, new_dir, summary


def test_report_matches_summary_and_shows_baseline_deltas(two_runs, tmp_path):
    cfg, base_dir, new_dir, summary = two_runs
    out = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "out" / "eval.md", base_dir.name, cfg.report)
    md = out.read_text()
    assert md.startswith(f"# Evaluation report: `{new_dir.name}`")
    # verdict lines, one per task, agreeing with summary.json
    for task in (CLASSIFIER, EXTRACTOR):
        verdict = summary["tasks"][task]["acceptance"]["verdict"]
        assert re.search(rf"^- \S+ \*\*{task}: {verdict}\*\* \(", md, re.M), task
    # header
    header = dict((r[0], r[1]) for r in _table(md, "run"))
    assert header["n"] == str(summary["n"]) and header["adapter"] == "`run-1`"
    assert header["split"] == "`validation`" and header["baseline"] == f"`{base_dir.name}`"
    # classifier metrics with CI and delta: accuracy went from 4/6 to 5/6
    nav_rows = {r[0]: r for r in _table(md, "metric")}  # first metric table = classifier
    acc = summary["tasks"][CLASSIFIER]["metrics"]["accuracy"]
    assert nav_rows["accuracy"][1] == f"{100 * acc:.1f}%" == "83.3%"
    # Newcombe interval of 5/6 - 4/6 (Wilson bounds of each side): wide at n=6, and it straddles 0
    assert nav_rows["accuracy"][2].startswith("[") and nav_rows["accuracy"][4] == "+16.7 pp [-29.5, +55.8]"
    confusion = {r[0]: r[1:] for r in _table(md, "reference \\ predicted")}
    cm = summary["tasks"][CLASSIFIER]["classification"]["confusion"]
    assert confusion["YES"][:2] == [str(cm["YES"]["YES"]), str(cm["YES"]["NO"])]
    # per-slot table with delta: title regressed by one of eight
    slots = {r[0]: r for r in _table(md, "slot")}
    title = summary["tasks"][EXTRACTOR]["slots"]["title"]
    assert slots["`title`"][2] == f"{100 * title['accuracy']:.1f}%" and slots["`title`"][-1].startswith("-12.5 pp [")
    assert slots["`original_price`"][3] != "0.0%"  # the hallucination shows
    assert "### Per domain" in md and "| shop-0.example |" in md
    assert "### Regressions vs baseline: 1" in md and "Garden Hose" in md
    assert "Recommendation:" in md and "| threshold | kept |" in md
    assert "### Worst failures" in md and "JSON validity **" in md
    judge_rows = dict((r[0], r[1]) for r in _table(md, "judge"))
    assert judge_rows["calls (paid)"] == str(summary["judge"]["calls"])
    # charts beside the markdown, linked relatively
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 3 and all("/" not in link and (out.parent / link).is_file() for link in links)
    assert KEY not in md


def test_report_without_judge_says_slots_were_not_judged(tmp_path, judge_env):
    cfg = make_inputs(tmp_path)
    judge_env(None, key=None)
    run_dir, summary = run_judge(cfg, "validation")
    md = write_report(Path(cfg.output_dir), run_dir.name, tmp_path / "r.md", cfg=cfg.report).read_text()
    assert "**LLM-judged slots were NOT judged:**" in md
    assert f"**Warning:** {summary['judge']['not_judged']} LLM-judged slot value(s) were NOT judged" in md


def test_unknown_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no judge run"):
        write_report(tmp_path, "validation_nope", tmp_path / "r.md")


def test_a_run_off_the_contract_is_a_user_error(two_runs, tmp_path):
    """summary.json and results.jsonl are read through JudgeSummary / JudgeRow: a stray key names the file."""
    import json

    cfg, base_dir, new_dir, _ = two_runs
    summary = json.loads((new_dir / "summary.json").read_text())
    summary["surprise"] = 1
    (new_dir / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UserError, match=rf"{new_dir}: does not match the JudgeSummary contract .*surprise.*fab eval.judge"):
        write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "out.md")
    rows = (base_dir / "results.jsonl").read_text().splitlines()
    (base_dir / "results.jsonl").write_text(rows[0].replace('"passed": ', '"passed_": ', 1) + "\n")
    with pytest.raises(UserError, match="does not match the JudgeRow contract"):
        write_report(Path(cfg.output_dir), base_dir.name, tmp_path / "out.md")
