"""Evaluation stage: generate candidates, judge them, report for a PR.

    fab eval.generate --split validation --config configs/eval.yaml [--limit N] [--engine hf|vllm]
    fab eval.generate --split test --run-id 20261101T120000Z
    fab eval.judge --split validation --config configs/judge_slots.yaml [--max-cost 0.50]
    fab eval.report --run-id validation_YYYYmmddTHHMMSSZ --output reports/latest_eval.md [--baseline RUN]
"""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fab_tasks._common import console, task, user_errors
from scripts import paths
from scripts.config import UserError, load_config, with_overrides

DEFAULT_EVAL_CONFIG = "configs/eval.yaml"


@task(default=True, help={
    "split": "split to generate for: train, validation or test (default validation)",
    "config": f"eval config (default {DEFAULT_EVAL_CONFIG})",
    "limit": "only N examples, taken from each task in turn; 0 = all (a rerun with a larger N resumes)",
    "run_id": "evaluate models/runs/<RUN_ID> (its adapter/, or model/ for a full fine-tune) instead of "
              "the config's model.adapter",
    "adapter": "PEFT adapter dir or run dir (LoRA or full fine-tune), overriding the config's model.adapter",
    "base": "the base model alone, no adapter (zero-shot baseline) -> <output_dir>/zero_shot/; "
            "compare with `fab eval.judge --base` then `fab eval.report --baseline`",
    "engine": "auto (vllm when installed, else hf) | hf (transformers generate) | vllm: overrides engine.name; "
              "both apply the same template, grammar, closing and greedy decoding",
})
@user_errors
def generate(c, split="validation", config=DEFAULT_EVAL_CONFIG, limit=0, run_id="", adapter="", base=False,
             engine=""):
    """Grammar-constrained generation of the fine-tuned model's answers -> <split>_candidates.jsonl.

    With --base the base model answers the same prompts under the same decoding (zero-shot), written
    to <output_dir>/zero_shot/<split>_candidates.jsonl: the baseline every fine-tune is measured against.
    """
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import generate_candidates

    if run_id and adapter:
        raise UserError("pass --run-id or --adapter, not both")
    cfg = load_config(config, EvalConfig, {"model.adapter": adapter or None, "model.zero_shot": True if base else None,
                                           "engine.name": engine or None})
    if run_id:
        cfg = with_overrides(cfg, {"model.adapter": str(paths.run_dir(cfg.resolved().model.runs_dir, run_id))},
                             config)
    started = time.perf_counter()
    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("generate", total=None, tps="-")

        def on_progress(done: int, total: int, tokens: int) -> None:
            tps = tokens / max(time.perf_counter() - started, 1e-9)
            bar.update(job, completed=done, total=total, tps=f"{tps:.1f}" if tokens else "-")

        s = generate_candidates(cfg, split, int(limit) or None, on_progress)
    for warning in s.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    valid = f"{s.valid_rate:.1%}" if s.valid_rate is not None else "n/a"
    tps = f"{s.tokens_per_s:.1f}" if s.tokens_per_s is not None else "n/a"
    console.print(f"{s.written} written, {s.skipped} skipped (already done); valid {valid}; "
                  f"{tps} tokens/s; model {s.model}, constrained={s.constrained}, engine {s.engine} "
                  f"{s.engine_version or ''}".rstrip())
    console.print(f"wrote {s.path}")


DEFAULT_JUDGE_CONFIG = "configs/judge_slots.yaml"


@task(help={
    "split": "split whose candidates to score (default validation)",
    "config": f"slot scorers, judge, escalation and acceptance config (default {DEFAULT_JUDGE_CONFIG})",
    "max_cost": "USD budget for judge calls; stops before it would be exceeded, the rest is not_judged",
    "judge_model": "LiteLLM model id of the judge (default: JUDGE_MODEL or the config's judge.model)",
    "base": "score the zero-shot candidates of `eval.generate --base` (run id <split>_zero_shot_<time>)",
})
@user_errors
def judge(c, split="validation", config=DEFAULT_JUDGE_CONFIG, max_cost=None, judge_model="", base=False):
    """Score candidates per slot (exact/numeric/fuzzy/set), LLM-judge the rest -> reports/judge/<run_id>/.

    With --base it scores the zero-shot candidates of `eval.generate --base` into
    reports/judge/<split>_zero_shot_<UTC time>/, the run to pass as `eval.report --baseline`.
    """
    from scripts.evaluation.judging.config import JudgeConfig
    from scripts.evaluation.judging.judge import new_run_id, run_judge

    cfg = load_config(config, JudgeConfig, {"judge.max_cost_usd": max_cost}).resolved()
    run_id = None
    if base:
        cfg = with_overrides(cfg, {"candidates_dir": str(paths.candidates_dir(cfg.candidates_dir, zero_shot=True))},
                             config)
        run_id = new_run_id(split, cfg.output_dir, zero_shot=True)
    with Progress(TextColumn("LLM judge"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("judge", total=None)
        run_dir, summary = run_judge(cfg, split, cfg.judge.max_cost_usd, judge_model or None, run_id=run_id,
                                     progress=lambda done, total: bar.update(job, completed=done, total=total))
    for task_name, t in summary.tasks.items():
        headline = t.metrics.get("accuracy", t.metrics.get("slot_accuracy"))
        console.print(f"{task_name}: n {t.n}, {t.acceptance.verdict}, accuracy "
                      f"{headline if headline is None else f'{headline:.1%}'}, valid {t.json_validity:.1%}")
    j = summary.judge
    note = f" [yellow]{j.disabled_reason}[/]" if j.disabled_reason else ""
    console.print(f"judge: {j.calls} calls, {j.cache_hits} cached, {j.not_judged} not judged, "
                  f"${j.cost_usd:.4f}{note}")
    console.print(f"wrote {run_dir}/ ({paths.JUDGE_RESULTS}, {paths.JUDGE_SUMMARY})")
    console.print(f"run id: {run_dir.name}")


@task(help={
    "run_id": "judge run to report, e.g. validation_20261125T120000Z (a folder of reports/judge/)",
    "output": "Markdown file to write; PNG charts go beside it (default: the workspace's reports/latest_eval.md)",
    "baseline": "another judge run id: adds delta columns and the regressed examples",
    "config": f"judge config with the report settings and output_dir (default {DEFAULT_JUDGE_CONFIG})",
})
@user_errors
def report(c, run_id="", output="", baseline="", config=DEFAULT_JUDGE_CONFIG):
    """Markdown report of a judge run for a PR: verdicts, metrics with CIs, slots, escalation, failures."""
    from pathlib import Path

    from scripts.config import UserError
    from scripts.evaluation.judging.config import JudgeConfig
    from scripts.evaluation.reporting.report import write_report

    if not run_id:
        raise UserError("--run-id is required (the folder name under reports/judge/, printed by eval.judge)")
    cfg = load_config(config, JudgeConfig).resolved()
    output = Path(output) if output else cfg.workspace().eval_report
    path = write_report(cfg.output_dir, run_id, output, baseline or None, cfg.report)
    console.print(f"wrote {path}")
