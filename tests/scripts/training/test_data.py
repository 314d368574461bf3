"""Tokenised training examples: one <bos>, loss on exactly the answer and its <end_of_turn>."""

import pytest
from transformers import AutoTokenizer

from scripts.chat import encode_chat, prompt_messages
from scripts.contracts import CleanRecord
from scripts.paths import SCHEMA_VERSION
from scripts.training.config import TrainingDataSettings
from scripts.training.data import IGNORE_INDEX, build_examples, encode_example, load_split


@pytest.fixture(scope="module")
def tok(tiny_root):
    return AutoTokenizer.from_pretrained(tiny_root / "tiny-gemma3")


@pytest.fixture(scope="module")
def records(tiny_root):
    return load_split(TrainingDataSettings(processed_dir=tiny_root / "processed"), "train")


def _trained_text(tok, ids, labels):
    return tok.decode([t for t, label in zip(ids, labels) if label != IGNORE_INDEX], skip_special_tokens=False)


def test_label_mask_trains_exactly_answer_and_end_of_turn(tok, records):
    extraction = next(r for r in records if r.kind == "extraction")
    classification = next(r for r in records if r.kind == "classification")
    for record in (extraction, classification):
        ids, labels, _, _ = encode_example(tok, record)
        assert _trained_text(tok, ids, labels) == record.target + "<end_of_turn>"
        # the trained tokens are one contiguous block at the very end, after the model-turn header
        first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        assert all(label != IGNORE_INDEX for label in labels[first:])
        assert labels[first:] == ids[first:]
        assert tok.decode(ids[:first]).endswith("<start_of_turn>model\n")
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        # the untrained part is exactly what generation is prompted with
        assert ids[:first] == encode_chat(tok, prompt_messages(record))
        assert record.system_prompt.strip()[:40] in tok.decode(ids[:first])


def _record(prompt, target="YES"):
    return CleanRecord(id="x1", task="navpage_classifier", kind="classification", system_prompt="Answer YES or NO.",
                       prompt=prompt, target=target, domain="shop.example", schema_version=SCHEMA_VERSION,
                       prompt_chars=len(prompt))


def test_too_long_examples_are_dropped_and_counted(tok):
    short, long = _record("<li>Mixer</li>"), _record("<li>Mixer Toaster Lampe Uhr</li> " * 40)
    n_short = len(encode_example(tok, short)[0])
    rows, stats = build_examples([short, long, short], tok, max_seq_length=n_short + 5, truncation="drop")
    assert len(rows) == 2 and stats.dropped_too_long == 1 and stats.truncated == 0
    assert stats.longest_tokens == len(encode_example(tok, long)[0]) > n_short + 5
    assert stats.examples_in == 3 and stats.examples_kept == 2


def test_truncate_prompt_left_keeps_system_turns_and_answer(tok):
    record = _record("OLDEST " + "<li>Mixer Toaster</li> " * 30 + "NEWEST", target="NO")
    limit = 60
    rows, stats = build_examples([record], tok, max_seq_length=limit, truncation="truncate_prompt_left")
    assert stats.truncated == 1 and stats.dropped_too_long == 0
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    assert len(ids) == limit
    text = tok.decode(ids)
    assert text.startswith("<bos><start_of_turn>user\nAnswer YES or NO.\n\n")
    assert "OLDEST" not in text and text.endswith("NEWEST<end_of_turn>\n<start_of_turn>model\nNO<end_of_turn>")
    assert _trained_text(tok, ids, labels) == "NO<end_of_turn>"
    # a limit that would cut into the system prompt or answer drops instead
    rows, stats = build_examples([record], tok, max_seq_length=15, truncation="truncate_prompt_left")
    assert rows == [] and stats.dropped_too_long == 1
