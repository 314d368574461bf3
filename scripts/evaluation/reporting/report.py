"""`eval.report`: a judge run as GitHub-flavoured Markdown (+ PNG charts) for a pull request.

    from scripts.evaluation.reporting.report import write_report
    path = write_report(Path("reports/judge"), "validation_20261125T120000Z", Path("reports/latest_eval.md"),
                        baseline_id=None)

Reads `reports/judge/<run_id>/summary.json` and `results.jsonl` through their
contracts (`JudgeSummary`, `JudgeRow` in scripts.contracts) and nothing else:
not the environment, so no secret can reach the report, and not models/ (what
the model is, its base and its run's settings were recorded in the candidates'
provenance when they were generated). Charts (scripts.evaluation.reporting.charts) are
written beside the Markdown as `<stem>_<chart>.png` and linked by relative path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scripts import paths
from scripts.config import UserError, mask_secrets
from scripts.contracts import (
    Escalation, EscalationRow, JudgeRow, JudgeRunStats, JudgeSummary, TaskSummary, atomic_write, read_jsonl,
)
from scripts.evaluation.judging.config import ReportConfig
from scripts.evaluation.judging.scoring import INVALID_LABEL, is_empty
from scripts.evaluation.reporting.charts import write_charts
from scripts.evaluation.reporting.markdown import (
    METRIC_IS_RATE, cell, ci_bounds, delta, delta_ci, html_safe, metric_text, num, pct, table, too_small_note,
)
from scripts.model.loading import FULL_SUFFIX


def load_run(judge_dir: Path, run_id: str) -> tuple[JudgeSummary, list[JudgeRow]]:
    run_dir = paths.judge_run_dir(judge_dir, run_id)
    summary_path, results_path = run_dir / paths.JUDGE_SUMMARY, run_dir / paths.JUDGE_RESULTS
    if not summary_path.is_file():
        raise UserError(_no_such_run(Path(judge_dir), run_id))
    try:
        summary = JudgeSummary.model_validate_json(summary_path.read_bytes())
        rows = list(read_jsonl(results_path, JudgeRow)) if results_path.is_file() else []
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{run_dir}: does not match the {exc.title} contract (`{where}`: {err['msg']}); "
                        "rerun `fab eval.judge`") from exc
    return summary, rows


def judge_runs(judge_dir: Path) -> list[str]:
    """The judge run ids under ``judge_dir`` (folders with a summary), newest first."""
    if not judge_dir.is_dir():
        return []
    found = [d for d in judge_dir.iterdir() if (d / paths.JUDGE_SUMMARY).is_file()]
    return [d.name for d in sorted(found, key=lambda d: (d / paths.JUDGE_SUMMARY).stat().st_mtime, reverse=True)]


def _listed(runs: list[str], shown: int = 5) -> str:
    more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
    return ", ".join(runs[:shown]) + more


def _no_such_run(judge_dir: Path, run_id: str) -> str:
    """Which judge runs exist: in ``judge_dir``, and in the demo's workspaces (demo/<name>/reports/judge/,
    with the configs that reach them in demo/<name>/configs/)."""
    here = judge_runs(judge_dir)
    message = f"no judge run {run_id!r} in {judge_dir}/"
    message += f"; runs there, newest first: {_listed(here)}" if here else " (it holds no run)"
    elsewhere = []
    for root in paths.other_workspaces():
        workspace = paths.Workspace(root)
        other, runs = workspace.judge_dir, judge_runs(workspace.judge_dir)
        if not runs or other.resolve() == judge_dir.resolve():
            continue
        config = workspace.configs_dir / "judge_slots.yaml"
        hint = f" (pass --config {config})" if config.is_file() else ""
        if run_id in runs:
            return f"{message}; {run_id!r} is in {other}/{hint}"
        elsewhere.append(f"{other}/ holds {_listed(runs)}{hint}")
    if elsewhere:
        message += "; " + "; ".join(elsewhere)
    return message if here or elsewhere else message + ": run fab eval.judge first"


# --- the report ------------------------------------------------------------------------------

# base model, adapter and training rows of a run whose candidates were generated before they carried provenance
NOT_RECORDED = "not recorded (candidates generated before provenance was; rerun `fab eval.generate` and `fab eval.judge`)"


def render_report(summary: JudgeSummary, rows: list[JudgeRow], cfg: ReportConfig, charts: dict[str, str] | None = None,
                  baseline: tuple[JudgeSummary, list[JudgeRow]] | None = None) -> str:
    """The whole report: header, verdicts, one section per task, the escalation chart, the LLM judge."""
    charts = charts or {}
    base_summary, base_rows = baseline if baseline else (None, [])
    lines = _header(summary, base_summary) + _verdicts(summary)
    for task, t in summary.tasks.items():
        bt = base_summary.tasks.get(task) if base_summary else None
        lines += _task_section(task, t, bt, rows, base_rows, cfg, charts, baseline is not None)
    if "escalation" in charts:
        lines += ["## Escalation curve", "", f"![escalation curve]({charts['escalation']})", ""]
    lines += _judge_section(summary.judge)
    return mask_secrets("\n".join(lines).rstrip() + "\n")


def _header(summary: JudgeSummary, base_summary: JudgeSummary | None) -> list[str]:
    """What was evaluated: the model and where it came from (its provenance), the data, the baseline."""
    dataset = summary.dataset
    lines = [f"# Evaluation report: `{summary.run_id}`", ""]
    return lines + table(["run", "value"], [
        ["model", ", ".join(f"`{m}`" for m in summary.model) or "n/a"],
        ["base model", _base_models(summary)],
        ["adapter", _adapter(summary)],
        *([["training", text] for text in _training(summary)]),
        ["dataset manifest sha256", f"`{(dataset.get('manifest_sha256') or 'n/a')[:16]}`"
                                    f" (schema {dataset.get('schema_version', 'n/a')})"],
        ["split", f"`{summary.split}`"],
        ["n", str(summary.n)],
        ["constrained decoding", ", ".join(str(c) for c in summary.constrained)],
        ["created", summary.created_at],
        *([["baseline", f"`{base_summary.run_id}`"],
           ["baseline model", ", ".join(f"`{m}`" for m in base_summary.model) or "n/a"],
           ["baseline base model", _base_models(base_summary)],
           ["baseline adapter", _adapter(base_summary)]] if base_summary else []),
    ])


def _base_models(summary: JudgeSummary) -> str:
    """What each model's base is (an import says so: `google/gemma-3-270m (GGUF Q4_K_M, dequantised)`)."""
    if not summary.provenance:
        return NOT_RECORDED
    return ", ".join(f"`{label}`" for label in dict.fromkeys(p.base_label for p in summary.provenance))


def _adapter(summary: JudgeSummary) -> str:
    if not summary.provenance:
        return NOT_RECORDED
    if any(p.zero_shot for p in summary.provenance):
        return "none (zero-shot: the base model alone)"
    runs = [f"`{p.run_id}{FULL_SUFFIX if p.method == 'full' else ''}`" for p in summary.provenance if p.run_id]
    return ", ".join(runs) or "none (base or merged model)"


def _training(summary: JudgeSummary) -> list[str]:
    """The training settings of each run the candidates came from, as recorded when they were generated."""
    texts = []
    for p in summary.provenance:
        if p.run_id is None or p.zero_shot:
            continue
        run = p.training
        if run is None:
            texts.append(f"`{p.run_id}`: no readable result.json in the run folder when the candidates were generated")
            continue
        settings = [run.method, f"{run.global_step} steps"]
        if run.lr is not None:
            batch = (f"packed rows of <= {run.packed_max_tokens} tokens" if run.packed_max_tokens is not None
                     else f"batch {run.batch_size}")
            settings += [f"lr {run.lr:g}", f"{batch} x {run.grad_accum} accum"
                         + (f" x {run.world_size} ranks" if run.world_size > 1 else "")]
        loss = "n/a" if run.final_loss is None else f"{run.final_loss:.4f}"
        settings += [f"{run.train_examples} examples", f"final loss {loss}", f"backend {run.backend}"]
        texts.append(f"`{p.run_id}`: " + ", ".join(settings))
    return texts


def _verdicts(summary: JudgeSummary) -> list[str]:
    lines = ["## Verdict", ""]
    for task, t in summary.tasks.items():
        acc = t.acceptance
        checks = "; ".join(
            f"{c.metric} {metric_text(c.metric, c.value)} {c.op} {metric_text(c.metric, c.threshold)}"
            f"{'' if c.ok else ' ✗'}" for c in acc.checks)
        icon = {"PASS": "✅", "FAIL": "❌"}.get(acc.verdict, "⚪")
        lines.append(f"- {icon} **{task}: {acc.verdict}** ({checks or 'no thresholds configured'})")
    lines.append("")
    judge = summary.judge
    if judge.not_judged:
        why = judge.disabled_reason or ("cost budget reached" if judge.budget_stopped else "judge errors")
        lines += [f"> **Warning:** {judge.not_judged} LLM-judged slot value(s) were NOT judged ({why}); "
                  "they count as failures, never as passes.", ""]
    return lines


def _task_section(task: str, t: TaskSummary, bt: TaskSummary | None, rows: list[JudgeRow], base_rows: list[JudgeRow],
                  cfg: ReportConfig, charts: dict[str, str], with_baseline: bool) -> list[str]:
    lines = [f"## {task}", ""]
    lines += _metrics(t, bt, cfg, with_baseline)
    if t.classification:
        lines += _confusion(task, t.classification, charts)
    if t.slots:
        lines += _slots(task, t, bt, rows, cfg, charts, with_baseline)
    lines += _domains_and_speed(t)
    lines += _escalation(t.escalation, t.n)
    lines += _failures(task, rows, cfg)
    if with_baseline:
        lines += _regressions(task, rows, base_rows, cfg)
    return lines


def _metrics(t: TaskSummary, bt: TaskSummary | None, cfg: ReportConfig, with_baseline: bool) -> list[str]:
    header = ["metric", "value"] + (["95% CI"] if t.classification else []) + (
        ["baseline", "Δ"] if with_baseline else [])
    table_rows = []
    ci = (t.classification or {}).get("ci95")
    ci_names = {"accuracy": "accuracy", "precision_yes": "precision", "recall_yes": "recall",
                "f1_yes": "f1", "kappa": "kappa"}
    too_small = t.n < cfg.min_n_for_ci
    for name, value in t.metrics.items():
        row = [name, metric_text(name, value)]
        if t.classification:
            row.append(("n too small" if too_small else ci_bounds(ci, ci_names[name])) if name in ci_names else "")
        if with_baseline:
            base_value = bt.metrics.get(name) if bt else None
            n_of = _metric_n(t, name)
            change = (delta_ci(value, base_value, n_of, _metric_n(bt, name), cfg.min_n_for_ci) if n_of else
                      delta(value, base_value, rate=name in METRIC_IS_RATE))
            row += [metric_text(name, base_value), change]
        table_rows.append(row)
    lines = table(header, table_rows)
    if (t.classification or with_baseline) and (too_small or (bt is not None and bt.n < cfg.min_n_for_ci)):
        lines += [too_small_note(t.n, bt.n if bt else None, cfg.min_n_for_ci), ""]
    return lines


def _confusion(task: str, cls: dict[str, Any], charts: dict[str, str]) -> list[str]:
    labels = cls["labels"]
    lines = ["Confusion matrix (rows: strong model / reference, columns: small model):", ""]
    ref_labels = [r for r in labels if r != INVALID_LABEL]  # a reference is never invalid
    lines += table(["reference \\ predicted"] + [html_safe(c) for c in labels],
                   [[html_safe(r)] + [str(cls["confusion"][r][c]) for c in labels] for r in ref_labels])
    if f"confusion:{task}" in charts:
        lines += [f"![{task} confusion matrix]({charts[f'confusion:{task}']})", ""]
    return lines


def _slots(task: str, t: TaskSummary, bt: TaskSummary | None, rows: list[JudgeRow], cfg: ReportConfig,
           charts: dict[str, str], with_baseline: bool) -> list[str]:
    lines = ["### Per slot", ""]
    bslots = (bt.slots if bt else None) or {}
    srows = []
    for slot, s in t.slots.items():
        row = [f"`{slot}`", str(s.n), pct(s.accuracy), pct(s.hallucination_rate), pct(s.omission_rate),
               str(s.truncated), str(s.not_judged), str(s.llm_judged),
               ", ".join(f"{k} {v}" for k, v in s.methods.items())]
        if with_baseline:
            b = bslots.get(slot)
            row.append(delta_ci(s.accuracy, b.accuracy if b else None, s.n, b.n if b else None, cfg.min_n_for_ci))
        srows.append(row)
    lines += table(["slot", "n", "accuracy", "hallucination (of empty refs)", "omission (of filled refs)",
                    "truncated (scored wrong)", "not judged", "LLM-judged", "methods"]
                   + (["Δ accuracy"] if with_baseline else []), srows)
    if f"slots:{task}" in charts:
        lines += [f"![{task} per-slot accuracy]({charts[f'slots:{task}']})", ""]
    if any(s.truncated for s in t.slots.values()):
        lines += ["_truncated_: slot values cut when the answer was closed early, at the token budget "
                  "(`decoding.max_new_tokens`) or the string bound (`schema_bounds.max_string_tokens`); "
                  "they count as wrong. In the chart they are the grey hatched part of a bar.", ""]
    return lines + _disagreements(task, list(t.slots), rows, cfg)


def _domains_and_speed(t: TaskSummary) -> list[str]:
    lines = ["### Per domain", ""]
    lines += table(["domain", "n", "accuracy"] + (["slot accuracy"] if t.slots else []),
                   [[d, str(v.n), pct(v.accuracy)] + ([pct(v.slot_accuracy)] if t.slots else [])
                    for d, v in t.per_domain.items()])
    lat = t.latency
    truncated = t.truncated_answers
    return lines + [f"JSON validity **{pct(t.json_validity)}**"
                    + (f" ({truncated} of {t.n} answers closed early at the token budget or string bound: "
                       "their cut slots are scored wrong)" if truncated else "")
                    + f"; latency mean {num(lat.mean_s)} s, p50 {num(lat.p50_s)} s, p95 {num(lat.p95_s)} s; "
                    f"{num(lat.output_tokens_per_s, 1)} output tokens/s, {num(lat.examples_per_s, 2)} examples/s.", ""]


def _judge_section(judge: JudgeRunStats) -> list[str]:
    lines = ["## LLM judge", ""]
    if not (judge.calls or judge.cache_hits):
        reason = judge.disabled_reason or ("no slot value needed it" if not judge.needed else "no call succeeded")
        lines += [f"No LLM judge took part (0 calls, 0 cached judgements: {reason}); every slot value was scored "
                  "by the deterministic scorers.", ""]
    else:
        lines += table(["judge", "value"], [
            ["model", f"`{judge.model}`"],
            ["slot values needing the judge", str(judge.needed)],
            ["judged (new + cached)", str(judge.judged)],
            ["not judged", str(judge.not_judged)],
            ["calls (paid)", str(judge.calls)],
            ["HTTP requests incl. retries", f"{judge.requests} ({judge.retries} retries)"],
            ["cache hits", str(judge.cache_hits)],
            ["tokens (prompt / completion)", f"{judge.prompt_tokens} / {judge.completion_tokens}"],
            ["cost", f"${judge.cost_usd:.4f}" + (f" of ${judge.max_cost_usd:.4f} budget"
                                                 if judge.max_cost_usd is not None else "")],
        ])
    if judge.needed and not judge.enabled:
        lines += [f"**LLM-judged slots were NOT judged:** {judge.disabled_reason or 'no judge configured'}.", ""]
    return lines


def _metric_n(t: TaskSummary | None, name: str) -> int | None:
    """How many judgements a rate metric averages: examples, or slot values for slot accuracy."""
    if t is None:
        return None
    if name in ("accuracy", "example_accuracy"):
        return t.n
    if name == "slot_accuracy":
        return sum(s.n for s in (t.slots or {}).values()) or None
    return None


def escalation_informative(curve: list[EscalationRow]) -> bool:
    """A table says something when its thresholds make different choices (keep different page counts)
    and one keeps any page; otherwise every threshold keeps none, or the same pages."""
    kept = {r.kept for r in curve}
    return len(kept) >= 2 and any(kept)


def _escalation(e: Escalation, n: int) -> list[str]:
    curve = e.curve
    if not curve:
        return []
    lines = [f"### Escalation policy (target accuracy {pct(e.target_accuracy)} on kept pages)", ""]
    if not escalation_informative(curve):
        low = min(r.threshold for r in curve)
        if not any(r.kept for r in curve):
            why = f"no page reaches even the lowest confidence threshold ({num(low)})"
        else:
            why = (f"every threshold from {num(low)} to {num(max(r.threshold for r in curve))} keeps the same "
                   f"{curve[0].kept} of {n} pages ({pct(curve[0].accuracy_kept)} correct): the confidences "
                   "do not separate pages")
        lines += [f"No escalation table: {why}, so there is no trade-off to show.", ""]
        if not e.recommended:
            lines += ["**Recommendation:** escalate every page to the strong model.", ""]
            return lines
    else:
        lines += table(["threshold", "kept", "coverage", "accuracy kept", "accuracy overall", "prompt tokens saved"],
                       [[num(r.threshold), str(r.kept), pct(r.coverage), pct(r.accuracy_kept),
                         pct(r.accuracy_overall), pct(r.prompt_tokens_saved_share)] for r in curve])
    rec = e.recommended
    if rec:
        lines += [f"**Recommendation:** keep pages with confidence ≥ {num(rec.threshold)}: the small model "
                  f"answers {pct(rec.coverage)} of pages at {pct(rec.accuracy_kept)} accuracy, saving "
                  f"{pct(rec.strong_calls_saved)} of strong-model calls and "
                  f"{pct(rec.prompt_tokens_saved_share)} of their prompt tokens.", ""]
    else:
        lines += ["**Recommendation:** no threshold meets the target; escalate every page to the strong model.", ""]
    return lines


# outcomes of a scored value that disagrees with its reference (invalid, cut and unjudged answers say
# nothing about the label, so they stay out)
_FILLED, _EMPTIED, _OTHER = "hallucination", "omission", "wrong"


def _ids(rows: list[JudgeRow], k: int) -> str:
    return ", ".join(f"`{r.id}`" for r in rows[:k])


def _counted(rows: list[JudgeRow], k: int) -> str:
    return f"{len(rows)} ({_ids(rows, k)})" if rows else "0"


def _pairable(value: Any, limit: int) -> bool:
    """Empty, or a short scalar: lists and long text (titles, URLs) are counted but never paired."""
    return is_empty(value) or (isinstance(value, (str, int, float, bool)) and len(str(value)) <= limit)


def _shown(value: Any, limit: int) -> str:
    return cell(None if is_empty(value) else value, limit)


def _disagreements(task: str, slots: list[str], rows: list[JudgeRow], cfg: ReportConfig) -> list[str]:
    """Per extraction slot: how the small model's answers differ from the strong model's labels.

    A disagreement that repeats on many pages and shops is a rule the two apply differently: either the
    model learned it wrong or the labels are inconsistent; the example ids lead to the pages to decide."""
    differ = [r for r in rows if r.task == task and not r.passed and r.outcome in (_FILLED, _EMPTIED, _OTHER)
              and r.method not in ("invalid", "truncated")]
    lines = ["### Disagreements with the labels", ""]
    if not differ:
        return lines + ["None: every scored slot value equals its reference.", ""]
    lines += ["Where the small model and the strong model's labels differ. Labels can be wrong too: the same "
              "difference on many pages and shops is a rule the two apply differently; open the examples "
              "to see which side is right.", ""]
    names = dict.fromkeys([*slots, *(r.slot for r in differ)])
    by_slot = {slot: [r for r in differ if r.slot == slot] for slot in names}
    order = sorted((slot for slot, found in by_slot.items() if found), key=lambda slot: -len(by_slot[slot]))
    k = cfg.disagreement_examples
    lines += table(
        ["slot", "disagree", "filled where the reference is empty", "empty where the reference is filled",
         "both filled, different"],
        [[f"`{slot}`", str(len(by_slot[slot])),
          *(_counted([r for r in by_slot[slot] if r.outcome == o], k) for o in (_FILLED, _EMPTIED, _OTHER))]
         for slot in order])
    if cfg.disagreement_pairs == 0:
        return lines
    pair_rows = []
    for slot in order:
        pairs: dict[str, list[JudgeRow]] = {}
        for r in by_slot[slot]:
            if _pairable(r.reference, cfg.pair_value_chars) and _pairable(r.candidate, cfg.pair_value_chars):
                limit = cfg.max_value_chars
                pair = f"{_shown(r.reference, limit)} → {_shown(r.candidate, limit)}"
                pairs.setdefault(pair, []).append(r)
        ranked = sorted(pairs.items(), key=lambda item: -len(item[1]))  # stable: first seen first on ties
        for shown, found in ranked[: cfg.disagreement_pairs]:
            if len(found) >= cfg.disagreement_min_count:
                pair_rows.append([f"`{slot}`", shown, f"×{len(found)}", str(len({r.domain for r in found})),
                                  _ids(found, k)])
    if not pair_rows:
        return lines + ["No (reference → prediction) pair of short values repeats "
                        f"{cfg.disagreement_min_count} times or more.", ""]
    lines += [f"Most frequent (reference → prediction) pairs, top {cfg.disagreement_pairs} per slot, "
              f"seen at least {cfg.disagreement_min_count} times:", ""]
    return lines + table(["slot", "reference → prediction", "count", "shops", "examples"], pair_rows)


def _failures(task: str, rows: list[JudgeRow], cfg: ReportConfig) -> list[str]:
    failed = [r for r in rows if r.task == task and not r.passed]
    if not failed or cfg.worst_failures == 0:
        return []
    order = {"hallucination": 0, "not_judged": 3, "omission": 1, "wrong": 2}
    failed.sort(key=lambda r: (not r.valid, order.get(r.outcome, 9), r.score, r.id))
    shown = failed[: cfg.worst_failures]
    lines = [f"### Worst failures ({len(shown)} of {len(failed)})", ""]
    lines += table(["id", "slot", "outcome", "reference", "candidate", "note"],
                    [[f"`{r.id}`", r.slot, r.outcome, cell(r.reference, cfg.max_value_chars),
                      cell(r.candidate, cfg.max_value_chars), cell(r.rationale or "", 80)]
                     for r in shown])
    return lines


def _regressions(task: str, rows: list[JudgeRow], base_rows: list[JudgeRow], cfg: ReportConfig) -> list[str]:
    before = {(r.id, r.slot): r for r in base_rows if r.task == task}
    regressed = [r for r in rows if r.task == task and not r.passed
                 and (r.id, r.slot) in before and before[(r.id, r.slot)].passed]
    lines = [f"### Regressions vs baseline: {len(regressed)}", ""]
    if regressed and cfg.regressions_shown:
        lines += table(["id", "slot", "reference", "baseline", "now"],
                        [[f"`{r.id}`", r.slot, cell(r.reference, cfg.max_value_chars),
                          cell(before[(r.id, r.slot)].candidate, cfg.max_value_chars),
                          cell(r.candidate, cfg.max_value_chars)] for r in regressed[: cfg.regressions_shown]])
    return lines


def write_report(judge_dir: Path, run_id: str, output: Path, baseline_id: str | None = None,
                 cfg: ReportConfig | None = None) -> Path:
    summary, rows = load_run(judge_dir, run_id)
    baseline = load_run(judge_dir, baseline_id) if baseline_id else None
    output.parent.mkdir(parents=True, exist_ok=True)
    charts = write_charts(summary, output)
    text = render_report(summary, rows, cfg or ReportConfig(), charts, baseline)
    with atomic_write(output, "w") as fh:
        fh.write(text)
    return output
