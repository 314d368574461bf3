"""Clean split records -> token ids + labels, through the tokenizer's chat template.

    from scripts.training.data import build_dataset, load_split
    records = load_split(cfg.data, "train")
    dataset, stats = build_dataset(records, tokenizer, cfg.model.max_seq_length, cfg.data.truncation)

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
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from scripts.chat import encode_chat, prompt_messages
from scripts.config import TrainingDataSettings
from scripts.contracts import CleanRecord, read_jsonl

IGNORE_INDEX = -100


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


def build_dataset(records: Iterable[CleanRecord], tokenizer, max_seq_length: int, truncation: str):
    """A ``datasets.Dataset`` SFTTrainer takes as is (it keeps a ``labels`` column untouched)."""
    from datasets import Dataset

    rows, stats = build_examples(records, tokenizer, max_seq_length, truncation)
    return Dataset.from_list(rows), stats


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
