"""`eval.judge`: score candidates against the split's references, then the LLM judge for what is left.

    from scripts.evaluation.judging.judge import run_judge
    run_dir, summary = run_judge(cfg, split="validation", max_cost=0.50)  # summary: a JudgeSummary
    summary.tasks["navpage_classifier"].metrics["accuracy"]

Deterministic scorers settle most slots (scoring.py). Slots configured `llm`
or left undecided go to the LLM judge through LiteLLM (llm_judge.py: async,
retried, cached so a rerun never pays twice, cost-guarded). Whatever was not
judged (no key, budget, judge error) is `not_judged` and counts as not passed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from scripts import paths
from scripts.config import UserError, mask_secrets
from scripts.contracts import (
    Acceptance, AcceptanceCheck, Candidate, CleanRecord, DomainStats, JudgeRow, JudgeRunStats, JudgeSummary, Latency,
    SlotStats, TaskSummary, atomic_write, check_target_key_order, read_jsonl, sha256_file,
)
from scripts.dataset.config import DatasetsConfig
from scripts.evaluation.judging import escalation as esc
from scripts.evaluation.judging.config import JudgeConfig
from scripts.evaluation.judging.llm_judge import JudgeCache, JudgeItem, JudgeResult, JudgeStats, LLMJudge
from scripts.evaluation.judging.scoring import (
    SlotScore, bootstrap_ci, classification_metrics, invalid_slot, is_empty, score_slot, truncated_slot,
)


# --- the run ------------------------------------------------------------------------------


def resolve_judge(cfg: JudgeConfig, judge_model: str | None = None) -> dict[str, Any]:
    """Model, base and key from flags/env (.env already loaded); the key is never returned in summaries."""
    return {
        "model": judge_model or os.environ.get("JUDGE_MODEL") or cfg.judge.model,
        "api_base": os.environ.get("LITELLM_API_BASE") or None,
        "api_key": os.environ.get("LITELLM_API_KEY") or None,
    }


def candidates_path(cfg: JudgeConfig, split: str) -> Path:
    return paths.candidates_file(cfg.resolved().candidates_dir, split)


def new_run_id(split: str, output_dir: Path, zero_shot: bool = False) -> str:
    """``<split>_<UTC time>`` (``<split>_zero_shot_<UTC time>`` for the baseline), not yet under ``output_dir``."""
    prefix = paths.judge_run_prefix(split, zero_shot)
    while True:
        run_id = f"{prefix}_{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
        if not paths.judge_run_dir(output_dir, run_id).exists():
            return run_id
        time.sleep(0.2)


def run_judge(cfg: JudgeConfig, split: str, max_cost: float | None = None, judge_model: str | None = None,
              run_id: str | None = None, progress: Callable[[int, int], None] | None = None,
              ) -> tuple[Path, JudgeSummary]:
    """Score and judge ``split``'s candidates into a new run folder; returns (the folder, its summary)."""
    paths.check_split(split)
    cfg = cfg.resolved()
    cand_path = candidates_path(cfg, split)
    if not cand_path.is_file():
        raise UserError(f"no candidates at {cand_path}: run fab eval.generate --split {split} first")
    ds, data = cfg.datasets(), cfg.workspace().data  # the split eval.generate read: same datasets config
    ref_path = data.split_file(split)
    if not ref_path.is_file():
        raise UserError(f"no references at {ref_path}: run fab dataset.split first")
    check_target_key_order(data.split_manifest, required=False)
    references = {r.id: r for r in read_jsonl(ref_path, CleanRecord)}
    try:
        candidates = list(read_jsonl(cand_path, Candidate))
    except ValidationError as exc:
        raise UserError(f"{cand_path}: a line does not match the Candidate contract ({exc.errors()[0]['msg']})")
    seen: set[str] = set()
    matched: list[tuple[Candidate, CleanRecord]] = []
    unmatched = 0
    for cand in candidates:
        if cand.id in seen:
            continue
        seen.add(cand.id)
        ref = references.get(cand.id)
        if ref is None:
            unmatched += 1
        else:
            matched.append((cand, ref))
    if not matched:
        raise UserError(f"no candidate in {cand_path} matches an id in {ref_path}")

    judge_info = resolve_judge(cfg, judge_model)
    rows, judge_stats = _run_llm(cfg, _score_all(cfg, ds, matched), judge_info, max_cost, progress)

    run_id = run_id or new_run_id(split, cfg.output_dir)
    run_dir = paths.judge_run_dir(cfg.output_dir, run_id)
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest = data.split_manifest
    summary = JudgeSummary(
        tasks=_summarise(cfg, ds, matched, rows),
        judge=judge_stats,
        run_id=run_id,
        split=split,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=sorted({c.model for c, _ in matched}),
        provenance=list(dict.fromkeys(c.provenance for c, _ in matched if c.provenance is not None)),
        constrained=sorted({c.constrained for c, _ in matched}),
        dataset={"schema_version": data.schema_version, "manifest": str(manifest),
                 "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None},
        candidates_file=str(cand_path),
        candidates_sha256=sha256_file(cand_path),
        n=len(matched),
        references_without_candidate=len(references) - len(matched),
        candidates_without_reference=unmatched,
        config=mask_secrets(cfg.model_dump(mode="json")),
    )
    with atomic_write(run_dir / paths.JUDGE_RESULTS, "w") as fh:
        for row in rows:
            fh.write(json.dumps(mask_secrets(row.model_dump(mode="json")), ensure_ascii=False, default=str) + "\n")
    with atomic_write(run_dir / paths.JUDGE_SUMMARY, "w") as fh:
        # exclude_unset: a field a task kind never sets (a classifier's slots) stays out of the file, as before
        fh.write(json.dumps(mask_secrets(summary.model_dump(mode="json", exclude_unset=True)), indent=2,
                            ensure_ascii=False, default=str) + "\n")
    return run_dir, summary


def _score_all(cfg: JudgeConfig, ds: DatasetsConfig, matched) -> list[JudgeRow]:
    """Every slot of every matched candidate, scored by the deterministic scorers; a row they cannot
    settle is ``undecided`` (the LLM judge's)."""
    rows: list[JudgeRow] = []
    for cand, ref in matched:
        spec = ds.tasks.get(ref.task)
        base = {"id": ref.id, "task": ref.task, "domain": ref.domain, "valid": cand.valid,
                "confidence": esc.confidence(cand), "judge": None, "cached": False}
        cut = set(cand.truncated_slots)
        if ref.kind == "classification":
            reference = ref.target.strip().upper()
            predicted = str(cand.parsed).strip().upper() if cand.valid and cand.parsed is not None else None
            truncated = cand.valid and bool(cut)
            rationale = ""
            if truncated:  # a label forced at the budget is no answer: the <invalid> column, never correct
                rationale = f"{truncated_slot().detail}: {predicted}"
                predicted = None
            ok = predicted == reference
            method = "invalid" if not cand.valid else "truncated" if truncated else "exact"
            rows.append(JudgeRow(**base, slot="label", reference=reference, candidate=predicted,
                                 score=1.0 if ok else 0.0, method=method, truncated=truncated,
                                 outcome="correct" if ok else "wrong", passed=ok, undecided=False,
                                 rationale=rationale))
            continue
        try:
            target = json.loads(ref.target)
        except ValueError:
            target = {}
        slot_types = (spec.slots if spec and spec.slots else {}) or {}
        slots = list(dict.fromkeys([*slot_types, *(target if isinstance(target, dict) else {})]))
        parsed = cand.parsed if cand.valid and isinstance(cand.parsed, dict) else None
        for slot in slots:
            reference = target.get(slot) if isinstance(target, dict) else None
            candidate = parsed.get(slot) if parsed is not None else None
            example_spec = (ref.slot_specs or {}).get(slot) if isinstance(ref.slot_specs, dict) else None
            rule = cfg.rule_for(ref.task, slot, slot_types.get(slot), example_spec)
            if parsed is None:
                s: SlotScore = invalid_slot()
            elif slot in cut:
                s = truncated_slot()
            else:
                s = score_slot(reference, candidate, rule)
            rows.append(JudgeRow(**base, slot=slot, reference=reference,
                                 truncated=parsed is not None and slot in cut,
                                 candidate=candidate if parsed is not None else cand.raw[:500],
                                 score=s.score, passed=s.passed, method=s.method, outcome=s.outcome,
                                 undecided=s.undecided, rationale=s.detail))
    return rows


def _run_llm(cfg: JudgeConfig, rows: list[JudgeRow], info: dict, max_cost: float | None,
             progress: Callable[[int, int], None] | None = None) -> tuple[list[JudgeRow], JudgeRunStats]:
    """The rows with the LLM judge's verdict on each undecided one (``method`` llm), and the judge's stats."""
    needs = [row for row in rows if row.undecided]
    disabled_reason = None
    stats = JudgeStats()
    not_judged = JudgeResult("not_judged", reason="not judged")
    verdicts = [not_judged] * len(needs)  # one per undecided row, in row order
    if needs and info["api_key"]:
        cache = JudgeCache(cfg.cache_path)
        try:
            judge = LLMJudge(cfg.judge, cache, info["model"], info["api_base"], info["api_key"], max_cost,
                             progress=progress)
            items = [JudgeItem(row.slot, row.reference, row.candidate) for row in needs]
            results = judge.run(items)
            verdicts = [results.get(judge.key(item), not_judged) for item in items]
            stats = judge.stats
        finally:
            cache.close()
    elif needs:
        disabled_reason = "no LITELLM_API_KEY configured: LLM-judged slots were NOT judged"
        verdicts = [JudgeResult("not_judged", reason=disabled_reason)] * len(needs)
    in_order = iter(verdicts)
    judged = [_judged(row, next(in_order)) if row.undecided else row for row in rows]
    not_judged_rows = sum(row.outcome == "not_judged" for row in judged if row.undecided)
    run_stats = JudgeRunStats(
        model=info["model"], api_base_set=bool(info["api_base"]), needed=len(needs), enabled=bool(info["api_key"]),
        max_cost_usd=max_cost if max_cost is not None else cfg.judge.max_cost_usd,
        **({"disabled_reason": disabled_reason} if disabled_reason else {}),  # absent unless disabled
        judged=len(needs) - not_judged_rows, not_judged=not_judged_rows, calls=stats.calls,
        requests=stats.requests, retries=stats.retries, cache_hits=stats.cache_hits,
        prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
        cost_usd=round(stats.cost_usd, 6), errors=stats.errors, error_examples=stats.error_examples,
        budget_stopped=stats.budget_stopped, wall_s=stats.wall_s,
    )
    return judged, run_stats


def _judged(row: JudgeRow, result: JudgeResult) -> JudgeRow:
    """``row`` (undecided) with the LLM judge's verdict, or marked not_judged (never a pass)."""
    if result.status == "not_judged":
        return row.model_copy(update={"method": "llm", "outcome": "not_judged", "passed": False,
                                      "judge": "not_judged", "cached": False,
                                      "rationale": result.reason or "not judged"})
    ok = result.verdict.verdict == "PASS"
    return row.model_copy(update={"method": "llm", "passed": ok, "outcome": "correct" if ok else "wrong",
                                  "judge": result.status, "cached": result.cached,
                                  "rationale": result.verdict.rationale})


# --- summary ------------------------------------------------------------------------------------


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _latency(cands: list[Candidate]) -> Latency:
    lat = sorted(c.latency_s for c in cands)
    total = sum(lat)
    if not lat:
        return Latency()
    return Latency(
        mean_s=round(statistics.fmean(lat), 4),
        p50_s=round(lat[len(lat) // 2], 4),
        p95_s=round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 4),
        output_tokens_per_s=round(sum(c.output_tokens for c in cands) / total, 2) if total else None,
        examples_per_s=round(len(lat) / total, 3) if total else None,
        prompt_tokens_mean=round(statistics.fmean(c.prompt_tokens for c in cands), 1),
    )


def _summarise(cfg: JudgeConfig, ds: DatasetsConfig, matched, rows: list[JudgeRow]) -> dict[str, TaskSummary]:
    by_task: dict[str, list[tuple[Candidate, CleanRecord]]] = defaultdict(list)
    for cand, ref in matched:
        by_task[ref.task].append((cand, ref))
    rows_by_task: dict[str, list[JudgeRow]] = defaultdict(list)
    for row in rows:
        rows_by_task[row.task].append(row)
    return {task: _task_summary(cfg, ds, task, pairs, rows_by_task[task]) for task, pairs in by_task.items()}


def _task_summary(cfg: JudgeConfig, ds: DatasetsConfig, task: str, pairs, trows: list[JudgeRow]) -> TaskSummary:
    cands = [c for c, _ in pairs]
    kind = pairs[0][1].kind
    json_validity = _rate(sum(c.valid for c in cands), len(cands))
    if kind == "classification":
        spec = ds.tasks.get(task)
        labels = spec.labels if spec and spec.labels else ["YES", "NO"]
        refs = [r.reference for r in trows]
        preds = [r.candidate for r in trows]
        m = classification_metrics(refs, preds, labels)
        m["ci95"] = bootstrap_ci(refs, preds, labels, resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed)
        correct_by_id = {r.id: r.passed for r in trows}
        metrics = {"accuracy": m["accuracy"], "precision_yes": m["precision"], "recall_yes": m["recall"],
                   "f1_yes": m["f1"], "kappa": m["kappa"], "json_validity": json_validity}
        by_kind = {"classification": m}
    else:
        total = len(trows)
        ref_empty = sum(is_empty(r.reference) for r in trows)
        correct_by_id: dict[str, bool] = {}
        for r in trows:
            correct_by_id[r.id] = correct_by_id.get(r.id, True) and r.passed
        metrics = {
            "slot_accuracy": _rate(sum(r.passed for r in trows), total),
            "example_accuracy": _rate(sum(correct_by_id.values()), len(correct_by_id)),
            "hallucination_rate": _rate(sum(r.outcome == "hallucination" for r in trows), ref_empty),  # of empty refs
            "omission_rate": _rate(sum(r.outcome == "omission" for r in trows), total - ref_empty),  # of filled refs
            "not_judged": sum(r.outcome == "not_judged" for r in trows),
            "json_validity": json_validity,
        }
        by_kind = {"slots": _slot_table(trows), "reference_empty_slots": ref_empty}
    points = [esc.EscalationPoint(esc.confidence(c), correct_by_id.get(c.id, False), c.prompt_tokens) for c in cands]
    return TaskSummary(
        kind=kind, n=len(pairs), json_validity=json_validity,
        truncated_answers=sum(bool(c.valid and c.truncated_slots) for c in cands), latency=_latency(cands),
        metrics=metrics, per_domain=_per_domain(trows, kind), **by_kind,
        escalation=esc.escalation_curve(points, cfg.escalation.thresholds,
                                        cfg.escalation.target_accuracy.get(task, 0.95), cfg.escalation.min_kept),
        acceptance=_acceptance(cfg, task, metrics),
    )


def _slot_table(trows: list[JudgeRow]) -> dict[str, SlotStats]:
    table: dict[str, SlotStats] = {}
    for slot in dict.fromkeys(r.slot for r in trows):
        srows = [r for r in trows if r.slot == slot]
        n = len(srows)
        outcomes = Counter(r.outcome for r in srows)
        passed = sum(r.passed for r in srows)
        ref_empty = sum(is_empty(r.reference) for r in srows)
        table[slot] = SlotStats(
            n=n, passed=passed, accuracy=_rate(passed, n),
            accuracy_decided=_rate(passed, n - outcomes["not_judged"]), not_judged=outcomes["not_judged"],
            hallucinations=outcomes["hallucination"], omissions=outcomes["omission"],
            truncated=sum(r.truncated for r in srows),
            hallucination_rate=_rate(outcomes["hallucination"], ref_empty),
            omission_rate=_rate(outcomes["omission"], n - ref_empty),
            reference_empty=ref_empty,
            methods=dict(Counter(r.method for r in srows)),
            llm_judged=sum(r.judge in ("judged", "cached") for r in srows),
        )
    return table


def _per_domain(trows: list[JudgeRow], kind: str) -> dict[str, DomainStats]:
    out: dict[str, DomainStats] = {}
    for domain in sorted({r.domain for r in trows}):
        drows = [r for r in trows if r.domain == domain]
        ids = {r.id for r in drows}
        example_ok = {i: all(r.passed for r in drows if r.id == i) for i in ids}
        extraction = {"slot_accuracy": _rate(sum(r.passed for r in drows), len(drows))} if kind == "extraction" else {}
        out[domain] = DomainStats(n=len(ids), accuracy=_rate(sum(example_ok.values()), len(ids)), **extraction)
    return out


def _acceptance(cfg: JudgeConfig, task: str, metrics: dict[str, int | float | None]) -> Acceptance:
    rule = cfg.acceptance.get(task)
    checks = []
    if rule:
        for op, bounds in ((">=", rule.min), ("<=", rule.max)):
            for name, bound in bounds.items():
                value = metrics.get(name)
                ok = value is not None and (value >= bound if op == ">=" else value <= bound)
                checks.append(AcceptanceCheck(metric=name, op=op, threshold=bound, value=value, ok=ok))
    verdict = "NO THRESHOLDS" if not checks else ("PASS" if all(c.ok for c in checks) else "FAIL")
    return Acceptance(verdict=verdict, checks=checks)
