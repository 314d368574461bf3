import json

import pytest

from scripts.config import REPO_ROOT, UserError, load_config
from scripts.contracts import StatsReport, TaskSplitStats, TokenCounter
from scripts.ops.config import OpsConfig
from scripts.ops.projection import project_tokens, render_markdown, write_projection


def stats_file(tmp_path):
    """A `dataset.stats` report (the StatsReport contract) with hand-picked means."""
    def task(n: int, prompt: float, target: float) -> TaskSplitStats:
        return TaskSplitStats(n=n, prompt_tokens={"p50": int(prompt), "max": int(prompt)}, prompt_tokens_mean=prompt,
                              target_tokens_mean=target, over_max_seq_length=0)

    report = StatsReport(
        schema_version="v1", tokenizer=TokenCounter(source="tok", exact=True, note="tokenizer tok"),
        max_seq_length=131072, top_domains={}, near_duplicates_across_splits=0, near_duplicate_examples=[],
        per_split={"train": {"navpage_classifier": task(3, 1000.0, 1.0), "productpage_extractor": task(1, 3000.0, 100.0)},
                   "test": {"navpage_classifier": task(1, 2000.0, 1.0)}},
    )
    path = tmp_path / "stats.json"
    path.write_text(report.model_dump_json(indent=2))
    return path


def config(tmp_path, **overrides):
    return load_config(REPO_ROOT / "configs/ops.yaml", OpsConfig, {
        "stats_file": str(stats_file(tmp_path)), "output_dir": str(tmp_path / "ops"),
        "volumes_per_day": {"navpage_classifier": 1000, "productpage_extractor": 100},
        "strong_model.usd_per_1m_input": 1.0, "strong_model.usd_per_1m_output": 10.0,
        "small_model.escalation_rate": {"navpage_classifier": 0.1, "productpage_extractor": 0.5},
        "judge.sample_rate": 0.1, "judge.overhead_tokens": 100, "judge.output_tokens": 10,
        "judge.usd_per_1m_input": 1.0, "judge.usd_per_1m_output": 10.0, **overrides})


def test_projection_matches_hand_computed_numbers(tmp_path):
    p = project_tokens(config(tmp_path))
    nav, prod = p.tasks
    # nav: mean prompt (3*1000 + 2000)/4 = 1250, answer 1 -> 1251 tokens/page
    assert nav.prompt_tokens_per_page == 1250.0 and nav.strong_today_tokens == 1_251_000
    assert nav.strong_today_usd == round(1000 * (1250 * 1 + 1 * 10) / 1e6, 2)
    assert nav.escalated_tokens == 125_100
    # judge: 100 pages x (100 overhead + 2 x 1 answer) in, 10 out
    assert nav.judge_tokens == 100 * 102 + 100 * 10
    assert prod.strong_today_tokens == 310_000 and prod.escalated_tokens == 155_000
    assert p.today_paid_tokens == 1_561_000
    assert p.after_paid_tokens == 125_100 + 11_200 + 155_000 + (10 * 300 + 10 * 10)
    assert p.headroom_after == 10_000_000 - p.after_paid_tokens and not p.over_budget


def test_budget_and_outputs(tmp_path):
    p = project_tokens(config(tmp_path, budget_tokens_per_day=100_000))
    assert p.over_budget and p.headroom_after < 0
    json_path, md_path = write_projection(p, tmp_path / "ops")
    assert json.loads(json_path.read_text())["after_paid_tokens"] == p.after_paid_tokens
    md = md_path.read_text()
    assert "OVER BUDGET" in md and "| navpage_classifier | 1,000 | 1,251 |" in md
    assert md == render_markdown(p)


def test_missing_stats_and_unknown_task_are_user_errors(tmp_path):
    cfg = config(tmp_path)
    cfg.volumes_per_day["blog_summary"] = 5
    with pytest.raises(UserError, match="no token counts for task.*blog_summary"):
        project_tokens(cfg)
    cfg.stats_file = tmp_path / "nope.json"
    with pytest.raises(UserError, match="run `fab dataset.stats` first"):
        project_tokens(cfg)


def test_a_stats_file_off_the_contract_is_one_line(tmp_path):
    cfg = config(tmp_path)
    cfg.stats_file.write_text(json.dumps({"per_split": {}}))  # hand-written, not by dataset.stats
    with pytest.raises(UserError, match=r"stats.json does not match the stats contract .*rerun `fab dataset.stats`$"):
        project_tokens(cfg)


def test_the_shipped_ops_config_reads_the_stats_the_default_chain_writes():
    """`fab ops.project-tokens` after `dataset.clean`/`split`/`stats` with the shipped configs finds its stats."""
    from scripts.dataset.config import DatasetsConfig

    ops = load_config(REPO_ROOT / "configs/ops.yaml", OpsConfig)
    datasets = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    assert ops.resolved().stats_file == datasets.data_paths().stats
