"""Daily token and cost projection: strong model today vs fine-tuned model tomorrow.

    fab ops.project-tokens --config configs/ops.yaml [--judge-run RUN] [--fail-over-budget]

Per task, tokens per page are the mean prompt (system + user) and answer
tokens from `dataset.stats`. Paid tokens after the switch are the pages
escalated to the strong model plus the judge's monitoring sample; the small
model's own tokens are listed but cost only what `small_model` says.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from scripts.config import UserError
from scripts.contracts import StatsReport, atomic_write
from scripts.ops.config import OpsConfig

PROJECTION_JSON = "token_projection.json"
PROJECTION_MD = "token_projection.md"


class TaskProjection(BaseModel):
    task: str
    pages_per_day: int
    prompt_tokens_per_page: float
    answer_tokens_per_page: float
    escalation_rate: float
    strong_today_tokens: int
    strong_today_usd: float
    small_tokens: int
    small_usd: float
    escalated_tokens: int
    escalated_usd: float
    judge_tokens: int
    judge_usd: float


class Projection(BaseModel):
    budget_tokens_per_day: int
    tokens_source: str
    escalation_source: str
    tasks: list[TaskProjection]
    today_paid_tokens: int
    today_usd: float
    after_paid_tokens: int
    after_usd: float
    headroom_today: int
    headroom_after: int

    @property
    def over_budget(self) -> bool:
        return self.headroom_after < 0


def project_tokens(cfg: OpsConfig, escalation: dict[str, float] | None = None) -> Projection:
    cfg = cfg.resolved()
    per_task = _tokens_per_page(cfg.stats_file)
    rates = escalation or cfg.small_model.escalation_rate
    missing = sorted(set(cfg.volumes_per_day) - set(per_task))
    if missing:
        raise UserError(f"{cfg.stats_file} has no token counts for task(s) {', '.join(missing)}")
    tasks = [
        _project_task(cfg, task, volume, *per_task[task], rates.get(task, 1.0))
        for task, volume in sorted(cfg.volumes_per_day.items())
    ]
    today = sum(t.strong_today_tokens for t in tasks)
    after = sum(t.escalated_tokens + t.judge_tokens for t in tasks)
    return Projection(
        budget_tokens_per_day=cfg.budget_tokens_per_day,
        tokens_source=str(cfg.stats_file),
        escalation_source="eval.judge recommendation" if escalation else "configs/ops.yaml",
        tasks=tasks,
        today_paid_tokens=today,
        today_usd=round(sum(t.strong_today_usd for t in tasks), 2),
        after_paid_tokens=after,
        after_usd=round(sum(t.escalated_usd + t.judge_usd + t.small_usd for t in tasks), 2),
        headroom_today=cfg.budget_tokens_per_day - today,
        headroom_after=cfg.budget_tokens_per_day - after,
    )


def _tokens_per_page(stats_file: Path) -> dict[str, tuple[float, float]]:
    """Mean prompt and answer tokens per task, weighted over all splits."""
    if not stats_file.is_file():
        raise UserError(f"{stats_file} not found; run `fab dataset.stats` first")
    try:
        stats = StatsReport.model_validate_json(stats_file.read_bytes())
    except ValidationError as exc:
        raise UserError(f"{stats_file} does not match the stats contract ({exc.errors()[0]['msg']}); "
                        "rerun `fab dataset.stats`") from exc
    sums: dict[str, list[float]] = {}
    for tasks in stats.per_split.values():
        for task, s in tasks.items():
            acc = sums.setdefault(task, [0.0, 0.0, 0.0])
            acc[0] += s.n
            acc[1] += s.prompt_tokens_mean * s.n
            acc[2] += s.target_tokens_mean * s.n
    return {task: (p / n, a / n) for task, (n, p, a) in sums.items() if n}


def _project_task(cfg: OpsConfig, task: str, volume: int, prompt: float, answer: float, rate: float):
    strong, judge = cfg.strong_model, cfg.judge

    def strong_usd(pages: float) -> float:
        return pages * (prompt * strong.usd_per_1m_input + answer * strong.usd_per_1m_output) / 1e6

    judged = volume * judge.sample_rate
    judge_in = judged * (judge.overhead_tokens + 2 * answer)
    judge_out = judged * judge.output_tokens
    return TaskProjection(
        task=task,
        pages_per_day=volume,
        prompt_tokens_per_page=round(prompt, 1),
        answer_tokens_per_page=round(answer, 1),
        escalation_rate=rate,
        strong_today_tokens=round(volume * (prompt + answer)),
        strong_today_usd=round(strong_usd(volume), 2),
        small_tokens=round(volume * (prompt + answer)),
        small_usd=round(volume * (prompt + answer) * cfg.small_model.usd_per_1m_tokens / 1e6, 2),
        escalated_tokens=round(volume * rate * (prompt + answer)),
        escalated_usd=round(strong_usd(volume * rate), 2),
        judge_tokens=round(judge_in + judge_out),
        judge_usd=round((judge_in * judge.usd_per_1m_input + judge_out * judge.usd_per_1m_output) / 1e6, 2),
    )


def write_projection(projection: Projection, output_dir: Path) -> tuple[Path, Path]:
    json_path, md_path = output_dir / PROJECTION_JSON, output_dir / PROJECTION_MD
    with atomic_write(json_path, "w") as fh:
        fh.write(projection.model_dump_json(indent=2) + "\n")
    with atomic_write(md_path, "w") as fh:
        fh.write(render_markdown(projection))
    return json_path, md_path


def render_markdown(p: Projection) -> str:
    lines = [
        "# Daily token projection",
        "",
        f"Budget: {p.budget_tokens_per_day:,} paid tokens/day. Tokens per page from `{p.tokens_source}`; "
        f"escalation rates from {p.escalation_source}.",
        "",
        "| task | pages/day | tokens/page | strong today | escalated | judge | small model | escalation |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in p.tasks:
        lines.append(
            f"| {t.task} | {t.pages_per_day:,} | {t.prompt_tokens_per_page + t.answer_tokens_per_page:,.0f} | "
            f"{t.strong_today_tokens:,} (${t.strong_today_usd:,.2f}) | {t.escalated_tokens:,} "
            f"(${t.escalated_usd:,.2f}) | {t.judge_tokens:,} (${t.judge_usd:,.2f}) | {t.small_tokens:,} | "
            f"{t.escalation_rate:.0%} |"
        )
    verdict = "OVER BUDGET" if p.over_budget else "within budget"
    lines += [
        "",
        f"- Today (strong model on every page): **{p.today_paid_tokens:,}** paid tokens/day, "
        f"${p.today_usd:,.2f}/day, headroom {p.headroom_today:,}.",
        f"- After the switch (escalations + judge sample): **{p.after_paid_tokens:,}** paid tokens/day, "
        f"${p.after_usd:,.2f}/day, headroom {p.headroom_after:,} — {verdict}.",
        "",
    ]
    return "\n".join(lines)
