"""Riders (a token that opens a value AND writes content into it) are read in the cursor's own
context between values: Gemma writes ``":"`` (key's closing quote, colon, value's opening quote) as
one token, and refusing it made a fine-tuned model answer null for every string slot once any slot
had a counted constraint (max_chars, unique_items)."""

from __future__ import annotations

import torch

from scripts.dataset.config import TaskSpec
from scripts.evaluation.generation.closing_cursors import JsonCursor
from scripts.evaluation.generation.closing_spec import CloserSpec
from scripts.evaluation.generation.config import SchemaBounds

MULTI = [b'{"', b"title", b'":"', b'":', b'":["', b'":["Men', b'":"AB', b"null", b'","', b'",', b"Ost",
         b'"Ost', b',"Men', b'"]', b"],", b'],"sku', b"Men", b',"', b"categories", b"sku"]
VOCAB = [bytes([b]) for b in range(256)] + MULTI
ID = {data: i for i, data in enumerate(VOCAB) if data in MULTI}


def spec() -> CloserSpec:
    task = TaskSpec(kind="extraction", system_prompt="", slots={
        "title": "string",                                            # counts nothing
        "categories": {"type": "string_list", "unique_items": True},  # counts items
        "sku": {"type": "string", "max_chars": 8},                    # counts characters
    })
    return CloserSpec.for_task(task, VOCAB, set(), [], None, SchemaBounds())


def cursor_after(closer: CloserSpec, text: bytes) -> JsonCursor:
    cursor = JsonCursor(closer)
    cursor.feed(text)
    assert not cursor.lost
    return cursor


def banned(cursor: JsonCursor) -> set[int]:
    ban = cursor.constraint_ban()
    if ban is None:
        return set()
    return set((ban.nonzero().squeeze(1) if ban.dtype == torch.bool else ban).tolist())


def test_the_key_value_token_is_never_a_rider():
    closer = spec()
    assert closer.riders(False)[ID[b'":"']]  # read from outside any string, it looks like one: the old bug
    for text in (b'{"title', b'{"title":null,"categories":null,"sku'):
        assert ID[b'":"'] not in banned(cursor_after(closer, text)), text


def test_riders_between_values_are_refused_and_the_key_value_token_is_not():
    closer = spec()
    for text in (b'{"title', b'{"title":null,"categories":null,"sku'):
        ban = banned(cursor_after(closer, text))
        assert ID[b'":"AB'] in ban and ID[b'":"'] not in ban and ID[b'":'] not in ban, text
    lists = banned(cursor_after(closer, b'{"title":null,"categories'))
    assert ID[b'":["Men'] in lists and ID[b'":["'] not in lists
