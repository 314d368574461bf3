"""Dataset stage: sample -> clean -> split -> stats.

    fab dataset.sample --rows 2000
    fab dataset.clean --schema-version v2
    fab dataset.split --config configs/datasets.yaml
    fab dataset.stats --config configs/datasets.yaml
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fab_tasks._common import console, task, user_errors
from scripts.config import UserError, dataset_db_path, load_config
from scripts.dataset.config import DatasetsConfig

DEFAULT_CONFIG = "configs/datasets.yaml"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )


@task(help={
    "rows": "number of examples to write (default 2000)",
    "seed": "random seed; the same seed gives the same table",
    "output": "DuckDB file to write (default: DATASET_DB_PATH or the workspace's data/raw/dataset.duckdb)",
    "dirty_rate": "share of deliberately bad rows, to exercise the rejects path (default 0.02)",
    "config": f"dataset config naming the workspace (default {DEFAULT_CONFIG})",
})
@user_errors
def sample(c, rows=2000, seed=0, output="", dirty_rate=0.02, config=DEFAULT_CONFIG):
    """Write a realistic sample `examples` table (50 shops, 7 locales, nav + product pages)."""
    from scripts.sample_data import generate_sample

    if rows <= 0:
        raise UserError("--rows must be a positive number")
    if not 0 <= float(dirty_rate) < 1:
        raise UserError("--dirty-rate must be in [0, 1)")
    if output:
        path = Path(output)
    else:  # the config only says where the workspace is: DATASET_DB_PATH needs none
        path = dataset_db_path(None if os.environ.get("DATASET_DB_PATH") else
                               load_config(config, DatasetsConfig).workspace())
    with _progress() as bar:
        job = bar.add_task("generating", total=int(rows))
        summary = generate_sample(
            path, rows=int(rows), seed=int(seed), dirty_rate=float(dirty_rate),
            progress=lambda n: bar.advance(job, n),
        )
    tasks = ", ".join(f"{task or '(empty)'} {n}" for task, n in summary.tasks.items())
    console.print(f"wrote {summary.rows} rows ({tasks}; {summary.dirty} deliberately bad) to {path}")


@task(help={
    "schema_version": "output sub-folder of data/processed (default: the config's schema_version, v2)",
    "config": f"dataset config with the task registry (default {DEFAULT_CONFIG})",
    "db": "source DuckDB (default: DATASET_DB_PATH or the workspace's data/raw/dataset.duckdb)",
})
@user_errors
def clean(c, schema_version="", config=DEFAULT_CONFIG, db=""):
    """Validate and normalise raw exemplars into per-task JSONL; bad rows go to rejects.jsonl."""
    from scripts.dataset.clean import clean_dataset

    cfg = load_config(config, DatasetsConfig)
    schema_version = schema_version or cfg.schema_version
    db_path = Path(db) if db else dataset_db_path(cfg.workspace())
    with _progress() as bar:
        job = bar.add_task("cleaning", total=None)
        manifest = clean_dataset(db_path, cfg, schema_version, on_rows=lambda n: bar.advance(job, n))
    data = cfg.data_paths(schema_version)
    per_task = ", ".join(f"{t} {n}" for t, n in manifest.clean_by_task.items())
    reasons = ", ".join(f"{r} {n}" for r, n in manifest.rejected_by_reason.items()) or "none"
    console.print(f"{manifest.rows_in} rows in: {manifest.rows_clean} clean ({per_task}), "
                  f"{manifest.rows_rejected} rejected ({reasons})")
    console.print(f"wrote {data.clean_file('<task>')}, {data.rejects}, {data.clean_manifest}")


@task(kinds={"seed": int}, help={
    "config": f"dataset config: split ratios and seed (default {DEFAULT_CONFIG})",
    "schema_version": "override the config's schema_version",
    "seed": "override the config's split seed",
})
@user_errors
def split(c, config=DEFAULT_CONFIG, schema_version="", seed=None):
    """Split clean data into train/validation/test: no domain in two splits, stratified by task+label."""
    from scripts.dataset.split import split_dataset

    overrides = {"split.seed": seed} if seed is not None else {}
    cfg = load_config(config, DatasetsConfig, overrides)
    manifest = split_dataset(cfg, schema_version or None)
    for warning in manifest.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    counts = ", ".join(
        f"{s} {n} ({len(manifest.domains[s])} domains)" for s, n in manifest.counts.items()
    )
    data = cfg.data_paths(schema_version or None)
    console.print(f"wrote {counts} to {data.splits_dir}/ (+ {data.split_manifest.name})")


@task(help={
    "config": f"dataset config: tokenizer, max_seq_length (default {DEFAULT_CONFIG})",
    "tokenizer": "local tokenizer dir or HF id, overriding the config",
    "schema_version": "override the config's schema_version",
})
@user_errors
def stats(c, config=DEFAULT_CONFIG, tokenizer="", schema_version=""):
    """Token lengths, truncation, labels, slot fill, domains, duplicates, and slot constraints to paste.

    Slot constraints are proposed from the training targets (YAML for configs/datasets.yaml, with the
    counts behind each), and training targets breaking the configured ones are flagged with ids.
    """
    from scripts.dataset.stats import compute_stats

    cfg = load_config(config, DatasetsConfig)
    with _progress() as bar:
        job = bar.add_task("tokenising", total=None)
        report = compute_stats(cfg, schema_version or None, tokenizer or None,
                               on_rows=lambda n: bar.advance(job, n))
    style = "green" if report.tokenizer.exact else "yellow"
    console.print(f"[{style}]{report.tokenizer.note}[/]")
    console.print(*render_stats_tables(report))
    if report.near_duplicates_across_splits:
        console.print(f"[yellow]warning:[/] {report.near_duplicates_across_splits} near-duplicate "
                      f"prompt(s) shared across splits, e.g. {report.near_duplicate_examples[0]}")
    for split, domains in report.top_domains.items():
        console.print(f"top domains {split}: " + ", ".join(f"{d} {n}" for d, n in domains))
    for task, text in report.constraint_proposals_yaml.items():
        console.print(f"slot constraints the {report.constraints_from} targets of {task} suggest:")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    for task, slots in report.constraint_violations.items():
        for slot, seen in slots.items():
            console.print(f"[yellow]warning:[/] {seen.count} {report.constraints_from} target(s) of {task} break "
                          f"the configured `{slot}` constraint ({seen.first}), e.g. {', '.join(seen.example_ids)}")
    console.print(f"wrote {cfg.data_paths(schema_version or None).stats}")


def render_stats_tables(report):
    from rich.table import Table

    kind = "exact" if report.tokenizer.exact else "APPROXIMATE"
    tokens = Table(title=f"prompt tokens ({kind}); over = longer than {report.max_seq_length}")
    quality = Table(title="labels, slot fill (lowest 3), answer still in the truncated prompt")
    for column in ("split", "task", "n", "p50", "p90", "p99", "max", "over"):
        tokens.add_column(column, justify="left" if column in {"split", "task"} else "right")
    for column in ("split", "task", "labels / slot fill", "answer kept"):
        quality.add_column(column)
    for split, tasks in report.per_split.items():
        for task_name, s in tasks.items():
            p = s.prompt_tokens
            tokens.add_row(split, task_name, str(s.n), str(p["p50"]), str(p["p90"]), str(p["p99"]),
                           str(p["max"]), str(s.over_max_seq_length))
            if s.labels is not None:
                detail, kept = " ".join(f"{k}:{v}" for k, v in s.labels.items()), ""
            else:
                low = sorted((s.slot_fill_rate or {}).items(), key=lambda kv: kv[1])[:3]
                detail = " ".join(f"{k}:{v:.0%}" for k, v in low)
                kept = "" if s.answer_in_prompt is None else (
                    f"{s.answer_in_truncated_prompt:.0%} (untruncated {s.answer_in_prompt:.0%})")
            quality.add_row(split, task_name, detail, kept)
    return tokens, quality
