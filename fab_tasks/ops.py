"""Operations: what the switch costs per day, and batch inference over a table of pages.

    fab ops.project-tokens --config configs/ops.yaml [--fail-over-budget]
    fab ops.backfill --source data/pages.duckdb --table pages --model models/export/NAME [--limit N]
"""

from __future__ import annotations

from contextlib import contextmanager

from invoke.exceptions import Exit

from fab_tasks._common import console, task, user_errors
from scripts.config import load_config

DEFAULT_CONFIG = "configs/ops.yaml"
DEFAULT_EVAL_CONFIG = "configs/eval.yaml"


@task(help={
    "config": f"volumes, prices, judge sampling (default {DEFAULT_CONFIG})",
    "fail_over_budget": "exit 1 when paid tokens/day after the switch exceed the budget",
})
@user_errors
def project_tokens(c, config=DEFAULT_CONFIG, fail_over_budget=False):
    """Project tokens and cost per day: strong model today vs fine-tuned model + escalation + judge."""
    from rich.table import Table

    from scripts.ops.config import OpsConfig
    from scripts.ops.projection import project_tokens as project, write_projection

    cfg = load_config(config, OpsConfig).resolved()
    projection = project(cfg)
    table = Table(title=f"paid tokens/day vs budget {projection.budget_tokens_per_day:,}")
    for column in ("task", "pages/day", "strong today", "escalated", "judge", "escalation"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for t in projection.tasks:
        table.add_row(t.task, f"{t.pages_per_day:,}", f"{t.strong_today_tokens:,}", f"{t.escalated_tokens:,}",
                      f"{t.judge_tokens:,}", f"{t.escalation_rate:.0%}")
    console.print(table)
    console.print(f"today {projection.today_paid_tokens:,} tokens/day (${projection.today_usd:,.2f}); "
                  f"after {projection.after_paid_tokens:,} (${projection.after_usd:,.2f}), "
                  f"headroom {projection.headroom_after:,}")
    json_path, md_path = write_projection(projection, cfg.output_dir)
    console.print(f"wrote {json_path} and {md_path}")
    if fail_over_budget and projection.over_budget:
        raise Exit(f"error: {projection.after_paid_tokens:,} paid tokens/day exceed the budget of "
                   f"{projection.budget_tokens_per_day:,}", code=1)


@task(help={
    "source": "DuckDB file holding the pages; predictions are written into it",
    "table": "table of pages: id, task, prompt_text (optional system_prompt) (default pages)",
    "model": "merged export dir (config.json) or a training run / adapter dir",
    "limit": "only the first N pages by id; 0 = all (a rerun with a larger N goes on)",
    "task": "only pages of this task slug",
    "batch_size": "pages per generate call and per committed transaction (default: eval config's)",
    "config": f"eval config: decoding, schema bounds, task registry, dtype (default {DEFAULT_EVAL_CONFIG})",
    "engine": "auto (vllm when installed, else hf) | hf | vllm: overrides the eval config's engine.name",
})
@user_errors
def backfill(c, source="", table="pages", model="", limit=0, task="", batch_size=0,
             config=DEFAULT_EVAL_CONFIG, engine=""):
    """Crash-safe batch inference over a DuckDB table of pages -> its `predictions` table (rerun resumes)."""
    from pathlib import Path

    from scripts.config import UserError
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.ops.backfill import backfill as run_backfill

    missing = [flag for flag, value in (("--source DB", source), ("--model PATH", model)) if not value]
    if missing:
        raise UserError(f"pass {' and '.join(missing)} (DB: the DuckDB file of pages; PATH: a merged export "
                        "or a run/adapter dir)")
    cfg = load_config(config, EvalConfig, {"decoding.batch_size": int(batch_size) or None,
                                           "engine.name": engine or None})
    with _progress("backfill") as on_progress:
        s = run_backfill(Path(source), table, model, cfg, limit=int(limit) or None, task=task or None,
                         progress=on_progress)
    for warning in s.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(s.headline())
    console.print(f"wrote table predictions in {s.source}")


@contextmanager
def _progress(label: str):
    """A rich bar on a terminal; in logs a plain `committed N/M` line: first batch, every 10 s, last."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    last = [0.0]
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task(label, total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)
            now = time.monotonic()
            if not console.is_terminal and done and (done == total or last[0] == 0.0 or now - last[0] >= 10):
                last[0] = now
                print(f"committed {done}/{total}", flush=True)

        yield on_progress
