"""Valid within the token budget: the answer closes itself before ``max_new_tokens`` runs out.

    from scripts.evaluation.generation.closing import AnswerCloser
    from scripts.evaluation.generation.closing_spec import CloserSpec
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

Here: the processor (``RowCloser``, ``AnswerCloser``) and ``truncated_slots``; the token costs and
``CloserSpec`` are in ``closing_spec``, the cursors in ``closing_cursors``.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from scripts.evaluation.generation.closing_spec import CloserSpec


# --- the processor -------------------------------------------------------------------

TOP_K = 8  # model's best tokens checked against the budget inside the closing window

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
