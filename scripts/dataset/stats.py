"""Token lengths, truncation, label balance, slot fill rates, domains, leakage, and slot constraints.

    fab dataset.stats --config configs/datasets.yaml [--tokenizer PATH]

Counts use the configured tokenizer; when it cannot be loaded (offline, no
token) the report says so and falls back to an approximate count, labelled as
such. Two checks go beyond the usual: for extraction, whether the reference
values still appear in the prompt once it is truncated to `max_seq_length`
(an answer cut away is a label the model cannot learn), and near-duplicate
prompts shared across splits (leakage that flatters the test score). And, per
extraction slot, the constraints the training targets suggest (YAML to paste) and
the training targets that break the configured ones (``scripts.dataset.constraints``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson

from scripts.config import UserError
from scripts.contracts import CleanRecord, StatsReport, TaskSplitStats, TokenCounter, atomic_write, read_jsonl
from scripts.dataset.config import DatasetsConfig
from scripts.dataset.constraints import ConstraintAccumulator, proposals_yaml
from scripts.dataset.split import SPLITS
from scripts.model.loading import load_tokenizer
from scripts.paths import STATS as STATS_FILE, ProcessedData  # noqa: F401 (STATS_FILE re-exported)

# Chat-template tokens around one single-turn example (<bos>, turn markers, role names).
TEMPLATE_OVERHEAD_TOKENS = 12
_APPROX_PIECE = re.compile(r"\w+|[^\w\s]")
_FINGERPRINT_STRIP = re.compile(r"[\d\s]+")


def load_token_counter(name_or_path: str) -> tuple[Callable[[list[str]], list[list[int]]], TokenCounter]:
    """Return a function giving, per text, the end char offset of each token."""
    try:
        tokenizer = load_tokenizer(name_or_path)
    except Exception as exc:  # offline, gated, missing: all mean "use the approximation"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        note = f"tokenizer {name_or_path!r} unavailable ({reason}); APPROXIMATE counts (word/punct pieces)"
        return _approx_offsets, TokenCounter(source="approximate", exact=False, note=note)

    def offsets(texts: list[str]) -> list[list[int]]:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        return [[end for _, end in row] for row in enc["offset_mapping"]]

    return offsets, TokenCounter(source=name_or_path, exact=True, note=f"tokenizer {name_or_path}")


def _approx_offsets(texts: list[str]) -> list[list[int]]:
    return [[m.end() for m in _APPROX_PIECE.finditer(text)] for text in texts]


def compute_stats(
    cfg: DatasetsConfig,
    schema_version: str | None = None,
    tokenizer: str | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> StatsReport:
    data = cfg.data_paths(schema_version)
    sources = _sources(data, cfg)
    offsets_of, counter = load_token_counter(tokenizer or cfg.stats.tokenizer)
    limit = cfg.stats.max_seq_length

    per_split: dict[str, dict[str, TaskSplitStats]] = {}
    top_domains: dict[str, list[tuple[str, int]]] = {}
    fingerprints: dict[str, dict[str, str]] = defaultdict(dict)  # fingerprint -> split -> id
    learn_from = "train" if "train" in sources else "all"
    constraints = {task: ConstraintAccumulator(spec, cfg.stats) for task, spec in cfg.tasks.items()
                   if spec.kind == "extraction"}
    for split, paths in sources.items():
        acc: dict[str, _TaskAccumulator] = {}
        domains: Counter[str] = Counter()
        for batch in _batches(_records(paths), 256):
            prompt_offsets = offsets_of([r.system_prompt + "\n" + r.prompt for r in batch])
            target_tokens = [len(o) for o in offsets_of([r.target for r in batch])]
            for record, offs, n_target in zip(batch, prompt_offsets, target_tokens):
                acc.setdefault(record.task, _TaskAccumulator(record.kind, limit)).add(
                    record, offs, n_target
                )
                domains[record.domain] += 1
                if split == learn_from and record.task in constraints:
                    constraints[record.task].add(record, orjson.loads(record.target))
                fingerprints[_fingerprint(record.prompt)].setdefault(split, record.id)
            if on_rows:
                on_rows(len(batch))
        per_split[split] = {task: a.result() for task, a in sorted(acc.items())}
        top_domains[split] = domains.most_common(cfg.stats.top_domains)

    shared = [ids for ids in fingerprints.values() if len(ids) > 1]
    report = StatsReport(
        schema_version=data.schema_version,
        tokenizer=counter,
        max_seq_length=limit,
        per_split=per_split,
        top_domains=top_domains,
        near_duplicates_across_splits=len(shared),
        near_duplicate_examples=[sorted(f"{s}:{i}" for s, i in ids.items()) for ids in shared[:5]],
        constraints_from=learn_from,
    )
    for task, acc in constraints.items():
        report.constraint_proposals[task] = proposals = acc.proposals()
        report.constraint_proposals_yaml[task] = proposals_yaml(task, cfg.tasks[task], proposals)
        if acc.violations:
            report.constraint_violations[task] = acc.violations
    with atomic_write(data.stats) as fh:
        fh.write(orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n")
    return report


def _sources(data: ProcessedData, cfg: DatasetsConfig) -> dict[str, list[Path]]:
    if all(data.split_file(s).is_file() for s in SPLITS):
        return {s: [data.split_file(s)] for s in SPLITS}
    clean = [data.clean_file(t) for t in cfg.tasks if data.clean_file(t).is_file()]
    if not clean:
        raise UserError(f"no clean data in {data.root}; run `fab dataset.clean` first")
    return {"all": clean}


def _records(paths: list[Path]) -> Iterable[CleanRecord]:
    for path in paths:
        yield from read_jsonl(path, CleanRecord)


def _batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fingerprint(prompt: str) -> str:
    """Same page modulo case, whitespace and numbers (prices, ids, dates)."""
    return hashlib.sha1(_FINGERPRINT_STRIP.sub("", prompt.casefold()).encode()).hexdigest()


def _reference_strings(target: str) -> list[str]:
    """String values (and list items) of an extraction target; numbers are formatted per locale."""
    values: list[str] = []
    for value in orjson.loads(target).values():
        items = value if isinstance(value, list) else [value]
        values += [v for v in items if isinstance(v, str) and v.strip()]
    return values


class _TaskAccumulator:
    def __init__(self, kind: str, limit: int):
        self.kind, self.limit = kind, limit
        self.lengths: list[int] = []
        self.target_lengths: list[int] = []
        self.over = 0
        self.labels: Counter[str] = Counter()
        self.filled: Counter[str] = Counter()
        self.slots: set[str] = set()
        self.in_prompt = self.in_truncated = self.with_refs = 0

    def add(self, record: CleanRecord, offsets: list[int], n_target: int) -> None:
        n_prompt = len(offsets)
        self.lengths.append(n_prompt)
        self.target_lengths.append(n_target)
        budget = self.limit - n_target - TEMPLATE_OVERHEAD_TOKENS
        self.over += n_prompt > budget
        if self.kind == "classification":
            self.labels[record.target] += 1
            return
        values = orjson.loads(record.target)
        self.slots.update(values)
        self.filled.update(k for k, v in values.items() if v not in (None, "", []))
        refs = _reference_strings(record.target)
        if refs:
            self.with_refs += 1
            full = record.system_prompt + "\n" + record.prompt
            cut = full if n_prompt <= budget else full[: offsets[max(budget, 0) - 1] if budget > 0 else 0]
            self.in_prompt += all(r in full for r in refs)
            self.in_truncated += all(r in cut for r in refs)

    def result(self) -> TaskSplitStats:
        lengths = np.array(self.lengths)
        pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)} | {"max": int(lengths.max())}
        stats = TaskSplitStats(
            n=len(self.lengths),
            prompt_tokens=pct,
            prompt_tokens_mean=round(float(lengths.mean()), 1),
            target_tokens_mean=round(float(np.mean(self.target_lengths)), 1),
            over_max_seq_length=self.over,
        )
        if self.kind == "classification":
            stats.labels = dict(sorted(self.labels.items()))
        else:
            n = len(self.lengths)
            stats.slot_fill_rate = {s: round(self.filled[s] / n, 4) for s in sorted(self.slots)}
            if self.with_refs:
                stats.answer_in_prompt = round(self.in_prompt / self.with_refs, 4)
                stats.answer_in_truncated_prompt = round(self.in_truncated / self.with_refs, 4)
        return stats
