"""Valid within the token budget: the answer closes itself before ``max_new_tokens`` runs out.

    from scripts.evaluation.closing import AnswerCloser, CloserSpec
    spec = CloserSpec.for_task(task_spec, token_bytes, excluded_ids, stop_ids, closing_mask, bounds)
    spec.min_new_tokens                     # the smallest budget that holds a complete answer
    closer = AnswerCloser(spec, max_new_tokens)   # after xgrammar's processor, one per generate call
    ...
    closer.interventions[row]               # decode steps where the model's own choice was refused

The grammar (xgrammar) says which tokens may come next; it does not know how many
tokens are left. A *cursor* follows each row's answer byte by byte and knows the
shortest way to finish it from where it stands:

* extraction: the canonical all-``null`` answer ``{"title":null,"brand":null,...}``
  (keys in the task's catalog order, ``TaskSpec.slot_order``) is the skeleton. Outside
  a value the cursor stands at a position of that string and the rest of it is the
  closing (keys come in catalog order and are all required, so the grammar allows
  nothing else there). Inside a value the closing is the value's own shortest end
  (``"`` for a string, ``""`` after a backslash, ``0`` digits for a ``\\uXXXX``, the
  smallest continuation bytes of a multi-byte character the grammar wants finished,
  ``]`` for a list, ``0`` for ``12.``, the rest of ``true``) followed by the skeleton
  from the next key on.
* classification: the rest of the shortest label that starts with what was written.

Its cost in tokens is the greedy longest-match tokenization over the grammar's token
bytes, plus the stop token; ``min_new_tokens`` is that cost from the empty answer (for
classification, of the *longest* label: a budget that cannot say every label biases
the answer). ``AnswerCloser`` compares it with the tokens left: while the slack
(left - needed) exceeds the most one token can add to ``needed`` (``margin``, computed
from the skeleton), the row is untouched; inside that window only tokens after which
the answer still fits are kept: the model's best few (top-k of the grammar-masked
scores) that pass the check, and the first token of the closing, which always does.
Every answer therefore ends, schema-valid, within the budget, whatever the model does.

Slot constraints (``config.SlotSpec``; which the grammar enforces itself is in
``decoding``'s module doc): the closing of an ``enum`` string is the rest of its
cheapest matching value, of a ``pattern`` string a completion found by partial
matching, of a list item equal to an earlier one (``unique_items``) one more
character; numbers close inside the slot's own range. ``max_chars`` and
``unique_items`` are kept here by refusing tokens (``JsonCursor.constraint_ban``);
the closing's own first token is never refused, so it always stays open.

Also here, because the same cursor knows it: the string bound
(``schema_bounds.max_string_tokens``: a spent string value must close) and a ban on
``\\uD800``-``\\uDFFF`` escapes (the grammar accepts them, ``json.loads`` turns them
into lone surrogates that no file or database can store). Where a restriction refused
the grammar-masked argmax, the step is recorded in ``interventions``; the slots those
tokens belong to are *truncated* (:func:`truncated_slots`), and scoring counts them
wrong. Confidence is read before this processor, so a forced token shows the model's
own (low) probability of it, never a renormalised 1.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

_QUOTE, _BACKSLASH, _U = 0x22, 0x5C, 0x75
_LBRACKET, _RBRACKET, _COMMA = 0x5B, 0x5D, 0x2C
_NUMBER_START = frozenset(b"-0123456789")
_NUMBER_BYTES = frozenset(b"-+.eE0123456789")
_WORDS = {ord("t"): b"true", ord("f"): b"false"}
TOP_K = 8  # model's best tokens checked against the budget inside the closing window


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
        from scripts.evaluation.decoding import numeric_range, slot_specs

        names = spec.slot_order  # the grammar's key order (decoding.slots_json_schema)
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
                longest_value_close = max(longest_value_close, len(tokens.of(_json_text(value) + b'"')) + 1)
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
                step = next((c for c in _PATTERN_ALPHABET if compiled.fullmatch(current + c)), None)
                step = step or next((c for c in _PATTERN_ALPHABET
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
            table = torch.tensor([_token_chars(data, state) for data in self.token_bytes], dtype=torch.int32)
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


_PATTERN_ALPHABET = (string.ascii_lowercase + string.digits + string.ascii_uppercase
                     + "".join(c for c in string.punctuation if c not in '"\\') + " ")


def _compiled_pattern(pattern: str):
    import regex  # transformers' own dependency: partial matching, which `re` lacks

    return regex.compile(pattern)


def _json_text(value: str) -> bytes:
    """A string's bytes between the quotes as the grammar writes it (xgrammar: no \\u escapes)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode()


def _rides_into_value(data: bytes, inside: bool) -> bool:
    """``data`` opens a string and writes content into it, unless that string is a key (``"brand":``)."""
    in_string, escape, opened, content, pending = inside, False, False, 0, False
    for byte in data:
        if in_string:
            if escape:
                escape = False
            elif byte == _BACKSLASH:
                escape = True
            elif byte == _QUOTE:
                in_string, pending = False, opened and content > 0
                continue
            content += opened
        else:
            if pending and byte != ord(":"):
                return True  # a value with content, closed inside the token
            pending = False
            if byte == _QUOTE:
                in_string, opened, content = True, True, 0
    return (in_string and opened and content > 0) or pending


_NO_CHARS = 1 << 20  # a token that leaves the string the wrong way: never within a character bound


def _token_chars(data: bytes, state: tuple) -> int:
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
            if byte == _QUOTE:
                return count
            count += 1
            if byte == _BACKSLASH:
                sub = "escape"
            elif byte >= 0xC0:
                utf8_left = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
        elif sub == "escape":
            if byte == _U:
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


# --- cursors -----------------------------------------------------------------------


class LabelCursor:
    """Classification: the bytes written so far, a prefix of at least one label."""

    __slots__ = ("spec", "text", "lost")

    def __init__(self, spec: CloserSpec):
        self.spec, self.text, self.lost = spec, b"", False

    def copy(self) -> LabelCursor:
        other = LabelCursor(self.spec)
        other.text, other.lost = self.text, self.lost
        return other

    def feed(self, data: bytes) -> None:
        self.text += data
        if not any(label.startswith(self.text) for label in self.spec.labels):
            self.lost = True

    def closing(self) -> tuple[int, ...]:
        """Tokens of the cheapest label continuation (empty: a label is complete)."""
        rests = [label[len(self.text):] for label in self.spec.labels if label.startswith(self.text)]
        return min((self.spec.tokens.of(rest) for rest in rests), key=len)

    def needed(self) -> int:
        return len(self.closing()) + 1

    def complete(self) -> bool:
        return self.text in self.spec.labels

    def must_close_string(self) -> bool:
        return False

    def ban_state(self) -> str | None:
        return None

    def constraint_ban(self) -> None:
        return None


class JsonCursor:
    """Extraction: where the answer stands against the canonical skeleton (see the module doc).

    ``phase`` is ``path`` (at skeleton position ``pos``: keys, separators, a ``null``),
    ``str`` (a string value), ``num``, ``word`` (true/false) or ``list``; ``sub`` is the
    string sub-state (``in``/``escape``/``hex``) or the list's (``open``/``sep``/``comma``/``item``).
    """

    __slots__ = ("spec", "pos", "phase", "slot", "text", "sub", "str_sub", "hex_left", "hex_first",
                 "utf8_lead", "utf8_left", "utf8_seen", "str_tokens", "lost", "raw", "chars", "items")

    def __init__(self, spec: CloserSpec):
        self.spec = spec
        self.pos, self.phase, self.slot, self.text = 0, "path", -1, b""
        self.sub, self.str_sub, self.hex_left, self.hex_first = "", "", 0, 0
        self.utf8_lead, self.utf8_left, self.utf8_seen = 0, 0, 0  # a multi-byte character in progress
        self.str_tokens, self.lost = 0, False
        self.raw, self.chars, self.items = b"", 0, ()  # the string so far, its characters, the list's items

    def copy(self) -> JsonCursor:
        other = JsonCursor.__new__(JsonCursor)
        for name in JsonCursor.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    # -- feeding ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        opened = False
        for byte in data:
            opened |= self._byte(byte)
            if self.lost:
                return
        if self._in_string():
            self.str_tokens = 1 if opened else self.str_tokens + 1

    def _in_string(self) -> bool:
        return self.phase == "str" or (self.phase == "list" and self.sub == "item")

    def _byte(self, byte: int) -> bool:
        """Advance one byte; True when it opened a string value."""
        phase = self.phase
        if phase == "path":
            skeleton = self.spec.skeleton.text
            slot = self.spec.value_start.get(self.pos)
            if slot is not None and byte != skeleton[self.pos]:
                self.slot, self.text = slot, b""
                if byte == _QUOTE:
                    self.phase, self.str_sub, self.raw, self.chars = "str", "in", b"", 0
                    return True
                if byte == _LBRACKET:
                    self.phase, self.sub, self.items = "list", "open", ()
                elif byte in _WORDS:
                    self.phase, self.text = "word", bytes([byte])
                elif byte in _NUMBER_START:
                    self.phase, self.text = "num", bytes([byte])
                else:
                    self.lost = True
            elif self.pos < len(skeleton) and byte == skeleton[self.pos]:
                self.pos += 1
            else:
                self.lost = True
        elif phase == "str":
            if self._string_byte(byte):
                self._value_done()
        elif phase == "num":
            if byte in _NUMBER_BYTES:
                self.text += bytes([byte])
            else:
                self._value_done()
                return self._byte(byte)
        elif phase == "word":
            self.text += bytes([byte])
            word = _WORDS[self.text[0]]
            if not word.startswith(self.text):
                self.lost = True
            elif self.text == word:
                self._value_done()
        else:  # list
            sub = self.sub
            if sub == "item":
                if self._string_byte(byte):
                    self.sub, self.items = "sep", self.items + (self.raw,)
            elif byte == _QUOTE and sub in ("open", "comma"):
                self.sub, self.str_sub, self.raw, self.chars = "item", "in", b"", 0
                return True
            elif byte == _RBRACKET and sub in ("open", "sep"):
                self._value_done()
            elif byte == _COMMA and sub == "sep":
                self.sub = "comma"
            else:
                self.lost = True
        return False

    def _string_byte(self, byte: int) -> bool:
        """Inside a string; True when this byte closed it."""
        if self.str_sub == "in" and not self.utf8_left and byte == _QUOTE:
            return True
        self.raw += bytes([byte])
        sub = self.str_sub
        if sub == "in":
            if self.utf8_left:
                self.utf8_left -= 1
                self.utf8_seen += 1
            elif byte == _QUOTE:
                return True
            else:
                self.chars += 1  # a character counts at its first byte (see _token_chars)
                if byte >= 0xC0:
                    self.utf8_lead, self.utf8_seen = byte, 0
                    self.utf8_left = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
            if byte == _BACKSLASH:
                self.str_sub = "escape"
        elif sub == "escape":
            if byte == _U:
                self.str_sub, self.hex_left, self.hex_first = "hex", 4, 0
            else:
                self.str_sub = "in"
        else:  # hex
            if self.hex_left == 4:
                self.hex_first = byte
            self.hex_left -= 1
            if self.hex_left == 0:
                self.str_sub = "in"
        return False

    def _value_done(self) -> None:
        self.phase, self.pos, self.text, self.sub = "path", self.spec.value_end[self.slot], b"", ""

    # -- the closing ------------------------------------------------------------------

    def _finish(self) -> bytes:
        """The bytes that finish a character in progress (an escape, a multi-byte character)."""
        if self.utf8_left:  # the grammar wants the character finished first: the smallest valid one
            second = {0xE0: 0xA0, 0xF0: 0x90}.get(self.utf8_lead, 0x80) if self.utf8_seen == 0 else 0x80
            return bytes([second]) + b"\x80" * (self.utf8_left - 1)
        if self.str_sub == "escape":
            return b'"'  # \" (then the closing quote)
        if self.str_sub == "hex":
            return b"0" * self.hex_left
        return b""

    def _string_close(self) -> bytes | None:
        """The rest of the current string, closing quote included, that keeps its slot's constraints:
        the shortest enum value it starts, a pattern's completion, an extra character for a list item
        that would repeat an earlier one (unique_items). None: it cannot be finished."""
        finish = self._finish()
        slot = self.spec.slot_specs[self.slot] if self.spec.slot_specs else None
        if slot is None:
            return finish + b'"'
        text = self.raw + finish
        if self.phase == "str" and slot.enum is not None:
            rests = [v[len(text):] for v in map(_json_text, slot.enum) if v.startswith(text)]
            return min(rests, key=lambda r: (len(self.spec.tokens.of(r + b'"')), r)) + b'"' if rests else None
        if self.phase == "str" and slot.pattern is not None:
            try:
                decoded = text.decode()
            except UnicodeDecodeError:
                return None
            completion = self.spec.pattern_completion(slot.pattern, decoded)
            return None if completion is None else finish + completion.encode() + b'"'
        if self.phase == "list" and slot.unique_items and text in self.items:
            extra = next(c for c in _PATTERN_ALPHABET.encode() if text + bytes([c]) not in self.items)
            return finish + bytes([extra]) + b'"'
        return finish + b'"'

    def at_char_bound(self) -> bool:
        """Inside a ``max_chars`` string with no character left: a refused token cut the value."""
        if not self._in_string() or not self.spec.slot_specs:
            return False
        bound = self.spec.slot_specs[self.slot].max_chars
        return bound is not None and self.chars >= bound

    def constraint_ban(self) -> torch.Tensor | None:
        """Tokens the slot's constraints refuse here that the grammar does not: the ids (a long tensor)
        of the riders and of the tokens that would close a list item repeating an earlier one
        (``unique_items``), or, near a ``max_chars`` string's bound, a bool mask over the vocabulary
        (the tokens over its remaining characters, those ids included)."""
        specs = self.spec.slot_specs
        if not specs or not any(s.max_chars is not None or s.unique_items for s in specs):
            return None
        inside = self._in_string()
        first = self.closing()  # the closing's own first token stays allowed: it keeps every constraint
        keep = first[0] if first and self.spec.riders(inside)[first[0]] else None
        ids = self.spec.rider_ids(inside)
        if not inside:
            return ids if keep is None else ids[ids != keep]
        slot = specs[self.slot]
        ban: list[int] = []
        if self.phase == "list" and slot.unique_items and self.items and self.str_sub == "in" \
                and not self.utf8_left:
            for earlier in self.items:
                if earlier.startswith(self.raw):
                    rest = earlier[len(self.raw):]
                    full = slot.max_chars is not None and len(earlier.decode(errors="replace")) >= slot.max_chars
                    ban += self.spec.with_prefix(rest if full and rest else rest + b'"')
        if ban:
            ids = torch.cat([ids, torch.tensor(ban, dtype=torch.long)])
            keep = first[0] if first else None
        if slot.max_chars is not None and slot.enum is None:
            left = slot.max_chars - self.chars
            if left < self.spec.longest_chars():
                mask = self.spec.chars_table((self.str_sub, self.hex_left, self.utf8_left)) > max(left, 0)
                mask[ids] = True
                if first:
                    mask[first[0]] = False
                return mask
        return ids if keep is None else ids[ids != keep]

    def _value_close(self) -> bytes | None:
        """The rest of the current value (phase != path); None if it cannot be finished."""
        if self.phase == "str":
            return self._string_close()
        if self.phase == "num":
            return self.spec.number_close(self.text, self.slot)
        if self.phase == "word":
            return _WORDS[self.text[0]][len(self.text):]
        if self.sub in ("open", "sep"):
            return b"]"
        if self.sub == "comma":  # an empty item; one character where unique_items has one already
            unique = self.spec.slot_specs and self.spec.slot_specs[self.slot].unique_items
            return b'"a"]' if unique and b"" in self.items else b'""]'
        rest = self._string_close()
        return None if rest is None else rest + b"]"

    def closing_cost_and_first(self) -> tuple[int, int]:
        """(tokens to a complete answer, stop excluded; the first of them or -1)."""
        skeleton = self.spec.skeleton
        if self.phase == "path":
            return skeleton.count[self.pos], skeleton.first[self.pos]
        rest = self._value_close()
        if rest is None:
            self.lost = True
            return 0, -1
        after = self.spec.value_end[self.slot]
        own = self.spec.tokens.of(rest)
        return len(own) + skeleton.count[after], (own[0] if own else skeleton.first[after])

    def needed(self) -> int:
        return self.closing_cost_and_first()[0] + 1

    def closing(self) -> tuple[int, ...]:
        """The first token of the closing (enough to follow it step by step)."""
        first = self.closing_cost_and_first()[1]
        return (first,) if first >= 0 else ()

    def complete(self) -> bool:
        return self.phase == "path" and self.pos == len(self.spec.skeleton.text)

    def must_close_string(self) -> bool:
        """A string value that has taken max_string_tokens tokens and is not inside an escape."""
        return (self._in_string() and self.str_sub == "in" and not self.utf8_left
                and self.str_tokens >= self.spec.max_string_tokens)

    def ban_state(self) -> str | None:
        if not self._in_string():
            return "in"  # a token may open a string and hold a whole surrogate escape
        if self.str_sub == "hex":
            if self.hex_left == 4:
                return "hex4"
            if self.hex_left == 3 and self.hex_first in (ord("d"), ord("D")):
                return "hex3d"
            return "in"
        return self.str_sub


# --- the processor -------------------------------------------------------------------

# the limits that close an answer early, by their config keys
STRING_BOUND, BUDGET = "schema_bounds.max_string_tokens", "decoding.max_new_tokens"
MAX_CHARS = "slots.<slot>.max_chars"  # a slot's max_chars in the task registry (configs/datasets.yaml)


class RowCloser:
    """One answer's closing: its cursor, the steps where the model's choice was refused, and the
    restriction of one step's grammar-masked scores (see the module doc). Shared by the HF
    processor below (one per batch row) and the vLLM one (``scripts.serving.vllm_closing``, one
    per request), so both engines close answers the same way."""

    __slots__ = ("spec", "max_new_tokens", "greedy", "cursor", "done", "refusals", "lost")

    def __init__(self, spec: CloserSpec, max_new_tokens: int | None, greedy: bool = True):
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy  # greedy: a fitting argmax needs no mask (it is what the engine picks)
        self.cursor = spec.cursor()
        self.done = False
        # decode step -> the limit (STRING_BOUND, BUDGET) that refused the model's choice there
        self.refusals: dict[int, str] = {}
        self.lost = False  # the cursor could not follow the output (a bug: the row is left to the grammar)

    @property
    def interventions(self) -> list[int]:
        return list(self.refusals)

    @property
    def limits(self) -> set[str]:
        return set(self.refusals.values())

    def feed(self, token: int) -> None:
        """The token the engine chose at the previous step."""
        if self.done:
            return
        if token in self.spec.stop_ids:
            self.done = True
            return
        self.cursor.feed(self.spec.token_bytes[token])
        self.lost = self.cursor.lost

    def restrict(self, scores: torch.Tensor, step: int, banned: dict[str, torch.Tensor],
                 closing: torch.Tensor | None) -> torch.Tensor:
        """``scores`` (one row, after the grammar mask) of decode step ``step`` with the string bound,
        the surrogate ban and the budget applied; modified in place where possible."""
        spec, cursor = self.spec, self.cursor
        # Only the last call at a step counts: vLLM also runs logits processors on the rows of a prompt
        # still being prefilled in chunks, whose logits are not the step's (nor grammar-masked) and
        # whose sampled token is discarded.
        self.refusals.pop(step, None)
        if self.done or self.lost:
            return scores
        left = None if self.max_new_tokens is None else self.max_new_tokens - step
        near = left is not None and left <= spec.most_needed + spec.margin
        ban = banned.get(cursor.ban_state() or "") if banned else None
        close_string = cursor.must_close_string()
        tight = near and left - cursor.needed() <= spec.margin
        if ban is not None:
            scores.index_fill_(0, ban, float("-inf"))
        refused = cursor.constraint_ban()
        if refused is not None:
            best = int(torch.argmax(scores))
            if refused.dtype == torch.bool:
                scores.masked_fill_(refused.to(scores.device), float("-inf"))
            else:
                scores.index_fill_(0, refused.to(scores.device), float("-inf"))
            if cursor.at_char_bound() and not torch.isfinite(scores[best]) and not close_string and not tight:
                self.refusals[step] = MAX_CHARS  # the string ran into its max_chars: cut
        if not close_string and not tight:
            return scores
        row_scores = scores
        best = int(torch.argmax(row_scores))
        if close_string and closing is not None:
            kept = row_scores.masked_fill(~closing, float("-inf"))
            first = cursor.closing()  # an enum or pattern value is finished, not cut: its closing's first token
            if first and torch.isfinite(row_scores[first[0]]):
                kept[first[0]] = row_scores[first[0]]
            if torch.isfinite(kept).any():
                row_scores = kept
        limit = STRING_BOUND if not torch.isfinite(row_scores[best]) else BUDGET
        if tight and not (self.greedy and self._fits(best, left)):
            fitted = self._fit(row_scores, left)
            if fitted is None:
                self.lost = cursor.lost = True
                return scores
            row_scores = fitted
        if not torch.isfinite(row_scores[best]):
            self.refusals[step] = limit
        return row_scores

    def _fits(self, token: int, left: int) -> bool:
        """After ``token`` a complete answer still fits in ``left - 1`` tokens (grammar mask aside)."""
        if token in self.spec.stop_ids:
            return self.cursor.complete()
        after = self.cursor.copy()
        after.feed(self.spec.token_bytes[token])
        return not after.lost and after.needed() <= left - 1

    def _fit(self, row_scores: torch.Tensor, left: int) -> torch.Tensor | None:
        """Only the tokens after which a complete answer still fits in ``left - 1`` tokens."""
        cursor = self.cursor
        k = min(TOP_K, row_scores.shape[0])
        values, ids = torch.topk(row_scores, k)
        candidates = [t for v, t in zip(values.tolist(), ids.tolist()) if v != float("-inf")]
        candidates += [t for t in cursor.closing() if t not in candidates]
        if cursor.complete():
            candidates += [t for t in self.spec.stop_ids if t not in candidates]
        allowed = [t for t in candidates if torch.isfinite(row_scores[t]) and self._fits(t, left)]
        if not allowed:
            return None
        keep = torch.full_like(row_scores, float("-inf"))
        index = torch.tensor(allowed, device=row_scores.device)
        keep[index] = row_scores[index]
        return keep


class AnswerCloser(LogitsProcessor):
    """After the grammar mask, for HF ``generate``: one ``RowCloser`` per batch row.

    ``max_new_tokens`` None: no budget (string bound and ban only). One instance per
    ``generate`` call. ``interventions[row]``: decode steps (= generated token indexes)
    whose grammar-allowed argmax this processor refused; ``lost`` counts rows whose
    output the cursor could not follow (a bug: the row is then left to the grammar).
    """

    def __init__(self, spec: CloserSpec, max_new_tokens: int | None, greedy: bool = True):
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.rows: list[RowCloser] | None = None
        self.step = 0
        self._banned: dict[str, torch.Tensor] = {}
        self._closing: torch.Tensor | None = None

    @property
    def interventions(self) -> list[list[int]]:
        return [row.interventions for row in self.rows or []]

    @property
    def limits(self) -> list[set[str]]:
        return [row.limits for row in self.rows or []]

    @property
    def lost(self) -> int:
        return sum(row.lost for row in self.rows or [])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        spec = self.spec
        if self.rows is None:
            self.rows = [RowCloser(spec, self.max_new_tokens, self.greedy) for _ in range(input_ids.shape[0])]
            self._banned = {k: v.to(scores.device) for k, v in spec.banned.items()}
            if spec.closing_mask is not None:
                self._closing = spec.closing_mask.to(scores.device)
        else:
            self.step += 1
            for row, token in zip(self.rows, input_ids[:, -1].tolist()):
                row.feed(token)
        for index, row in enumerate(self.rows):
            restricted = row.restrict(scores[index], self.step, self._banned, self._closing)
            if restricted.data_ptr() != scores[index].data_ptr():
                scores[index] = restricted
        return scores


# --- which slots were cut ------------------------------------------------------------


def truncated_slots(text: str, token_ends: list[int], steps: list[int],
                    spans: dict[str, tuple[int, int]] | None, kind: str) -> list[str]:
    """Slots whose value a refused step touched, in answer order.

    A refused token inside a value's characters cuts that value; one right after a
    number cuts the number (it could have gone on); one elsewhere (a key, a comma)
    belongs to the next value. Classification: ``["label"]`` when any step was refused.
    """
    steps = [s for s in steps if s < len(token_ends)]
    if not steps:
        return []
    if kind == "classification":
        return ["label"]
    if not spans:
        return []
    starts = [0] + token_ends[:-1]
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    cut: set[str] = set()
    for step in steps:
        lo, hi = starts[step], token_ends[step]
        hit = [name for name, (a, b) in ordered if (lo < b and hi > a) or (lo == hi and a <= lo < b)]
        if not hit:
            hit = [name for name, (a, b) in ordered if b == lo and text[a:b][:1] in "-0123456789"]
        if not hit:
            hit = [name for name, (a, _) in ordered if a >= hi][:1]
        cut.update(hit)
    return [name for name, _ in ordered if name in cut]
