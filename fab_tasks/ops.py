"""Operations: what the switch costs per day, and batch inference over a table of pages.

    fab ops.project_tokens --config configs/ops.yaml [--fail-over-budget]
"""

from __future__ import annotations

from invoke import task
from invoke.exceptions import Exit

from fab_tasks._common import console, user_errors
from scripts.config import load_config

DEFAULT_CONFIG = "configs/ops.yaml"


@task(help={
    "config": f"volumes, prices, judge sampling (default {DEFAULT_CONFIG})",
    "fail_over_budget": "exit 1 when paid tokens/day after the switch exceed the budget",
})
@user_errors
def project_tokens(c, config=DEFAULT_CONFIG, fail_over_budget=False):
    """Project tokens and cost per day: strong model today vs fine-tuned model + escalation + judge."""
    from rich.table import Table

    from scripts.ops.projection import OpsConfig, project_tokens as project, write_projection

    cfg = load_config(config, OpsConfig)
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
