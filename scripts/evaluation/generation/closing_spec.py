"""What closing an answer costs, per task: greedy tokenization of closing text (``Tokens``,
``Skeleton``) and ``CloserSpec``, the tables every row's cursor reads (see ``closing``'s module doc).

    from scripts.evaluation.generation.closing_spec import CloserSpec
    spec = CloserSpec.for_task(task_spec, token_bytes, excluded_ids, stop_ids, closing_mask, bounds)
    spec.min_new_tokens                     # the smallest budget that holds a complete answer
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from typing import Any

import torch

QUOTE, BACKSLASH, U_LETTER = 0x22, 0x5C, 0x75
LBRACKET, RBRACKET, COMMA = 0x5B, 0x5D, 0x2C
NUMBER_START = frozenset(b"-0123456789")
NUMBER_BYTES = frozenset(b"-+.eE0123456789")
WORDS = {ord("t"): b"true", ord("f"): b"false"}


# --- tokenizing closings ------------------------------------------------------


class Tokens:
    """Greedy longest-match tokenization of closing text over the grammar's token bytes.

    Deterministic left to right, so the tokens of a suffix are the suffix of the tokens:
    following a closing token by token lands on the closing of each next state.
    """

    def __init__(self, token_bytes: list[bytes], excluded: set[int], max_len: int = 48):
        self.ids: dict[bytes, int] = {}
        for token_id, data in enumerate(token_bytes):
            if data and token_id not in excluded and len(data) <= max_len:
                self.ids[data] = token_id  # later ids win: normal pieces come after byte fallbacks
        self.max_len = max(map(len, self.ids))
        self._cache: dict[bytes, tuple[int, ...]] = {}

    def longest(self, text: bytes, start: int) -> tuple[int, int]:
        """(token id, its length) of the longest token spelling ``text[start:...]``."""
        for length in range(min(self.max_len, len(text) - start), 0, -1):
            token_id = self.ids.get(text[start : start + length])
            if token_id is not None:
                return token_id, length
        raise ValueError(f"no token spells {text[start:start + 1]!r}: the vocabulary cannot close an answer")

    def of(self, text: bytes) -> tuple[int, ...]:
        cached = self._cache.get(text)
        if cached is None:
            out, i = [], 0
            while i < len(text):
                token_id, length = self.longest(text, i)
                out.append(token_id)
                i += length
            cached = self._cache[text] = tuple(out)
        return cached


class Skeleton:
    """Greedy closing of every suffix of one fixed text: ``count[p]`` tokens, ``first[p]`` the first."""

    def __init__(self, text: bytes, tokens: Tokens):
        self.text = text
        self.count = [0] * (len(text) + 1)
        self.first = [-1] * (len(text) + 1)
        for p in range(len(text) - 1, -1, -1):
            token_id, length = tokens.longest(text, p)
            self.count[p] = 1 + self.count[p + length]
            self.first[p] = token_id

    def rise(self) -> int:
        """Most the count can grow between a position and a later one (greedy is not monotone)."""
        best, low = 0, self.count[0]
        for p in range(1, len(self.count)):
            best = max(best, self.count[p] - low)
            low = min(low, self.count[p])
        return best


# --- what to close, per task kind ----------------------------------------------


@dataclass
class CloserSpec:
    """Per task: the skeleton, the token tables and the window; shared by every row and call."""

    kind: str
    tokens: Tokens
    stop_ids: frozenset[int]
    token_bytes: list[bytes]
    min_new_tokens: int  # smallest max_new_tokens that holds a complete answer (stop token included)
    margin: int  # most one token can add to the closing's cost
    most_needed: int  # an upper bound of the closing's cost from any state (stop included)
    skeleton: Skeleton | None = None
    value_start: dict[int, int] = field(default_factory=dict)  # skeleton position of `null` -> slot
    value_end: list[int] = field(default_factory=list)  # per slot: skeleton position after its `null`
    slot_kinds: list[str] = field(default_factory=list)
    slot_names: list[str] = field(default_factory=list)
    labels: list[bytes] = field(default_factory=list)
    closing_mask: torch.Tensor | None = None  # token starts with a quote (string bound)
    max_string_tokens: int = 0
    bounds: Any = None
    banned: dict[str, torch.Tensor] = field(default_factory=dict)  # string sub-state -> token ids
    slot_specs: list[Any] = field(default_factory=list)  # per slot: its config.SlotSpec (constraints)
    ranges: list[tuple[float, float]] = field(default_factory=list)  # per slot: numeric range (number/integer)
    _number_cache: dict[tuple[bytes, int], bytes | None] = field(default_factory=dict)
    _pattern_cache: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _chars: dict[tuple, torch.Tensor] = field(default_factory=dict)  # string sub-state -> chars per token
    _sorted: list[tuple[bytes, int]] | None = None  # token bytes in order, for prefix look-ups

    @classmethod
    def for_task(cls, spec, token_bytes: list[bytes], excluded: set[int], stop_ids: list[int],
                 closing_mask: torch.Tensor | None, bounds) -> CloserSpec:
        tokens = Tokens(token_bytes, excluded | set(stop_ids))
        if spec.kind == "classification":
            labels = [label.encode() for label in spec.labels or []]
            costs = [len(tokens.of(label)) for label in labels]
            return cls(kind="classification", tokens=tokens, stop_ids=frozenset(stop_ids),
                       token_bytes=token_bytes, min_new_tokens=max(costs) + 1, margin=max(costs) + 1,
                       most_needed=max(costs) + 1, labels=labels)
        from scripts.evaluation.generation.answer_schema import numeric_range, slot_specs

        names = spec.slot_order  # the grammar's key order (answer_schema.slots_json_schema)
        specs = slot_specs(spec.catalog or {})
        parts, value_start, value_end, pos = [b"{"], {}, [], 1
        for i, name in enumerate(names):
            literal = (b"," if i else b"") + json.dumps(name, ensure_ascii=False).encode() + b":"
            parts.append(literal + b"null")
            value_start[pos + len(literal)] = i
            pos += len(literal) + 4
            value_end.append(pos)
        parts.append(b"}")
        skeleton = Skeleton(b"".join(parts), tokens)
        ranges = [numeric_range(specs[n], bounds) if specs[n].type in ("number", "integer") else (0, 0)
                  for n in names]
        made = cls(kind="extraction", tokens=tokens, stop_ids=frozenset(stop_ids), token_bytes=token_bytes,
                   min_new_tokens=skeleton.count[0] + 1, margin=0, most_needed=0, skeleton=skeleton,
                   value_start=value_start, value_end=value_end,
                   slot_kinds=[specs[n].type for n in names], slot_names=names,
                   closing_mask=closing_mask, max_string_tokens=bounds.max_string_tokens, bounds=bounds,
                   slot_specs=[specs[n] for n in names], ranges=ranges)
        # the longest closing of one value from inside it: a number's digits, a word's rest, an enum
        # value, a pattern's completion (from the empty string, plus slack), a duplicate list item's
        # extra character
        longest_value_close = 7
        for slot, (low, high) in zip(made.slot_specs, ranges):
            if slot.type in ("number", "integer"):
                longest_value_close = max(longest_value_close, len(f"{abs(low):.0f}") + 2,
                                          len(f"{abs(high):.0f}") + 2)
            for value in slot.enum or []:
                longest_value_close = max(longest_value_close, len(tokens.of(json_text(value) + b'"')) + 1)
            if slot.pattern is not None and slot.enum is None:
                completion = made.pattern_completion(slot.pattern, "")
                if completion is None:
                    raise ValueError(f"pattern {slot.pattern!r}: the closing finds no printable-ASCII value "
                                     f"that matches it")
                longest_value_close = max(longest_value_close, len(completion.encode()) + 8)
        made.margin = longest_value_close + skeleton.rise() + 1
        made.most_needed = max(skeleton.count) + longest_value_close + 1
        made.banned = _surrogate_bans(token_bytes)
        return made

    def cursor(self) -> LabelCursor | JsonCursor:
        from scripts.evaluation.generation.closing_cursors import JsonCursor, LabelCursor

        return LabelCursor(self) if self.kind == "classification" else JsonCursor(self)

    def number_close(self, text: bytes, slot: int) -> bytes | None:
        """Fewest bytes that make ``text`` a number in the slot's range (None: it cannot become one):
        zeros first (``12.`` -> ``12.0``), else the shortest run of digits and ``.``."""
        key = (text, slot)
        if key not in self._number_cache:
            integer = self.slot_kinds[slot] == "integer"
            low, high = self.ranges[slot]

            def ok(extra: bytes) -> bool:
                try:
                    value = json.loads(text + extra)
                except ValueError:
                    return False
                return (not integer or isinstance(value, int)) and low <= value <= high

            zeros = [b"0" * k for k in range(7)]
            short = [bytes([a]) for a in b".0123456789"]
            found = next((e for e in zeros if ok(e)), None)
            if found is None:
                found = next((a + b for a in short for b in [b""] + short if ok(a + b)), None)
            if found is None:
                found = next((a + b + c for a in short for b in short for c in short if ok(a + b + c)), None)
            self._number_cache[key] = found
        return self._number_cache[key]

    def pattern_completion(self, pattern: str, text: str) -> str | None:
        """Characters that make ``text`` match ``pattern`` (whole-string), picked deterministically:
        a character that completes the match if one does, else the first that keeps a match possible
        (``regex`` partial matching), over printable ASCII that JSON need not escape. Deterministic, so
        the completion of ``text + its first character`` is the rest of it. None: none within 64."""
        key = (pattern, text)
        if key not in self._pattern_cache:
            compiled = _compiled_pattern(pattern)
            out, current, found = "", text, None
            for _ in range(64):
                if compiled.fullmatch(current):
                    found = out
                    break
                step = next((c for c in PATTERN_ALPHABET if compiled.fullmatch(current + c)), None)
                step = step or next((c for c in PATTERN_ALPHABET
                                     if compiled.fullmatch(current + c, partial=True)), None)
                if step is None:
                    break
                out, current = out + step, current + step
            self._pattern_cache[key] = found
        return self._pattern_cache[key]

    def chars_table(self, state: tuple) -> torch.Tensor:
        """Per token: characters it adds to a string value from string sub-state ``state`` (up to the
        quote that would close it; a token that cannot be inside a string gets a large count)."""
        table = self._chars.get(state)
        if table is None:
            table = torch.tensor([token_chars(data, state) for data in self.token_bytes], dtype=torch.int32)
            self._chars[state] = table
        return table

    def riders(self, inside: bool) -> torch.Tensor:
        """Per token: it opens a string value AND writes content into it (``"Shoes``, ``","Men"``), read
        from inside a string (``inside``) or outside. Where a slot counts characters or items, such tokens
        are refused, so a value's content always arrives where the cursor checks it."""
        key = ("riders", inside)
        table = self._chars.get(key)
        if table is None:
            table = torch.tensor([_rides_into_value(data, inside) for data in self.token_bytes], dtype=torch.bool)
            self._chars[key] = table
        return table

    def rider_ids(self, inside: bool) -> torch.Tensor:
        """:meth:`riders` as token ids: refusing a few thousand ids costs a small fraction of masking
        the whole 262k vocabulary per row and step (``bench/closing_bench.py``)."""
        key = ("rider_ids", inside)
        table = self._chars.get(key)
        if table is None:
            table = self._chars[key] = self.riders(inside).nonzero().squeeze(1)
        return table

    def path_rider_ids(self, pos: int) -> torch.Tensor:
        """Riders at skeleton position ``pos`` (between values): the tokens that write the rest of the
        skeleton up to the next value and then open that value (a string, or a list's first item) with
        content in it. A key's closing quote is the skeleton's: ``":"`` after ``{"title`` closes the
        key and opens an empty value; it is no rider (Gemma writes it as one token before every string
        value, and refusing it left a fine-tuned model only ``":`` + ``null``)."""
        key = ("path_riders", pos)
        table = self._chars.get(key)
        if table is None:
            starts = [p for p in self.value_start if p >= pos]
            ids: list[int] = []
            if starts:
                rest = self.skeleton.text[pos:min(starts)]
                candidates = self.with_prefix(rest) if rest else self.with_prefix(b'"') + self.with_prefix(b"[")
                ids = [token for token in candidates
                       if _opens_value_with_content(self.token_bytes[token][len(rest):])]
            table = self._chars[key] = torch.tensor(sorted(ids), dtype=torch.long)
        return table

    def longest_chars(self) -> int:
        """The most characters one token adds to a string (the character bound acts below it)."""
        key = ("longest",)
        if key not in self._chars:
            self._chars[key] = torch.tensor(int(self.chars_table(("in", 0, 0)).clamp(max=_NO_CHARS - 1).max()))
        return int(self._chars[key])

    def with_prefix(self, prefix: bytes) -> list[int]:
        """Token ids whose bytes start with ``prefix``."""
        import bisect

        if self._sorted is None:
            self._sorted = sorted((data, i) for i, data in enumerate(self.token_bytes) if data)
        keys = self._sorted
        start = bisect.bisect_left(keys, (prefix, -1))
        out = []
        for data, token_id in keys[start:]:
            if not data.startswith(prefix):
                break
            out.append(token_id)
        return out


PATTERN_ALPHABET = (string.ascii_lowercase + string.digits + string.ascii_uppercase
                     + "".join(c for c in string.punctuation if c not in '"\\') + " ")


def _compiled_pattern(pattern: str):
    import regex  # transformers' own dependency: partial matching, which `re` lacks

    return regex.compile(pattern)


def json_text(value: str) -> bytes:
    """A string's bytes between the quotes as the grammar writes it (xgrammar: no \\u escapes)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode()


def _rides_into_value(data: bytes, inside: bool) -> bool:
    """``data`` opens a string and writes content into it, unless that string is a key (``"brand":``)."""
    in_string, escape, opened, content, pending = inside, False, False, 0, False
    for byte in data:
        if in_string:
            if escape:
                escape = False
            elif byte == BACKSLASH:
                escape = True
            elif byte == QUOTE:
                in_string, pending = False, opened and content > 0
                continue
            content += opened
        else:
            if pending and byte != ord(":"):
                return True  # a value with content, closed inside the token
            pending = False
            if byte == QUOTE:
                in_string, opened, content = True, True, 0
    return (in_string and opened and content > 0) or pending


def _opens_value_with_content(data: bytes) -> bool:
    """``data`` starts where a value starts and opens it (a string, or a list and its first item) with
    content in it."""
    if data.startswith(b"["):
        data = data[1:]
    return data.startswith(b'"') and _rides_into_value(data, False)


_NO_CHARS = 1 << 20  # a token that leaves the string the wrong way: never within a character bound


def token_chars(data: bytes, state: tuple) -> int:
    """Characters ``data`` adds to a string from sub-state ``state`` = (str_sub, hex_left, utf8_left),
    counted as ``JsonCursor`` counts them: a character at its first byte (a backslash, a lead byte),
    none for escape and continuation bytes; up to an unescaped quote."""
    sub, hex_left, utf8_left = state
    count = 0
    for byte in data:
        if sub == "in":
            if utf8_left:
                utf8_left -= 1
                continue
            if byte == QUOTE:
                return count
            count += 1
            if byte == BACKSLASH:
                sub = "escape"
            elif byte >= 0xC0:
                utf8_left = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
        elif sub == "escape":
            if byte == U_LETTER:
                sub, hex_left = "hex", 4
            else:
                sub = "in"
        else:
            hex_left -= 1
            if hex_left == 0:
                sub = "in"
    return count


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _surrogate_bans(token_bytes: list[bytes]) -> dict[str, torch.Tensor]:
    """Token ids that would write a ``\\uD800``-``\\uDFFF`` escape, per string sub-state.

    ``in`` (and every other state) bans tokens holding a whole surrogate escape; after a
    backslash (``escape``), after ``\\u`` (``hex4``) and after ``\\uD`` (``hex3d``) also the
    tokens that would finish one. Conservative: ``\\\\ud8`` (an escaped backslash) is banned too.
    """
    starts = {"escape": re.compile(rb"u[dD][89a-fA-F]"), "hex4": re.compile(rb"[dD][89a-fA-F]"),
              "hex3d": re.compile(rb"[89a-fA-F]")}
    whole = [i for i, b in enumerate(token_bytes) if b"\\u" in b and _SURROGATE_ESCAPE.search(b)]
    out = {"in": whole}
    for state, pattern in starts.items():
        out[state] = whole + [i for i, b in enumerate(token_bytes) if b and pattern.match(b)]
    return {state: torch.tensor(sorted(set(ids)), dtype=torch.long) for state, ids in out.items() if ids}
