"""Clean JSONL -> train/validation/test, grouped by domain, stratified by task and label.

    fab dataset.split --config configs/datasets.yaml

No domain appears in two splits (a site seen in training would flatter the
test score). Domains are assigned greedily, biggest first with a seeded
jitter, to the split that keeps every (task, label) stratum closest to the
configured ratios. Same seed + same clean files -> byte-identical outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import orjson

from scripts.config import UserError, config_snapshot
from scripts.contracts import (
    CleanManifest,
    SplitManifest,
    atomic_write,
    check_target_key_order,
    file_entry,
    sha256_file,
    write_model_json,
)
from scripts.dataset.config import DatasetsConfig
from scripts.paths import SPLITS, ProcessedData, split_file_name


def split_dataset(cfg: DatasetsConfig, schema_version: str | None = None) -> SplitManifest:
    data = cfg.data_paths(schema_version)
    clean_manifest = _checked_clean_manifest(data)
    task_files = [data.clean_file(task) for task in cfg.tasks if clean_manifest.clean_by_task.get(task)]
    if not task_files:
        raise UserError(f"no clean examples in {data.root}; check {data.rejects}")

    rows = _load_keys(task_files)
    groups = _group_strata(rows)
    assignment = _assign_groups(groups, cfg.split.ratios, cfg.split.seed)

    split_of_id = {row_id: assignment[group] for row_id, group, _ in rows}
    counts, by_task, by_label, warnings = _tally(rows, split_of_id, cfg.split.ratios)
    empty = [s for s in SPLITS if cfg.split.ratios[s] > 0 and counts[s] == 0]
    if empty:
        raise UserError(
            f"split(s) {', '.join(empty)} would be empty: only {len(groups)} domain group(s) "
            f"for {len(rows)} examples; add data from more sites or set their ratio to 0"
        )

    _write_splits(task_files, split_of_id, data)
    domains = defaultdict(set)
    for group, split in assignment.items():
        domains[split].add(group)
    manifest = SplitManifest(
        schema_version=clean_manifest.schema_version,
        target_key_order=clean_manifest.target_key_order,
        seed=cfg.split.seed,
        ratios=dict(cfg.split.ratios),
        config=config_snapshot(cfg),
        clean_manifest_sha256=sha256_file(data.clean_manifest),
        counts={s: counts[s] for s in SPLITS},
        counts_by_task={s: dict(sorted(by_task[s].items())) for s in SPLITS},
        counts_by_label={s: dict(sorted(by_label[s].items())) for s in SPLITS},
        domains={s: sorted(domains[s]) for s in SPLITS},
        warnings=warnings,
        files={split_file_name(s): file_entry(data.split_file(s), counts[s]) for s in SPLITS},
    )
    write_model_json(data.split_manifest, manifest)
    return manifest


def _checked_clean_manifest(data: ProcessedData) -> CleanManifest:
    path = data.clean_manifest
    if not path.is_file():
        raise UserError(f"{path} not found; run `fab dataset.clean --schema-version {data.schema_version}` first")
    check_target_key_order(path)  # clean files of an older canonical form are not split into this one
    manifest = CleanManifest.model_validate_json(path.read_text())
    for name, entry in manifest.files.items():
        if not (data.root / name).is_file() or sha256_file(data.root / name) != entry.sha256:
            raise UserError(f"{data.root / name} changed since dataset.clean; rerun `fab dataset.clean`")
    return manifest


def _load_keys(task_files: list[Path]) -> list[tuple[str, str, str]]:
    """(id, group, stratum) per clean row; the group is the domain (or the id when unknown)."""
    files = ", ".join(f"'{p}'" for p in task_files)
    query = f"""
        SELECT id,
               CASE WHEN domain = 'unknown' THEN 'id:' || id ELSE domain END AS grp,
               task || '/' || CASE WHEN kind = 'classification' THEN target ELSE '*' END AS stratum
        FROM read_json([{files}], format='newline_delimited',
                       columns={{id: 'VARCHAR', task: 'VARCHAR', kind: 'VARCHAR',
                                 target: 'VARCHAR', domain: 'VARCHAR'}})
    """
    return duckdb.sql(query).fetchall()


def _group_strata(rows: list[tuple[str, str, str]]) -> dict[str, Counter[str]]:
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for _, group, stratum in rows:
        groups[group][stratum] += 1
    return groups


def _assign_groups(
    groups: dict[str, Counter[str]], ratios: dict[str, float], seed: int
) -> dict[str, str]:
    totals: Counter[str] = Counter()
    for strata in groups.values():
        totals.update(strata)
    active = [s for s in SPLITS if ratios[s] > 0]

    def order(group: str) -> tuple[float, str]:
        jitter = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return (-sum(groups[group].values()) * (0.6 + 0.8 * jitter), group)

    assigned: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    assignment: dict[str, str] = {}
    for group in sorted(groups, key=order):
        def cost(candidate: str) -> float:
            total = 0.0
            for split in SPLITS:
                extra = groups[group] if split == candidate else Counter()
                for stratum, n in totals.items():
                    share = (assigned[split][stratum] + extra[stratum]) / n
                    total += (share - ratios[split]) ** 2
            return total

        best = min(active, key=lambda s: (cost(s), SPLITS.index(s)))
        assigned[best].update(groups[group])
        assignment[group] = best
    return assignment


def _tally(rows, split_of_id, ratios):
    counts: Counter[str] = Counter()
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    by_label: dict[str, Counter[str]] = defaultdict(Counter)
    for row_id, _, stratum in rows:
        split = split_of_id[row_id]
        counts[split] += 1
        by_task[split][stratum.split("/")[0]] += 1
        by_label[split][stratum] += 1
    strata = {stratum for _, _, stratum in rows}
    warnings = [
        f"split {split} has no examples of {stratum}"
        for split in SPLITS
        if ratios[split] > 0 and counts[split]
        for stratum in sorted(strata)
        if not by_label[split][stratum]
    ]
    return counts, by_task, by_label, warnings


def _write_splits(task_files: list[Path], split_of_id: dict[str, str], data: ProcessedData) -> None:
    with contextlib.ExitStack() as stack:
        outputs = {s: stack.enter_context(atomic_write(data.split_file(s))) for s in SPLITS}
        for path in task_files:
            with open(path, "rb") as fh:
                for line in fh:
                    outputs[split_of_id[orjson.loads(line)["id"]]].write(line)
