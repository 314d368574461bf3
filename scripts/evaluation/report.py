"""`eval.report`: a judge run as GitHub-flavoured Markdown (+ PNG charts) for a pull request.

    from scripts.evaluation.report import write_report
    path = write_report(Path("reports/judge"), "validation_20261125T120000Z", Path("reports/latest_eval.md"),
                        baseline_id=None)

Reads `reports/judge/<run_id>/summary.json` and `results.jsonl` through their
contracts (`JudgeSummary`, `JudgeRow` in scripts.contracts); never reads
the environment, so no secret can reach the report. Charts are written beside
the Markdown as `<stem>_<chart>.png` and linked by relative path.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scripts import paths
from scripts.config import UserError, mask_secrets
from scripts.contracts import JudgeRow, JudgeSummary, TaskSummary, atomic_write, read_jsonl
from scripts.evaluation.judge_config import ReportConfig
from scripts.evaluation.scoring import INVALID_LABEL, is_empty
from scripts.model_loading import ZERO_SHOT_SUFFIX


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


# --- formatting helpers --------------------------------------------------------------


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _delta(value: Any, base: Any, pct: bool = True) -> str:
    if value is None or base is None:
        return "n/a"
    d = value - base
    return f"{'+' if d >= 0 else ''}{100 * d:.1f} pp" if pct else f"{'+' if d >= 0 else ''}{d:.3f}"


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _delta_ci(value: Any, base: Any, n: int | None, base_n: int | None, min_n: int = 1) -> str:
    """Difference of two rates with Newcombe's 95% interval (from each side's Wilson interval; sound at
    small n and at 0% or 100%, where a Wald interval collapses or leaves [-100, 100]); no interval when
    either side has fewer than ``min_n`` judgements."""
    text = _delta(value, base)
    if value is None or base is None or not n or not base_n:
        return text
    if n < min_n or base_n < min_n:
        return f"{text} (n too small)"
    (l1, u1), (l2, u2) = _wilson(value, n), _wilson(base, base_n)
    d = value - base
    low = d - math.sqrt((value - l1) ** 2 + (u2 - base) ** 2)
    high = d + math.sqrt((u1 - value) ** 2 + (base - l2) ** 2)
    return f"{text} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _cell(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`" if text else "_(empty)_"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    numeric = re.compile(r"^[-+]?[\d.,]+( ?%| pp| s)?$|^n/a$|^$|^\[.*\]$")
    align = ["---:" if i and rows and all(numeric.match(r[i]) for r in rows) else "---"
             for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def _too_small_note(n: int, base_n: int | None, min_n: int) -> str:
    sides = f"n = {n}" + (f", baseline n = {base_n}" if base_n is not None else "")
    return (f"_n too small_: no 95% interval below {min_n} examples (here {sides}; `report.min_n_for_ci`). "
            "An interval from so few examples is either a point (a bootstrap of n = 1 gives [0%, 0%]) or "
            "spans most of 0-100%: it would claim a certainty the data do not have.")


def _ci(ci: dict | None, name: str) -> str:
    bounds = (ci or {}).get(name)
    fmt = _num if name == "kappa" else _pct
    return f"[{fmt(bounds[0])}, {fmt(bounds[1])}]" if bounds else "n/a"


def _html_safe(text: str) -> str:
    """`<invalid>` would vanish as an HTML tag on GitHub."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


METRIC_IS_RATE = {"accuracy", "precision_yes", "recall_yes", "f1_yes", "json_validity", "slot_accuracy",
                  "example_accuracy", "hallucination_rate", "omission_rate"}


def _metric(name: str, value: Any) -> str:
    return _pct(value) if name in METRIC_IS_RATE else _num(value)


# --- charts ----------------------------------------------------------------------------


def _charts(summary: JudgeSummary, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    stem = out.stem
    tasks = summary.tasks
    # escalation curves
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for task, t in tasks.items():
        curve = _chart_points(t.escalation.get("curve", []))
        if curve:
            ax.plot([r["coverage"] for r in curve], [r["accuracy_kept"] for r in curve], marker="o", label=task)
            plotted = True
    if plotted:
        ax.set_xlabel("share of pages kept by the small model")
        ax.set_ylabel("accuracy on kept pages")
        ax.set_title("Escalation: coverage vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        name = f"{stem}_escalation.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made["escalation"] = name
    plt.close(fig)
    # per-slot accuracy
    for task, t in tasks.items():
        slots = t.slots
        if not slots:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(slots) + 1.2))
        names = list(slots)
        correct = [100 * (slots[s]["accuracy"] or 0) for s in names]
        ax.barh(names, correct, color="#4c72b0", label="correct")
        cut = [100 * slots[s].get("truncated", 0) / slots[s]["n"] if slots[s]["n"] else 0 for s in names]
        if any(cut):  # cut values are scored wrong: they sit after the correct share, never inside it
            ax.barh(names, cut, left=correct, color="#bbbbbb", hatch="//", edgecolor="#777777",
                    label="truncated: closed early at the token budget or string bound (scored wrong)")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_xlabel("accuracy (%)")
        ax.set_title(f"{task}: per-slot accuracy")
        name = f"{stem}_{task}_slots.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made[f"slots:{task}"] = name
        plt.close(fig)
    # confusion matrices
    for task, t in tasks.items():
        cls = t.classification
        if not cls:
            continue
        labels = cls["labels"]
        matrix = [[cls["confusion"][r][c] for c in labels] for r in labels]
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("small model")
        ax.set_ylabel("strong model (reference)")
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center")
        ax.set_title(task, fontsize=9)
        name = f"{stem}_{task}_confusion.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made[f"confusion:{task}"] = name
        plt.close(fig)
    return made


# --- the report ------------------------------------------------------------------------------


def render_report(summary: JudgeSummary, rows: list[JudgeRow], cfg: ReportConfig, charts: dict[str, str] | None = None,
                  baseline: tuple[JudgeSummary, list[JudgeRow]] | None = None) -> str:
    charts = charts or {}
    base_summary, base_rows = baseline if baseline else (None, [])
    base_tasks = base_summary.tasks if base_summary else {}
    tasks = summary.tasks
    dataset = summary.dataset
    lines = [f"# Evaluation report: `{summary.run_id}`", ""]
    lines += _table(["run", "value"], [
        ["model", ", ".join(f"`{m}`" for m in summary.model) or "n/a"],
        ["base model", _base_models(summary)],
        ["adapter", _adapter(summary)],
        *([["training", text] for text in _training(summary, cfg.runs_dir or paths.Workspace().runs_dir)]),
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

    lines += ["## Verdict", ""]
    for task, t in tasks.items():
        acc = t.acceptance
        checks = "; ".join(
            f"{c.metric} {_metric(c.metric, c.value)} {c.op} {_metric(c.metric, c.threshold)}"
            f"{'' if c.ok else ' ✗'}" for c in acc.checks)
        icon = {"PASS": "✅", "FAIL": "❌"}.get(acc.verdict, "⚪")
        lines.append(f"- {icon} **{task}: {acc.verdict}** ({checks or 'no thresholds configured'})")
    lines.append("")
    judge = summary.judge
    if judge.not_judged:
        why = judge.disabled_reason or ("cost budget reached" if judge.budget_stopped else "judge errors")
        lines += [f"> **Warning:** {judge.not_judged} LLM-judged slot value(s) were NOT judged ({why}); "
                  "they count as failures, never as passes.", ""]

    for task, t in tasks.items():
        bt = base_tasks.get(task)
        lines += [f"## {task}", ""]
        metrics = t.metrics
        header = ["metric", "value"] + (["95% CI"] if t.classification else []) + (
            ["baseline", "Δ"] if baseline else [])
        table_rows = []
        ci = (t.classification or {}).get("ci95")
        ci_names = {"accuracy": "accuracy", "precision_yes": "precision", "recall_yes": "recall",
                    "f1_yes": "f1", "kappa": "kappa"}
        too_small = t.n < cfg.min_n_for_ci
        for name, value in metrics.items():
            row = [name, _metric(name, value)]
            if t.classification:
                row.append(("n too small" if too_small else _ci(ci, ci_names[name])) if name in ci_names else "")
            if baseline:
                base_value = bt.metrics.get(name) if bt else None
                n_of = _metric_n(t, name)
                delta = (_delta_ci(value, base_value, n_of, _metric_n(bt, name), cfg.min_n_for_ci) if n_of else
                         _delta(value, base_value, pct=name in METRIC_IS_RATE))
                row += [_metric(name, base_value), delta]
            table_rows.append(row)
        lines += _table(header, table_rows)
        if (t.classification or baseline) and (too_small or (bt is not None and bt.n < cfg.min_n_for_ci)):
            lines += [_too_small_note(t.n, bt.n if bt else None, cfg.min_n_for_ci), ""]
        if t.classification:
            cls = t.classification
            labels = cls["labels"]
            lines += ["Confusion matrix (rows: strong model / reference, columns: small model):", ""]
            ref_labels = [r for r in labels if r != INVALID_LABEL]  # a reference is never invalid
            lines += _table(["reference \\ predicted"] + [_html_safe(c) for c in labels],
                            [[_html_safe(r)] + [str(cls["confusion"][r][c]) for c in labels] for r in ref_labels])
            if f"confusion:{task}" in charts:
                lines += [f"![{task} confusion matrix]({charts[f'confusion:{task}']})", ""]
        if t.slots:
            lines += ["### Per slot", ""]
            bslots = (bt.slots if bt else None) or {}
            srows = []
            for slot, s in t.slots.items():
                row = [f"`{slot}`", str(s["n"]), _pct(s["accuracy"]), _pct(s["hallucination_rate"]),
                       _pct(s["omission_rate"]), str(s.get("truncated", 0)), str(s["not_judged"]),
                       str(s["llm_judged"]),
                       ", ".join(f"{k} {v}" for k, v in s["methods"].items())]
                if baseline:
                    b = bslots.get(slot, {})
                    row.append(_delta_ci(s["accuracy"], b.get("accuracy"), s["n"], b.get("n"), cfg.min_n_for_ci))
                srows.append(row)
            lines += _table(["slot", "n", "accuracy", "hallucination (of empty refs)", "omission (of filled refs)",
                             "truncated (scored wrong)", "not judged", "LLM-judged", "methods"]
                            + (["Δ accuracy"] if baseline else []), srows)
            if f"slots:{task}" in charts:
                lines += [f"![{task} per-slot accuracy]({charts[f'slots:{task}']})", ""]
            if any(s.get("truncated") for s in t.slots.values()):
                lines += ["_truncated_: slot values cut when the answer was closed early, at the token budget "
                          "(`decoding.max_new_tokens`) or the string bound (`schema_bounds.max_string_tokens`); "
                          "they count as wrong. In the chart they are the grey hatched part of a bar.", ""]
            lines += _disagreements(task, list(t.slots), rows, cfg)
        lines += ["### Per domain", ""]
        domains = t.per_domain
        lines += _table(["domain", "n", "accuracy"] + (["slot accuracy"] if t.slots else []),
                        [[d, str(v["n"]), _pct(v["accuracy"])] + ([_pct(v.get("slot_accuracy"))] if t.slots
                                                                  else []) for d, v in domains.items()])
        lat = t.latency
        truncated = t.truncated_answers
        lines += [f"JSON validity **{_pct(t.json_validity)}**"
                  + (f" ({truncated} of {t.n} answers closed early at the token budget or string bound: "
                     "their cut slots are scored wrong)" if truncated else "")
                  + f"; latency mean {_num(lat.get('mean_s'))} s, "
                  f"p50 {_num(lat.get('p50_s'))} s, p95 {_num(lat.get('p95_s'))} s; "
                  f"{_num(lat.get('output_tokens_per_s'), 1)} output tokens/s, "
                  f"{_num(lat.get('examples_per_s'), 2)} examples/s.", ""]
        lines += _escalation(task, t.escalation, t.n)
        lines += _failures(task, rows, cfg)
        if baseline:
            lines += _regressions(task, rows, base_rows, cfg)
    if "escalation" in charts:
        lines += ["## Escalation curve", "", f"![escalation curve]({charts['escalation']})", ""]

    lines += ["## LLM judge", ""]
    if not (judge.calls or judge.cache_hits):
        reason = judge.disabled_reason or ("no slot value needed it" if not judge.needed else "no call succeeded")
        lines += [f"No LLM judge took part (0 calls, 0 cached judgements: {reason}); every slot value was scored "
                  "by the deterministic scorers.", ""]
        if judge.needed and not judge.enabled:
            lines += [f"**LLM-judged slots were NOT judged:** {judge.disabled_reason or 'no judge configured'}.", ""]
        return mask_secrets("\n".join(lines).rstrip() + "\n")
    lines += _table(["judge", "value"], [
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
    return mask_secrets("\n".join(lines).rstrip() + "\n")


def _metric_n(t: TaskSummary | None, name: str) -> int | None:
    """How many judgements a rate metric averages: examples, or slot values for slot accuracy."""
    if t is None:
        return None
    if name in ("accuracy", "example_accuracy"):
        return t.n
    if name == "slot_accuracy":
        return sum(s["n"] for s in (t.slots or {}).values()) or None
    return None


def _training(summary: JudgeSummary, runs_dir: Path) -> list[str]:
    """The training settings of each run named in the candidates' model labels (``<base>+<run_id>``),
    read from the run folder's result.json (RunResult) and config.yaml (TrainingConfig)."""
    from scripts.config import TrainingConfig, load_config
    from scripts.contracts import RunResult
    from scripts.model_loading import FULL_SUFFIX

    runs = dict.fromkeys(m.split("+", 1)[1].removesuffix(FULL_SUFFIX) for m in summary.model
                         if "+" in m and not m.endswith(ZERO_SHOT_SUFFIX))
    texts = []
    for run_id in runs:
        run = paths.run_dir(runs_dir, run_id)
        result_path, config_path = run / "result.json", run / paths.RUN_CONFIG
        if not result_path.is_file():
            texts.append(f"`{run_id}`: no result.json in {run}/ (set `report.runs_dir`)")
            continue
        try:
            result = RunResult.model_validate_json(result_path.read_bytes())
            run_cfg = load_config(config_path, TrainingConfig) if config_path.is_file() else None
        except (ValidationError, UserError) as exc:
            texts.append(f"`{run_id}`: unreadable run folder {run}/ ({str(exc).splitlines()[0][:80]})")
            continue
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        settings = [result.method, f"{result.global_step} steps"]
        if run_cfg is not None:
            train = run_cfg.train
            batch = (f"packed rows of <= {run_cfg.packing.max_tokens} tokens" if run_cfg.packing.enabled
                     else f"batch {train.per_device_batch_size}")
            settings += [f"lr {train.lr:g}", f"{batch} x {train.grad_accum} accum"
                         + (f" x {result.world_size} ranks" if result.world_size > 1 else "")]
        settings += [f"{result.train_examples} examples", f"final loss {loss}", f"backend {result.backend}"]
        texts.append(f"`{run_id}`: " + ", ".join(settings))
    return texts


def _base_models(summary: JudgeSummary) -> str:
    """What each model's base is (an import says so: `google/gemma-3-270m (GGUF Q4_K_M, dequantised)`)."""
    from scripts.model_identity import base_model_label

    bases = dict.fromkeys(m.split("+", 1)[0].removesuffix(ZERO_SHOT_SUFFIX) for m in summary.model)
    return ", ".join(f"`{base_model_label(b)}`" for b in bases) or "n/a"


def _adapter(summary: JudgeSummary) -> str:
    models = summary.model
    adapters = [m.split("+", 1)[1] for m in models if "+" in m]
    if any(m.endswith(ZERO_SHOT_SUFFIX) for m in models):
        return "none (zero-shot: the base model alone)"
    return ", ".join(f"`{a}`" for a in adapters) or "none (base or merged model)"


def escalation_informative(curve: list[dict]) -> bool:
    """A table says something when its thresholds make different choices (keep different page counts)
    and one keeps any page; otherwise every threshold keeps none, or the same pages."""
    kept = {r["kept"] for r in curve}
    return len(kept) >= 2 and any(kept)


def _chart_points(curve: list[dict]) -> list[dict]:
    """The curve's points that carry an accuracy; a chart needs two different coverages, not one dot."""
    points = [r for r in curve if r["accuracy_kept"] is not None]
    return points if len({r["coverage"] for r in points}) >= 2 else []


def _escalation(task: str, e: dict, n: int) -> list[str]:
    curve = e.get("curve")
    if not curve:
        return []
    lines = [f"### Escalation policy (target accuracy {_pct(e.get('target_accuracy'))} on kept pages)", ""]
    if not escalation_informative(curve):
        low = min(r["threshold"] for r in curve)
        if not any(r["kept"] for r in curve):
            why = f"no page reaches even the lowest confidence threshold ({_num(low)})"
        else:
            why = (f"every threshold from {_num(low)} to {_num(max(r['threshold'] for r in curve))} keeps the same "
                   f"{curve[0]['kept']} of {n} pages ({_pct(curve[0]['accuracy_kept'])} correct): the confidences "
                   "do not separate pages")
        lines += [f"No escalation table: {why}, so there is no trade-off to show.", ""]
        if not e.get("recommended"):
            lines += ["**Recommendation:** escalate every page to the strong model.", ""]
            return lines
    else:
        lines += _table(["threshold", "kept", "coverage", "accuracy kept", "accuracy overall", "prompt tokens saved"],
                        [[_num(r["threshold"]), str(r["kept"]), _pct(r["coverage"]), _pct(r["accuracy_kept"]),
                          _pct(r["accuracy_overall"]), _pct(r["prompt_tokens_saved_share"])] for r in curve])
    rec = e.get("recommended")
    if rec:
        lines += [f"**Recommendation:** keep pages with confidence ≥ {_num(rec['threshold'])}: the small model "
                  f"answers {_pct(rec['coverage'])} of pages at {_pct(rec['accuracy_kept'])} accuracy, saving "
                  f"{_pct(rec['strong_calls_saved'])} of strong-model calls and "
                  f"{_pct(rec['prompt_tokens_saved_share'])} of their prompt tokens.", ""]
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
    return _cell(None if is_empty(value) else value, limit)


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
    lines += _table(
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
    return lines + _table(["slot", "reference → prediction", "count", "shops", "examples"], pair_rows)


def _failures(task: str, rows: list[JudgeRow], cfg: ReportConfig) -> list[str]:
    failed = [r for r in rows if r.task == task and not r.passed]
    if not failed or cfg.worst_failures == 0:
        return []
    order = {"hallucination": 0, "not_judged": 3, "omission": 1, "wrong": 2}
    failed.sort(key=lambda r: (not r.valid, order.get(r.outcome, 9), r.score, r.id))
    shown = failed[: cfg.worst_failures]
    lines = [f"### Worst failures ({len(shown)} of {len(failed)})", ""]
    lines += _table(["id", "slot", "outcome", "reference", "candidate", "note"],
                    [[f"`{r.id}`", r.slot, r.outcome, _cell(r.reference, cfg.max_value_chars),
                      _cell(r.candidate, cfg.max_value_chars), _cell(r.rationale or "", 80)]
                     for r in shown])
    return lines


def _regressions(task: str, rows: list[JudgeRow], base_rows: list[JudgeRow], cfg: ReportConfig) -> list[str]:
    before = {(r.id, r.slot): r for r in base_rows if r.task == task}
    regressed = [r for r in rows if r.task == task and not r.passed
                 and (r.id, r.slot) in before and before[(r.id, r.slot)].passed]
    lines = [f"### Regressions vs baseline: {len(regressed)}", ""]
    if regressed and cfg.regressions_shown:
        lines += _table(["id", "slot", "reference", "baseline", "now"],
                        [[f"`{r.id}`", r.slot, _cell(r.reference, cfg.max_value_chars),
                          _cell(before[(r.id, r.slot)].candidate, cfg.max_value_chars),
                          _cell(r.candidate, cfg.max_value_chars)] for r in regressed[: cfg.regressions_shown]])
    return lines


def write_report(judge_dir: Path, run_id: str, output: Path, baseline_id: str | None = None,
                 cfg: ReportConfig | None = None) -> Path:
    summary, rows = load_run(judge_dir, run_id)
    baseline = load_run(judge_dir, baseline_id) if baseline_id else None
    output.parent.mkdir(parents=True, exist_ok=True)
    charts = _charts(summary, output)
    text = render_report(summary, rows, cfg or ReportConfig(), charts, baseline)
    with atomic_write(output, "w") as fh:
        fh.write(text)
    return output
