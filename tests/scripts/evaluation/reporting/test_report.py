"""The Markdown report: verdict lines, tables and numbers that match summary.json; baseline deltas; charts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts.config import UserError
from scripts.evaluation.judging.judge import run_judge
from scripts.evaluation.reporting.report import write_report
from tests.scripts.evaluation.judging.judge_server import JudgeServer
from tests.scripts.evaluation.judging.test_judge import (  # noqa: F401 - fixture
    EXTRACTOR, CLASSIFIER, KEY, PROVENANCE, _candidate, _record, _target, default_examples, judge_env, make_inputs,
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
    report_cfg = cfg.report.model_copy(update={"min_n_for_ci": 5})  # n = 6 examples, 8 titles: intervals shown
    out = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "out" / "eval.md", base_dir.name, report_cfg)
    md = out.read_text()
    assert md.startswith(f"# Evaluation report: `{new_dir.name}`")
    # verdict lines, one per task, agreeing with summary.json
    for task in (CLASSIFIER, EXTRACTOR):
        verdict = summary.tasks[task].acceptance.verdict
        assert re.search(rf"^- \S+ \*\*{task}: {verdict}\*\* \(", md, re.M), task
    # header
    header = dict((r[0], r[1]) for r in _table(md, "run"))
    assert header["n"] == str(summary.n) and header["adapter"] == "`run-1`"
    assert header["split"] == "`validation`" and header["baseline"] == f"`{base_dir.name}`"
    # classifier metrics with CI and delta: accuracy went from 4/6 to 5/6
    nav_rows = {r[0]: r for r in _table(md, "metric")}  # first metric table = classifier
    acc = summary.tasks[CLASSIFIER].metrics["accuracy"]
    assert nav_rows["accuracy"][1] == f"{100 * acc:.1f}%" == "83.3%"
    # Newcombe interval of 5/6 - 4/6 (Wilson bounds of each side): wide at n=6, and it straddles 0
    assert nav_rows["accuracy"][2].startswith("[") and nav_rows["accuracy"][4] == "+16.7 pp [-29.5, +55.8]"
    confusion = {r[0]: r[1:] for r in _table(md, "reference \\ predicted")}
    cm = summary.tasks[CLASSIFIER].classification["confusion"]
    assert confusion["YES"][:2] == [str(cm["YES"]["YES"]), str(cm["YES"]["NO"])]
    # per-slot table with delta: title regressed by one of eight
    slots = {r[0]: r for r in _table(md, "slot")}
    title = summary.tasks[EXTRACTOR].slots["title"]
    assert slots["`title`"][2] == f"{100 * title.accuracy:.1f}%" and slots["`title`"][-1].startswith("-12.5 pp [")
    assert slots["`original_price`"][3] != "0.0%"  # the hallucination shows
    assert "### Per domain" in md and "| shop-0.example |" in md
    assert "### Regressions vs baseline: 1" in md and "Garden Hose" in md
    assert "Recommendation:" in md and "| threshold | kept |" in md
    assert "### Worst failures" in md and "JSON validity **" in md
    judge_rows = dict((r[0], r[1]) for r in _table(md, "judge"))
    assert judge_rows["calls (paid)"] == str(summary.judge.calls)
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
    assert f"**Warning:** {summary.judge.not_judged} LLM-judged slot value(s) were NOT judged" in md
    # no call was made: the configured judge is not named as if it had judged
    assert summary.judge.calls == 0 and summary.judge.model not in md
    assert "No LLM judge took part (0 calls, 0 cached judgements: " in md and "| calls (paid) |" not in md


def test_no_interval_below_the_minimum_n_and_the_report_says_why(two_runs, tmp_path):
    """n = 6 examples < min_n_for_ci 10: "n too small" instead of an interval, and a note with the reason."""
    cfg, base_dir, new_dir, _ = two_runs
    assert cfg.report.min_n_for_ci == 10
    md = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "eval.md", base_dir.name, cfg.report).read_text()
    nav_rows = {r[0]: r for r in _table(md, "metric")}
    assert nav_rows["accuracy"][2] == "n too small" and nav_rows["accuracy"][4] == "+16.7 pp (n too small)"
    assert "_n too small_: no 95% interval below 10 examples (here n = 6, baseline n = 6; " in md
    assert "a bootstrap of n = 1 gives [0%, 0%]" in md
    slots = {r[0]: r for r in _table(md, "slot")}
    assert slots["`title`"][-1] == "-12.5 pp (n too small)"  # 8 titles < 10


def _rewrite_summary(run_dir: Path, change) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    change(summary)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_escalation_tables_and_charts_only_when_they_carry_information(two_runs, tmp_path):
    cfg, _, new_dir, summary = two_runs

    def flatten(s):
        for task, kept in ((CLASSIFIER, 0), (EXTRACTOR, 3)):
            e = s["tasks"][task]["escalation"]
            for r in e["curve"]:
                r.update(kept=kept, coverage=kept / 6, accuracy_kept=1.0 if kept else None)
            e["recommended"] = None
    _rewrite_summary(new_dir, flatten)
    out = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "eval.md", cfg=cfg.report)
    md = out.read_text()
    assert "| threshold | kept |" not in md and "## Escalation curve" not in md
    assert not (tmp_path / "eval_escalation.png").exists()
    low = min(r.threshold for r in summary.tasks[CLASSIFIER].escalation.curve)
    assert f"No escalation table: no page reaches even the lowest confidence threshold ({low:.3f})" in md
    assert "keeps the same 3 of " in md and "the confidences do not separate pages" in md
    assert md.count("**Recommendation:** escalate every page to the strong model.") == 2


def test_truncated_slots_get_a_legend(two_runs, tmp_path):
    cfg, _, new_dir, _ = two_runs
    md = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "a.md", cfg=cfg.report).read_text()
    assert "_truncated_:" not in md  # nothing was cut: no legend to read
    _rewrite_summary(new_dir, lambda s: s["tasks"][EXTRACTOR]["slots"]["title"].update(truncated=2))
    md = write_report(Path(cfg.output_dir), new_dir.name, tmp_path / "b.md", cfg=cfg.report).read_text()
    assert ("_truncated_: slot values cut when the answer was closed early, at the token budget "
            "(`decoding.max_new_tokens`) or the string bound (`schema_bounds.max_string_tokens`); they count as "
            "wrong. In the chart they are the grey hatched part of a bar.") in md
    assert (tmp_path / f"b_{EXTRACTOR}_slots.png").is_file()


def _judged_with(tmp_path, judge_env, provenance: dict | None) -> tuple[Path, str]:
    """A run judged from candidates carrying ``provenance`` (None: a file written before it existed)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    refs, cands = default_examples()
    for c in cands:
        c.pop("provenance")
        if provenance is not None:
            c["provenance"] = provenance
    cfg = make_inputs(tmp_path, refs, cands)
    judge_env(None, key=None)
    run_dir, _ = run_judge(cfg, "validation")
    return Path(cfg.output_dir), run_dir.name


def _header(md: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for name, value in _table(md, "run"):
        rows.setdefault(name, []).append(value)
    return rows


def test_header_is_built_from_the_provenance_without_any_models_folder(tmp_path, judge_env, monkeypatch):
    """Base label, adapter and the run's training settings come from what eval.generate recorded: the run
    folder and the import record are gone (no models/ anywhere), and the header is the same."""
    monkeypatch.chdir(tmp_path)
    training = {"method": "lora", "global_step": 120, "train_examples": 960, "final_loss": 0.41234, "backend": "hf",
                "lr": 0.0003, "packed_max_tokens": 4096, "grad_accum": 2}
    judge_dir, run_id = _judged_with(tmp_path, judge_env, {**PROVENANCE, "training": training})
    assert not any(tmp_path.rglob("models"))
    header = _header(write_report(judge_dir, run_id, tmp_path / "r.md").read_text())
    assert header["base model"] == ["`tiny (GGUF Q8_0, dequantised)`"] and header["adapter"] == ["`run-1`"]
    assert header["training"] == ["`run-1`: lora, 120 steps, lr 0.0003, packed rows of <= 4096 tokens x 2 accum, "
                                  "960 examples, final loss 0.4123, backend hf"]


def test_header_of_a_full_fine_tune_a_zero_shot_and_a_run_without_result(tmp_path, judge_env):
    full = {**PROVENANCE, "method": "full", "adapter": "models/runs/run-1/model",
            "training": {"method": "full", "global_step": 8, "train_examples": 16, "final_loss": None,
                         "backend": "hf", "world_size": 2, "lr": 1e-05, "batch_size": 4, "grad_accum": 1}}
    header = _header(write_report(*_judged_with(tmp_path / "a", judge_env, full), tmp_path / "a.md").read_text())
    assert header["adapter"] == ["`run-1 (full)`"]
    assert header["training"] == ["`run-1`: full, 8 steps, lr 1e-05, batch 4 x 1 accum x 2 ranks, 16 examples, "
                                  "final loss n/a, backend hf"]
    zero_shot = {"base": "models/tiny", "base_label": "tiny (GGUF Q8_0, dequantised)", "zero_shot": True}
    header = _header(write_report(*_judged_with(tmp_path / "b", judge_env, zero_shot), tmp_path / "b.md").read_text())
    assert header["adapter"] == ["none (zero-shot: the base model alone)"] and "training" not in header
    header = _header(write_report(*_judged_with(tmp_path / "c", judge_env, PROVENANCE), tmp_path / "c.md").read_text())
    assert header["training"] == ["`run-1`: no readable result.json in the run folder when the candidates were "
                                  "generated"]


def test_candidates_written_before_provenance_still_report(tmp_path, judge_env):
    """An old candidates file (a model label, no provenance) is judged and reported; the header says what it
    cannot know instead of taking the label apart."""
    judge_dir, run_id = _judged_with(tmp_path, judge_env, None)
    md = write_report(judge_dir, run_id, tmp_path / "r.md").read_text()
    header = _header(md)
    assert header["model"] == ["`tiny+run-1`"] and "training" not in header
    assert header["base model"] == header["adapter"] == [
        "not recorded (candidates generated before provenance was; rerun `fab eval.generate` and `fab eval.judge`)"]
    assert "## Verdict" in md and "### Per slot" in md


def test_unknown_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no judge run"):
        write_report(tmp_path, "validation_nope", tmp_path / "r.md")


def _fake_run(judge_dir: Path, run_id: str, mtime: float) -> None:
    summary = judge_dir / run_id / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text("{}")
    import os

    os.utime(summary, (mtime, mtime))


def test_an_unknown_run_lists_the_runs_there_and_beside_it(tmp_path, monkeypatch):
    """`--run-id does-not-exist` says which runs exist, also the demo's in its workspace demo/<name>/."""
    monkeypatch.chdir(tmp_path)
    judge_dir, demo_dir = Path("reports/judge"), Path("demo/real/reports/judge")
    _fake_run(judge_dir, "validation_20260101T000000Z", 1_000)
    _fake_run(judge_dir, "validation_20260102T000000Z", 2_000)
    _fake_run(demo_dir, "validation_fine_tuned", 3_000)
    config = Path("demo/real/configs/judge_slots.yaml")
    config.parent.mkdir(parents=True)
    config.write_text("")
    with pytest.raises(UserError) as err:
        write_report(judge_dir, "does-not-exist", tmp_path / "r.md")
    assert str(err.value) == (
        f"no judge run 'does-not-exist' in {judge_dir}/; runs there, newest first: validation_20260102T000000Z, "
        f"validation_20260101T000000Z; {demo_dir}/ holds validation_fine_tuned (pass --config {config})")
    with pytest.raises(UserError) as err:
        write_report(judge_dir, "validation_fine_tuned", tmp_path / "r.md")
    assert str(err.value).endswith(f"; 'validation_fine_tuned' is in {demo_dir}/ (pass --config {config})")


def test_an_unknown_run_in_an_empty_folder_says_what_to_run(tmp_path):
    with pytest.raises(UserError) as err:
        write_report(tmp_path / "judge", "nope", tmp_path / "r.md")
    assert str(err.value) == f"no judge run 'nope' in {tmp_path / 'judge'}/ (it holds no run): run fab eval.judge first"


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


# --- disagreements with the labels -------------------------------------------------------------

def _disagreement_examples() -> tuple[list[dict], list[dict]]:
    """Product pages with known differences: (id, domain, reference overrides, prediction overrides)."""
    pages = [
        ("p-0", "shop-a.example", {}, {"availability": "out_of_stock"}),
        ("p-1", "shop-b.example", {}, {"availability": "out_of_stock"}),
        ("p-2", "shop-a.example", {}, {"availability": "out_of_stock"}),
        ("p-3", "shop-c.example", {}, {"currency": "USD"}),
        ("p-4", "shop-c.example", {}, {"currency": "USD"}),
        ("p-5", "shop-a.example", {"availability": None, "sku": None}, {}),
        ("p-6", "shop-b.example", {"availability": None}, {}),
        ("p-7", "shop-a.example", {}, {"sku": None, "review_count": 21, "brand": "Acme Corp"}),  # brand: judge's
        ("p-8", "shop-b.example", {}, {"categories": ["Men"]}),
        ("p-9", "shop-c.example", {}, {"categories": ["Shirts"]}),
        ("p-10", "shop-c.example", {}, {"title": "Blue Shirt"}),  # the LLM judge's: not judged, left out
        ("p-ok", "shop-a.example", {}, {}),
    ]
    refs = [_record(pid, EXTRACTOR, json.dumps(_target(**ref)), domain) for pid, domain, ref, _ in pages]
    cands = [_candidate(pid, EXTRACTOR, _target(**pred)) for pid, _, _, pred in pages]
    refs.append(_record("p-bad", EXTRACTOR, json.dumps(_target(currency="GBP"))))  # invalid answer: left out
    cands.append(_candidate("p-bad", EXTRACTOR, None, valid=False))
    return refs, cands


def _section(md: str, heading: str) -> list[str]:
    lines = md.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def _tables(section: list[str]) -> list[dict[str, list[str]]]:
    """Every table of a section as {first cell: other cells}, header and alignment rows skipped."""
    tables, current = [], None
    for line in section:
        if line.startswith("|"):
            if current is None:
                current, skip = {}, 2
            if skip:
                skip -= 1
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            current.setdefault(cells[0], []).append(cells[1:])
        elif current is not None:
            tables.append(current)
            current = None
    return tables + ([current] if current is not None else [])


@pytest.fixture
def disagreement_run(tmp_path, judge_env):
    refs, cands = _disagreement_examples()
    cfg = make_inputs(tmp_path, refs, cands)
    judge_env(None, key=None)
    run_dir, _ = run_judge(cfg, "validation")
    return cfg, run_dir


def test_report_lists_label_disagreements_per_slot_with_pairs_and_examples(disagreement_run, tmp_path):
    cfg, run_dir = disagreement_run
    md = write_report(Path(cfg.output_dir), run_dir.name, tmp_path / "r.md", cfg=cfg.report).read_text()
    section = _section(md, "### Disagreements with the labels")
    counts, pairs = _tables(section)
    # most disagreements first, ties in the slot table's (catalog) order; what the LLM judge did not see
    # (title, brand) and the invalid answer are not counted
    assert list(counts) == ["`availability`", "`currency`", "`sku`", "`categories`", "`review_count`"]
    assert counts["`availability`"] == [["5", "2 (`p-5`, `p-6`)", "0", "3 (`p-0`, `p-1`)"]]
    assert counts["`currency`"] == [["2", "0", "0", "2 (`p-3`, `p-4`)"]]
    assert counts["`sku`"] == [["2", "1 (`p-5`)", "1 (`p-7`)", "0"]]
    assert counts["`categories`"] == [["2", "0", "0", "2 (`p-8`, `p-9`)"]]
    assert counts["`review_count`"] == [["1", "0", "0", "1 (`p-7`)"]]
    # pairs that repeat, most frequent first, with how many shops they span; lists and one-offs are not paired
    assert pairs == {
        "`availability`": [["`in_stock` → `out_of_stock`", "×3", "2", "`p-0`, `p-1`"],
                           ["`null` → `in_stock`", "×2", "2", "`p-5`, `p-6`"]],
        "`currency`": [["`EUR` → `USD`", "×2", "1", "`p-3`, `p-4`"]],
    }
    assert md.index("### Per slot") < md.index("### Disagreements with the labels") < md.index("### Per domain")


def test_disagreement_tables_follow_the_report_config(disagreement_run, tmp_path):
    cfg, run_dir = disagreement_run
    report = cfg.report.model_copy(update={"disagreement_pairs": 1, "disagreement_min_count": 1,
                                           "disagreement_examples": 1})
    md = write_report(Path(cfg.output_dir), run_dir.name, tmp_path / "r.md", cfg=report).read_text()
    counts, pairs = _tables(_section(md, "### Disagreements with the labels"))
    assert counts["`availability`"] == [["5", "2 (`p-5`)", "0", "3 (`p-0`)"]]
    assert pairs == {
        "`availability`": [["`in_stock` → `out_of_stock`", "×3", "2", "`p-0`"]],
        "`currency`": [["`EUR` → `USD`", "×2", "1", "`p-3`"]],
        "`sku`": [["`null` → `A-1`", "×1", "1", "`p-5`"]],
        "`review_count`": [["`12` → `21`", "×1", "1", "`p-7`"]],
    }
    hidden = cfg.report.model_copy(update={"disagreement_pairs": 0})
    md = write_report(Path(cfg.output_dir), run_dir.name, tmp_path / "r.md", cfg=hidden).read_text()
    assert len(_tables(_section(md, "### Disagreements with the labels"))) == 1


def test_no_disagreement_says_so(tmp_path, judge_env):
    refs = [_record("p-0", EXTRACTOR, json.dumps(_target()))]
    cfg = make_inputs(tmp_path, refs, [_candidate("p-0", EXTRACTOR, _target())])
    judge_env(None, key=None)
    run_dir, _ = run_judge(cfg, "validation")
    md = write_report(Path(cfg.output_dir), run_dir.name, tmp_path / "r.md", cfg=cfg.report).read_text()
    assert _section(md, "### Disagreements with the labels")[1] == (
        "None: every scored slot value equals its reference.")
