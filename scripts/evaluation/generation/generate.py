"""Candidates: the fine-tuned model's answers on a split, one `Candidate` line per example.

    fab eval.generate --split validation --config configs/eval.yaml [--limit N]

    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import generate_candidates
    summary = generate_candidates(load_config("configs/eval.yaml", EvalConfig), "validation")
    print(summary.path, summary.written, summary.valid_rate, summary.tokens_per_s)

Writes ``<output_dir>/<split>_candidates.jsonl`` (``scripts.contracts.Candidate``).

* Prompts are rendered by the tokenizer's chat template (``scripts.chat``: ``encode_chat`` of
  ``prompt_messages``, system prompt + prompt), as in training, so both see the same text.
* Per task, prompts are sorted by length and generated in batches with left
  padding; greedy unless ``decoding.greedy: false``; stops at ``<end_of_turn>``
  or ``<eos>``; ``max_new_tokens`` per task kind.
* Constrained answers are complete and schema-valid within ``max_new_tokens``
  (``scripts.evaluation.generation.closing``): near the budget decoding steers to the
  shortest valid completion; the slots it cut are listed in ``truncated_slots``
  and scored wrong. A budget below the shortest complete answer is a config error.
* Resumable: ids already in the file are skipped; each batch's lines are
  appended, flushed and fsynced, so a crash loses at most the batch in flight;
  a half-written last line (crash mid-write) is cut off on the next run.
* ``latency_s`` is the batch's generate wall time divided by its size (the
  amortised per-example cost at this batch size); ``output_tokens`` counts the
  generated tokens including the stop token.
* Confidence: ``label_probs`` is the softmax of the raw first-step logits over
  the labels' first tokens; ``slot_logprob`` the mean log-prob of the tokens
  overlapping each slot's value, taken from the *processed* scores (after the
  grammar mask, i.e. renormalised over what the grammar allows). Processed,
  because that is the distribution the token was actually chosen from: mass
  the raw model puts on forbidden continuations (prose, a 20th digit) says
  nothing about which allowed value is right. Read *before* the closing's own
  restriction (string bound, budget), so a token it forces shows the model's
  probability of it and a forced close lowers the slot's confidence.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from scripts.config import UserError
from scripts.contracts import Candidate, CleanRecord, Provenance, check_target_key_order, read_jsonl
from scripts.dataset.config import DatasetsConfig, TaskSpec
from scripts.evaluation.generation.config import EvalConfig
from scripts.model.loading import ResolvedModel, load_resolved, resolve_weights
from scripts.paths import ZERO_SHOT_DIR, candidates_file, check_split  # noqa: F401 (ZERO_SHOT_DIR: re-exported)
from scripts.serving.engines import engine_version, resolve_engine

ProgressFn = Callable[[int, int, int], None]  # (examples done, examples total, tokens generated)


@dataclass
class GenerateSummary:
    path: Path
    model: str
    constrained: bool
    written: int = 0
    skipped: int = 0
    valid: int = 0
    output_tokens: int = 0
    generate_s: float = 0.0
    repaired_partial_line: bool = False
    per_task: dict[str, int] = field(default_factory=dict)
    truncated: int = 0  # answers closed early at max_new_tokens / the string bound (slots marked)
    warnings: list[str] = field(default_factory=list)
    engine: str = "hf"
    engine_version: str | None = None
    provenance: Provenance | None = None  # what the model is, written into each candidate

    @property
    def valid_rate(self) -> float | None:
        return self.valid / self.written if self.written else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.output_tokens / self.generate_s if self.generate_s > 0 else None


# --- inputs ----------------------------------------------------------------


def candidates_path(cfg: EvalConfig, split: str) -> Path:
    """``<output_dir>/<split>_candidates.jsonl``; the zero-shot baseline's under ``<output_dir>/zero_shot/``."""
    output_dir = cfg.output_dir or cfg.workspace().candidates_dir
    return candidates_file(output_dir, split, zero_shot=cfg.model.zero_shot)


# --- model resolution and loading (shared with packaging and backfill) -----


def resolve_model(cfg: EvalConfig) -> ResolvedModel:
    settings = cfg.resolved().model
    return resolve_weights(settings.adapter, settings.runs_dir, base=settings.base, merged=settings.merged,
                           zero_shot=settings.zero_shot)


def load_model(cfg: EvalConfig, resolved: ResolvedModel):
    return load_resolved(resolved, cfg.model.dtype, cfg.model.attn_implementation)


# --- resumable output ------------------------------------------------------


def load_done(path: Path) -> tuple[list[Candidate], bool]:
    """Candidates already written; a half-written last line (crash mid-write) is cut off.

    Returns (candidates, repaired). A last line without its newline is dropped
    even if it parses: it is regenerated, which costs one example.
    """
    if not path.is_file():
        return [], False
    data = path.read_bytes()
    done: list[Candidate] = []
    good_end = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        is_last = good_end + len(line) == len(data)
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline")
            if line.strip():
                done.append(Candidate.model_validate_json(line))
        except ValueError:
            if not is_last:
                raise UserError(
                    f"{path}: line {number} is not a valid candidate; delete the file to start over"
                ) from None
            break
        good_end += len(line)
    repaired = good_end < len(data)
    if repaired:
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return done, repaired


# --- generation ------------------------------------------------------------


def generate_candidates(
    cfg: EvalConfig, split: str, limit: int | None = None, progress: ProgressFn | None = None
) -> GenerateSummary:
    """Generate the candidates of ``split`` not yet in the output file.

    ``limit`` takes the first examples of each task in turn (round-robin), so a
    short run still covers every task; a larger limit extends a smaller one.
    """
    check_split(split)
    cfg = cfg.resolved()
    datasets, data = cfg.data.datasets(), cfg.workspace().data
    source = data.split_file(split)
    if not source.is_file():
        raise UserError(
            f"split file {source} not found; "
            f"run `fab dataset.split --config {cfg.data.datasets_config}` first"
        )
    if limit is not None and limit <= 0:
        raise UserError("--limit must be a positive number")
    check_target_key_order(data.split_manifest, required=False)
    records = _round_robin_by_task(list(read_jsonl(source, CleanRecord)), limit)
    unknown = sorted({r.task for r in records} - set(datasets.tasks))
    if unknown:
        raise UserError(f"{source}: task(s) {unknown} not in {cfg.data.datasets_config}; add them to `tasks`")

    engine = resolve_engine(cfg.engine.name)
    resolved = resolve_model(cfg)
    out = candidates_path(cfg, split)
    done, repaired = load_done(out)
    summary = GenerateSummary(out, resolved.label, cfg.decoding.constrained, repaired_partial_line=repaired,
                              engine=engine, provenance=resolved.provenance())
    if repaired:
        summary.warnings.append(f"dropped a half-written last line of {out}")
    wanted = (resolved.label, cfg.decoding.constrained, engine)
    stale = {(c.model, c.constrained, c.engine) for c in done} - {wanted}
    if stale:
        model, constrained, other = sorted(stale)[0]
        raise UserError(
            f"{out} holds candidates of {model} (constrained={constrained}, engine {other}), not {resolved.label} "
            f"(constrained={cfg.decoding.constrained}, engine {engine}); move it away or set output_dir"
        )
    done_ids = {c.id for c in done}
    pending = [r for r in records if r.id not in done_ids]
    summary.skipped = len(records) - len(pending)
    if progress:
        progress(summary.skipped, len(records), 0)
    if not pending:
        return summary

    from scripts.serving.runners import open_runner

    # only vLLM sizes its KV cache by the longest sequence; HF needs no count. The tokenizer that
    # counts is the one the runner gets: Gemma's takes seconds to load.
    tokenizer, max_model_len = None, cfg.engine.max_model_len
    if engine == "vllm" and not max_model_len:
        from scripts.model.loading import load_tokenizer

        tokenizer = load_tokenizer(resolved.tokenizer_dir)
        max_model_len = _context_needed(cfg, datasets, tokenizer, pending)
    with open_runner(engine, resolved, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
                     settings=cfg.engine, max_model_len=max_model_len, tokenizer=tokenizer) as (runner, tokenizer):
        summary.engine_version = engine_version(engine)
        _generate_pending(cfg, datasets, runner, tokenizer, pending, out, summary, len(records), progress)
    return summary


def _context_needed(cfg: EvalConfig, datasets: DatasetsConfig, tokenizer, records: list[CleanRecord]) -> int:
    """The longest prompt plus its task's answer budget: what a vLLM engine must hold per sequence
    (its KV cache is sized by it; the model's own 131072 would reserve far more than eval needs)."""
    from scripts.chat import encode_chat, prompt_messages

    return max(len(encode_chat(tokenizer, prompt_messages(r)))
               + cfg.decoding.max_new_tokens_for(datasets.tasks[r.task].kind) for r in records)


def _round_robin_by_task(records: list[CleanRecord], limit: int | None) -> list[CleanRecord]:
    if limit is None or limit >= len(records):
        return records
    queues: dict[str, list[CleanRecord]] = {}
    for record in records:
        queues.setdefault(record.task, []).append(record)
    picked: list[CleanRecord] = []
    for depth in range(max(map(len, queues.values()))):
        picked += [queue[depth] for queue in queues.values() if depth < len(queue)]
    return picked[:limit]


def _generate_pending(cfg, datasets, runner, tokenizer, pending, out, summary, total, progress) -> None:
    from scripts.evaluation.generation.decoding import make_compiler

    compiler = make_compiler(tokenizer, runner.vocab) if cfg.decoding.constrained else None
    by_task: dict[str, list[CleanRecord]] = {}
    for record in pending:
        by_task.setdefault(record.task, []).append(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    cut: Counter[str] = Counter()  # answers that ran out of max_new_tokens before the grammar completed
    closed: Counter[str] = Counter()  # constrained answers with slots closed early (truncated_slots)
    closed_by: dict[str, Counter[str]] = {}  # per task: answers closed early per limit that fired
    with open(out, "ab") as fh:
        for task, records in by_task.items():
            spec = datasets.tasks[task]
            decoder, max_new = build_task_decoder(cfg, runner.vocab, tokenizer, spec, task, compiler)
            summary.warnings += decoder.warnings
            for candidates in generate_outputs(cfg, runner, tokenizer, decoder, spec, task, records, max_new,
                                               summary.model, summary.engine_version, summary.provenance):
                fh.write(b"".join(c.model_dump_json().encode() + b"\n" for c, _ in candidates))
                fh.flush()
                os.fsync(fh.fileno())
                for candidate, seconds in candidates:
                    cut[task] += not candidate.valid and candidate.output_tokens >= max_new
                    closed[task] += bool(candidate.truncated_slots)
                    summary.truncated += bool(candidate.truncated_slots)
                    summary.written += 1
                    summary.valid += candidate.valid
                    summary.output_tokens += candidate.output_tokens
                    summary.generate_s += seconds
                    counts[task] += 1
                if progress:
                    progress(summary.skipped + summary.written, total, summary.output_tokens)
            closed_by[task] = decoder.closed_by
    summary.per_task = dict(counts)
    for task, n in cut.items():
        if n:
            summary.warnings.append(
                f"{n} {task} answer(s) hit max_new_tokens before the end (unconstrained decoding cannot "
                f"close an answer): raise decoding.max_new_tokens"
            )
    for task, n in closed.items():
        if n:
            summary.warnings.append(closed_early_warning(task, n, closed_by.get(task, Counter()), cfg,
                                                         datasets.tasks[task].kind))


def closed_early_warning(task: str, n: int, by_limit: Counter, cfg: EvalConfig, kind: str) -> str:
    """Which limit closed how many of ``task``'s answers early, with its configured value."""
    from scripts.evaluation.generation.closing import BUDGET, MAX_CHARS, STRING_BOUND

    values = {BUDGET: f"{BUDGET}.{kind}={cfg.decoding.max_new_tokens_for(kind)}",
              STRING_BOUND: f"{STRING_BOUND}={cfg.schema_bounds.max_string_tokens}",
              MAX_CHARS: f"{MAX_CHARS} ({cfg.data.datasets_config})"}
    what = {BUDGET: "the token budget", STRING_BOUND: "the string bound", MAX_CHARS: "a slot's character bound"}
    fired = "; ".join(f"{by_limit[limit]} by {what[limit]} {values[limit]}"
                      for limit in (BUDGET, STRING_BOUND, MAX_CHARS) if by_limit[limit])
    return (f"{n} {task} answer(s) were closed early (valid; the cut slots are marked truncated and scored "
            f"wrong): {fired or 'limit not recorded'}")


def build_task_decoder(cfg: EvalConfig, model, tokenizer, spec: TaskSpec, task: str, compiler=None):
    """(TaskDecoder, max_new_tokens) of one task; build once per task (grammar compilation is the cost)."""
    from scripts.evaluation.generation.decoding import TaskDecoder

    decoder = TaskDecoder.build(
        tokenizer, model, spec, cfg.schema_bounds, constrained=cfg.decoding.constrained, compiler=compiler,
    )
    max_new = cfg.decoding.max_new_tokens_for(spec.kind)
    if decoder.min_new_tokens is not None and max_new < decoder.min_new_tokens:
        shortest = "its longest label" if spec.kind == "classification" else "all slots null"
        raise UserError(
            f"decoding.max_new_tokens.{spec.kind}={max_new} is below {decoder.min_new_tokens}, the fewest "
            f"tokens a complete {task} answer takes ({shortest}, then the stop token); raise it"
        )
    if decoder.min_new_tokens is None and spec.kind == "classification" \
            and max_new <= decoder.label_token_counts(tokenizer):
        raise UserError(
            f"decoding.max_new_tokens.classification={max_new} cannot fit the longest label of "
            f"{task} plus its stop token; raise it"
        )
    return decoder, max_new


def generate_outputs(
    cfg: EvalConfig, runner, tokenizer, decoder, spec: TaskSpec, task: str, items, max_new: int, model_label: str,
    version: str | None = None, provenance: Provenance | None = None,
) -> Iterator[list[tuple[Candidate, float]]]:
    """Answers for ``items`` of one task (anything with ``id``, ``system_prompt``, ``prompt``).

    Prompts are length-sorted (longest first: OOM shows early) and handed to the runner
    (``scripts.serving.runners``: hf or vllm) ``cfg.decoding.batch_size`` per call (vLLM:
    ``engine.requests_per_call``); yields each call's [(Candidate, seconds)]. Used by eval.generate
    and ops.backfill; ``provenance`` goes into each Candidate as is.
    """
    from scripts.chat import encode_chat, prompt_messages

    encoded = [(r, encode_chat(tokenizer, prompt_messages(r))) for r in items]
    encoded.sort(key=lambda pair: len(pair[1]), reverse=True)
    size = cfg.decoding.batch_size if runner.name == "hf" else cfg.engine.requests_per_call
    for start in range(0, len(encoded), size):
        batch = encoded[start : start + size]
        rows, elapsed = runner.run(decoder, spec, [ids for _, ids in batch], max_new=max_new,
                                   greedy=cfg.decoding.greedy)
        yield [(_candidate(cfg, tokenizer, decoder, spec, task, record, ids, row, elapsed / len(batch), model_label,
                           runner.name, version, provenance), elapsed / len(batch))
               for (record, ids), row in zip(batch, rows)]


def _candidate(cfg, tokenizer, decoder, spec: TaskSpec, task, record, ids, row, seconds, model_label, engine,
               version, provenance) -> Candidate:
    from scripts.evaluation.generation.decoding import slot_logprobs

    stops = set(decoder.stop_token_ids)
    generated = row.generated
    stop_at = next((i for i, t in enumerate(generated) if t in stops), None)
    content = generated if stop_at is None else generated[:stop_at]
    n_out = len(generated) if stop_at is None else stop_at + 1  # the stop token was generated too
    raw, ends = decoder.decode(content)
    parsed, valid = decoder.parse(raw)
    slot_conf = None
    if spec.kind == "extraction" and content:
        slot_conf = slot_logprobs(raw, ends, row.logprobs[: len(content)])
    truncated = decoder.truncated_at(raw, ends, row.refused) if valid else []
    if truncated:
        decoder.closed_by.update(row.limits)
    prompt_text = tokenizer.decode(ids, skip_special_tokens=False)
    return Candidate(
        id=record.id, task=task, kind=spec.kind,
        prompt_sha256=hashlib.sha256(prompt_text.encode()).hexdigest(),
        model=model_label, constrained=cfg.decoding.constrained, raw=raw, parsed=parsed, valid=valid,
        latency_s=round(seconds, 6), prompt_tokens=len(ids), output_tokens=n_out,
        label_probs=row.label_probs, slot_logprob=slot_conf, truncated_slots=truncated,
        engine=engine, engine_version=version, provenance=provenance,
    )
