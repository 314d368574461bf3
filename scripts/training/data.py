"""Clean split records -> token ids + labels, through the tokenizer's chat template.

    from scripts.training.data import build_dataset, load_split
    records = load_split(cfg.data, "train")
    dataset, stats = build_dataset(records, tokenizer, cfg.model.max_seq_length, cfg.data.truncation)
    dataset, stats = build_dataset(..., pack_tokens=cfg.packing.max_tokens)  # packed rows; stats.packing

Each example is rendered once by the chat template (``scripts.chat.encode_chat``:
exactly one ``<bos>``) as system + user prompt -> assistant target. Labels are
-100 everywhere except the answer tokens and the ``<end_of_turn>`` that closes
them; the template's newline after ``<end_of_turn>`` is not part of the
sequence (generation stops before it). TRL's own ``completion_only_loss``
was checked and rejected here: with Gemma's template it also trains that
trailing ``"\n"``. SFTTrainer uses a ``labels`` column as is, so both backends
(hf and unsloth) train on exactly these labels.

Examples longer than ``max_seq_length``: ``drop`` skips them (counted);
``truncate_prompt_left`` cuts the oldest tokens of the *user prompt*, keeping
``<bos>``, the system prompt, the turn markers and the whole answer.

Packing (``pack_rows``, ``packing.enabled``): the encoded examples are packed
best-fit decreasing into rows of at most ``packing.max_tokens`` tokens, each
row carrying ``seq_lengths`` (its examples' lengths, in order). TRL's
padding-free collator turns them into ``position_ids`` restarting at 0 per
example and sends no ``attention_mask``; transformers 5.17 reads the restarts
(``masking_utils.find_packed_sequence_indices``) and masks every example from
the others under sdpa and eager, and flash_attention_2 cuts the row into
``cu_seqlens`` from the same position ids. Each example's first label is -100
(its ``<bos>``), so no loss term predicts one example from another. An
example longer than the budget is a row of its own, never cut.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from scripts.chat import encode_chat, prompt_messages
from scripts.contracts import CleanRecord, read_jsonl
from scripts.training.config import TrainingDataSettings

IGNORE_INDEX = -100


class PackStats(BaseModel):
    max_tokens: int  # packing.max_tokens, the budget per row
    rows: int = 0  # packed rows = micro-batches per epoch
    examples: int = 0
    tokens: int = 0
    alone: int = 0  # examples longer than max_tokens, each a row of its own
    examples_per_row: float = 0.0
    fill: float = 0.0  # tokens / (rows x max_tokens), over the rows within the budget
    longest_row: int = 0  # tokens of the longest packed row: one micro-batch's length for the memory plan
    most_answer_tokens: int = 0  # label tokens of the row with the most: the loss tile's rows


class EncodeStats(BaseModel):
    examples_in: int = 0
    examples_kept: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    longest_tokens: int = 0
    longest_id: str | None = None
    tokens: int = 0
    answer_tokens: int = 0
    longest_answer_tokens: int = 0  # label tokens of the longest answer kept: the loss tile's rows
    packing: PackStats | None = None  # with packing.enabled: how the kept examples were packed


def split_path(data: TrainingDataSettings, split: str) -> Path:
    return data.data_paths().split_file(split)


def load_split(data: TrainingDataSettings, split: str) -> list[CleanRecord]:
    return list(read_jsonl(split_path(data, split), CleanRecord))


def encode_example(tokenizer, record: CleanRecord) -> tuple[list[int], list[int], int, int]:
    """``(input_ids, labels, head_len, tail_len)``; prompt tokens in ``[head_len, len(prompt) - tail_len)``
    are the user's text, the only part ``truncate_prompt_left`` may cut."""
    prompt = prompt_messages(record)
    prompt_ids = encode_chat(tokenizer, prompt, add_generation_prompt=True)
    full_ids = encode_chat(
        tokenizer, prompt + [{"role": "assistant", "content": record.target}], add_generation_prompt=False
    )
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            f"{record.id}: the chat template renders the prompt differently with and without the answer; "
            "training and generation would see different contexts"
        )
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    completion = full_ids[len(prompt_ids):]
    if end_of_turn not in completion:
        raise ValueError(f"{record.id}: the chat template does not close the answer with <end_of_turn>")
    answer = completion[: completion.index(end_of_turn) + 1]  # answer + <end_of_turn>, not the "\n" after
    input_ids = prompt_ids + answer
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer

    empty = encode_chat(tokenizer, [prompt[0], {"role": "user", "content": ""}], add_generation_prompt=True)
    head = _common_prefix(empty, prompt_ids)
    tail = _common_prefix(empty[::-1], prompt_ids[::-1])
    tail = min(tail, len(prompt_ids) - head)
    return input_ids, labels, head, tail


def build_examples(
    records: Iterable[CleanRecord], tokenizer, max_seq_length: int, truncation: str
) -> tuple[list[dict], EncodeStats]:
    """Encoded ``{"input_ids", "labels"}`` rows within ``max_seq_length``, plus what happened to the rest."""
    stats = EncodeStats()
    rows = []
    for record in records:
        stats.examples_in += 1
        input_ids, labels, head, tail = encode_example(tokenizer, record)
        if len(input_ids) > stats.longest_tokens:
            stats.longest_tokens, stats.longest_id = len(input_ids), record.id
        overflow = len(input_ids) - max_seq_length
        if overflow > 0:
            prompt_len = labels.count(IGNORE_INDEX)
            cuttable = prompt_len - tail - head
            if truncation == "drop" or overflow > cuttable:
                stats.dropped_too_long += 1
                continue
            input_ids = input_ids[:head] + input_ids[head + overflow:]
            labels = labels[:head] + labels[head + overflow:]
            stats.truncated += 1
        stats.examples_kept += 1
        stats.tokens += len(input_ids)
        answer = sum(label != IGNORE_INDEX for label in labels)
        stats.answer_tokens += answer
        stats.longest_answer_tokens = max(stats.longest_answer_tokens, answer)
        rows.append({"input_ids": input_ids, "labels": labels})
    return rows, stats


def pack_rows(rows: list[dict], max_tokens: int) -> tuple[list[dict], PackStats]:
    """Best-fit decreasing: longest example first, each into the row with the least room that still
    holds it (ties: the earliest row), else a new row; an example over ``max_tokens`` is a row of its
    own. Deterministic (equal lengths keep the input order). Each row: ``input_ids``, ``labels``
    (every example's first label -100, so no loss term crosses a boundary) and ``seq_lengths``."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    bins: list[list[int]] = []  # indices into rows, per packed row
    open_rows: list[tuple[int, int]] = []  # (room left, bin index), sorted: best fit by bisection
    for i in order:
        n = len(rows[i]["input_ids"])
        at = bisect.bisect_left(open_rows, (n, -1))
        if n > max_tokens or at == len(open_rows):
            bins.append([i])
            if n < max_tokens:
                bisect.insort(open_rows, (max_tokens - n, len(bins) - 1))
            continue
        room, b = open_rows.pop(at)
        bins[b].append(i)
        if room > n:
            bisect.insort(open_rows, (room - n, b))
    packed, stats = [], PackStats(max_tokens=max_tokens)
    for members in bins:
        input_ids, labels, lengths = [], [], []
        for i in members:
            ids, lab = rows[i]["input_ids"], rows[i]["labels"]
            input_ids += ids
            labels += [IGNORE_INDEX] + lab[1:]
            lengths.append(len(ids))
        packed.append({"input_ids": input_ids, "labels": labels, "seq_lengths": lengths})
        stats.alone += lengths[0] > max_tokens
        stats.tokens += len(input_ids)
        stats.longest_row = max(stats.longest_row, len(input_ids))
        stats.most_answer_tokens = max(stats.most_answer_tokens, sum(x != IGNORE_INDEX for x in labels))
    stats.rows, stats.examples = len(packed), len(rows)
    within = [len(p["input_ids"]) for p in packed if len(p["input_ids"]) <= max_tokens]
    stats.examples_per_row = round(len(rows) / max(len(packed), 1), 2)
    stats.fill = round(sum(within) / (len(within) * max_tokens), 3) if within else 0.0
    return packed, stats


def build_dataset(records: Iterable[CleanRecord], tokenizer, max_seq_length: int, truncation: str,
                  pack_tokens: int | None = None):
    """A ``datasets.Dataset`` SFTTrainer takes as is (it keeps a ``labels`` column untouched) and the
    stats; with ``pack_tokens`` its rows are the examples packed into rows of at most that many tokens
    (``pack_rows``; ``stats.packing`` says how)."""
    from datasets import Dataset

    rows, stats = build_examples(records, tokenizer, max_seq_length, truncation)
    if pack_tokens is not None:
        rows, stats.packing = pack_rows(rows, pack_tokens)
    return Dataset.from_list(rows), stats


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
