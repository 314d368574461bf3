"""Cursors: one row's answer followed byte by byte, knowing the shortest way to finish it from where
it stands (``LabelCursor`` for a label, ``JsonCursor`` for the extraction JSON; see ``closing``'s
module doc). ``CloserSpec.cursor()`` makes the right one.
"""

from __future__ import annotations

import torch

from scripts.evaluation.generation.closing_spec import (
    BACKSLASH, COMMA, LBRACKET, NUMBER_BYTES, NUMBER_START, PATTERN_ALPHABET, QUOTE, RBRACKET, U_LETTER, WORDS,
    CloserSpec, json_text,
)


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
                if byte == QUOTE:
                    self.phase, self.str_sub, self.raw, self.chars = "str", "in", b"", 0
                    return True
                if byte == LBRACKET:
                    self.phase, self.sub, self.items = "list", "open", ()
                elif byte in WORDS:
                    self.phase, self.text = "word", bytes([byte])
                elif byte in NUMBER_START:
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
            if byte in NUMBER_BYTES:
                self.text += bytes([byte])
            else:
                self._value_done()
                return self._byte(byte)
        elif phase == "word":
            self.text += bytes([byte])
            word = WORDS[self.text[0]]
            if not word.startswith(self.text):
                self.lost = True
            elif self.text == word:
                self._value_done()
        else:  # list
            sub = self.sub
            if sub == "item":
                if self._string_byte(byte):
                    self.sub, self.items = "sep", self.items + (self.raw,)
            elif byte == QUOTE and sub in ("open", "comma"):
                self.sub, self.str_sub, self.raw, self.chars = "item", "in", b"", 0
                return True
            elif byte == RBRACKET and sub in ("open", "sep"):
                self._value_done()
            elif byte == COMMA and sub == "sep":
                self.sub = "comma"
            else:
                self.lost = True
        return False

    def _string_byte(self, byte: int) -> bool:
        """Inside a string; True when this byte closed it."""
        if self.str_sub == "in" and not self.utf8_left and byte == QUOTE:
            return True
        self.raw += bytes([byte])
        sub = self.str_sub
        if sub == "in":
            if self.utf8_left:
                self.utf8_left -= 1
                self.utf8_seen += 1
            elif byte == QUOTE:
                return True
            else:
                self.chars += 1  # a character counts at its first byte (see token_chars)
                if byte >= 0xC0:
                    self.utf8_lead, self.utf8_seen = byte, 0
                    self.utf8_left = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
            if byte == BACKSLASH:
                self.str_sub = "escape"
        elif sub == "escape":
            if byte == U_LETTER:
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
            rests = [v[len(text):] for v in map(json_text, slot.enum) if v.startswith(text)]
            return min(rests, key=lambda r: (len(self.spec.tokens.of(r + b'"')), r)) + b'"' if rests else None
        if self.phase == "str" and slot.pattern is not None:
            try:
                decoded = text.decode()
            except UnicodeDecodeError:
                return None
            completion = self.spec.pattern_completion(slot.pattern, decoded)
            return None if completion is None else finish + completion.encode() + b'"'
        if self.phase == "list" and slot.unique_items and text in self.items:
            extra = next(c for c in PATTERN_ALPHABET.encode() if text + bytes([c]) not in self.items)
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
        if self.phase == "path":
            # between values the skeleton's rest comes first: a key's closing quote is not a value's
            # opening one (``":"`` after ``{"title`` is no rider; read from outside a string it was)
            ids = self.spec.path_rider_ids(self.pos)
            return ids if not first else ids[ids != first[0]]
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
            return WORDS[self.text[0]][len(self.text):]
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
