"""Grammar-constrained decoding (xgrammar) and the confidence read from the logits.

    from scripts.evaluation.generation.decoding import TaskDecoder
    decoder = TaskDecoder.build(tokenizer, model, task_spec, bounds, constrained=True)
    out = model.generate(ids, attention_mask=mask, logits_processor=decoder.processors(), ...)
    parsed, valid = decoder.parse(raw_text)

What the grammar allows, per task kind (the registry in configs/datasets.yaml):

* classification: exactly one of the task's labels, then a stop token.
* extraction: one compact JSON object (``,`` and ``:`` without spaces, keys in
  catalog order -- the task's ``slots:`` order, the same canonical form as the
  training targets, which ``dataset.clean`` writes with
  ``contracts.canonical_target``), every slot key present, each value ``null``
  or of the slot's type: string (JSON escapes allowed), bounded number /
  integer, boolean, or a bounded list of strings. No other keys. It is
  :func:`answer_schema.slots_json_schema` compiled by xgrammar's own converter, which
  generates the properties in the order the schema lists them, so the schema
  and the grammar cannot drift apart.

Strings carry no ``maxLength`` in the grammar: xgrammar 0.2.8 cannot tell at
compile time which tokens a bounded repetition (``maxLength``, ``char{0,N}``)
accepts, so it checks most of the vocabulary at every step inside a string.
Per row and decode step on one CPU core with a 262,144-token vocabulary
(Gemma 3's size): 0.03-0.1 ms unbounded; 5 ms with the converter's
``maxLength: 32`` (bench/eval_bench.py [5]); 95 ms and 1.2 s with the
hand-written ``char{0,32}`` / ``char{0,512}`` grammar this module used before,
i.e. minutes per batch on the real model.

After the grammar, :class:`scripts.evaluation.generation.closing.AnswerCloser` (one cursor per
row, following the answer byte by byte) closes a string value once it has taken
``schema_bounds.max_string_tokens`` tokens, bans ``\\uD800``-``\\uDFFF`` escapes,
and, as the answer nears ``max_new_tokens``, keeps only tokens after which the
shortest valid completion (close the string, end the list, ``null`` for the
remaining slots, ``}``, stop) still fits. So every constrained answer is complete
and schema-valid within the budget actually given; ``min_new_tokens`` (the
all-``null`` answer, or the longest label, plus the stop token) is the smallest
budget allowed. The steps where that closing refused the model's own choice mark
the slots they cut (``Candidate.truncated_slots``). :func:`max_answer_tokens` is
the most a complete answer can take under the bounds (what a vLLM request, which
cannot close at a budget, needs as ``max_tokens``). :func:`validate_extraction`
checks what :func:`slots_json_schema` states; the tests prove every constrained
output passes it.

Slot constraints (``configs/datasets.yaml``: ``config.SlotSpec``) and who enforces
each. Checked in the installed xgrammar 0.2.8 by compiling small schemas and
matching strings (``tests/scripts/evaluation/generation/test_decoding.py`` repeats it):

* ``enum`` -> schema ``enum``: honoured (only the listed strings, written without
  ``\\u`` escapes). The closing finishes a started value to the enum value that is
  cheapest in tokens, never to a bare ``"``.
* ``minimum``/``maximum`` -> schema ``minimum``/``maximum``: honoured exactly
  (``68`` and ``5.5`` are refused for 0-5; no exponents; 6 decimals at most).
  A slot's own bounds replace ``schema_bounds``' for that slot; the closing
  finishes a number inside the slot's range.
* ``pattern`` -> schema ``pattern``: honoured, always as a whole-value match
  (``[A-Z]{3}`` refuses ``"xUSDx"``, anchors or not; the validator matches the
  same way), and characters JSON must escape (quote, backslash, controls) never
  match. The closing completes a started value with printable ASCII found by
  ``regex`` partial matching (``closing_spec.CloserSpec.pattern_completion``).
* ``max_items`` -> schema ``maxItems`` (capped by ``schema_bounds.max_list_items``):
  honoured.
* ``unique_items`` -> NOT in the schema: xgrammar 0.2.8 compiles ``uniqueItems``
  but ignores it (``["a","a"]`` passes), and vLLM's xgrammar backend rejects a
  schema that holds it. The closing (both engines) refuses a token that would
  finish an item equal to an earlier one; the validator checks it.
* ``max_chars`` -> NOT in the schema: xgrammar honours ``maxLength`` but, as above,
  a bounded string makes every decode step check the whole vocabulary. The
  closing counts characters and refuses tokens that would pass the bound (and
  tokens that open a value and carry its content along, so that content is
  counted); the validator checks it. ``pattern`` and ``max_chars`` do not combine
  (``SlotSpec`` says so), since a pattern could need more characters than are left.

A refusal by the character bound marks the slot truncated
(``closing.MAX_CHARS``), as the string and budget bounds do. An example's own
``slot_specs`` may narrow the constraints (``TaskSpec.slots_for``): ``dataset.stats``
checks training targets against that; the grammar holds the task's constraints
(one compiled grammar per task).
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from scripts.dataset.config import TaskSpec
from scripts.evaluation.generation.answer_schema import Slots, parse_output, slots_json_schema
from scripts.evaluation.generation.closing import AnswerCloser, truncated_slots
from scripts.evaluation.generation.closing_spec import CloserSpec
from scripts.evaluation.generation.config import SchemaBounds
from scripts.model.gemma3 import end_of_turn_eos_ids

# --- grammars --------------------------------------------------------------


def _ebnf_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def classification_grammar(labels: list[str]):
    import xgrammar as xgr

    return xgr.Grammar.from_ebnf("root ::= " + " | ".join(_ebnf_literal(label) for label in labels))


def extraction_grammar(slots: Slots, bounds: SchemaBounds):
    """``{"title":<value>,"brand":<value>,...}``: :func:`slots_json_schema`, compact, keys in catalog order."""
    import xgrammar as xgr

    return xgr.Grammar.from_json_schema(
        json.dumps(slots_json_schema(slots, bounds)), any_whitespace=False, separators=(",", ":")
    )


# --- logits processors that record confidence ------------------------------


class FirstStepLogits(LogitsProcessor):
    """Keeps the raw logits of given token ids at the first generated position."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = torch.tensor(token_ids)
        self.logits: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.logits is None:
            self.logits = scores[:, self.token_ids.to(scores.device)].float().cpu().clone()
        return scores


class ChosenTokenLogprobs(LogitsProcessor):
    """Log-probability of each generated token under the scores it was picked from.

    Placed last, after the grammar mask, so these are the *processed* scores:
    log-softmax over the tokens the grammar allows. Step t's distribution is
    kept until step t+1 reveals the token picked (``input_ids[:, -1]``);
    :meth:`finish` reads the last one from the returned sequences. Memory is one
    (batch, vocab) row instead of generate's ``output_scores`` (steps x batch x
    262k floats: 8 GiB for 16 x 512 tokens).
    """

    def __init__(self) -> None:
        self._previous: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._previous is not None:
            self._steps.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1).cpu())
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.LongTensor) -> torch.Tensor:
        """(batch, n_new) log-probs; entries past a row's stop token are meaningless."""
        n_new = new_tokens.shape[1]
        if self._previous is not None and len(self._steps) < n_new:
            last = new_tokens[:, len(self._steps) : len(self._steps) + 1].to(self._previous.device)
            self._steps.append(self._previous.gather(1, last).squeeze(1).cpu())
        self._previous = None
        if not self._steps:
            return torch.zeros(new_tokens.shape[0], 0)
        return torch.stack(self._steps[:n_new], dim=1)


# --- per-task decoder ------------------------------------------------------


@dataclass
class TaskDecoder:
    """Everything generation needs for one task: grammar, stop ids, label token ids, validation."""

    spec: TaskSpec
    bounds: SchemaBounds
    stop_token_ids: list[int]
    compiled: Any = None  # xgr.CompiledGrammar when constrained
    token_bytes: list[bytes] = field(default_factory=list)  # per token id: its bytes (decode, closing)
    closer: CloserSpec | None = None  # constrained: string bound, surrogate ban, closing within the budget
    label_first_ids: dict[str, int] | None = None
    warnings: list[str] = field(default_factory=list)
    closed_by: Counter = field(default_factory=Counter)  # answers closed early, per limit that fired
    _last_first_step: FirstStepLogits | None = None
    _last_chosen: ChosenTokenLogprobs | None = None
    _last_closer: AnswerCloser | None = None

    @classmethod
    def build(
        cls, tokenizer, model, spec: TaskSpec, bounds: SchemaBounds, *, constrained: bool = True,
        compiler=None,
    ) -> TaskDecoder:
        stop_ids = end_of_turn_eos_ids(tokenizer)
        decoder = cls(spec=spec, bounds=bounds, stop_token_ids=stop_ids)
        if constrained:
            compiler = compiler or make_compiler(tokenizer, model)
            if spec.kind == "classification":
                grammar = classification_grammar(spec.labels or [])
            else:
                grammar = extraction_grammar(spec.catalog or {}, bounds)
            decoder.compiled = compiler.compile_grammar(grammar)
            info = decoder.compiled.tokenizer_info
        else:
            info = tokenizer_info(tokenizer, model)
        decoder.token_bytes = list(info.decoded_vocab)
        if constrained:
            decoder.closer = closer_spec(tokenizer, info, spec, bounds)
        if spec.kind == "classification":
            labels = spec.labels or []
            first = {label: tokenizer.encode(label, add_special_tokens=False)[0] for label in labels}
            if len(set(first.values())) == len(first):
                decoder.label_first_ids = first
            else:
                decoder.warnings.append(
                    f"labels {sorted(first)} share a first token: label_probs are not recorded"
                )
        return decoder

    def label_token_counts(self, tokenizer) -> int:
        labels = self.spec.labels or [""]
        return max(len(tokenizer.encode(label, add_special_tokens=False)) for label in labels)

    @property
    def min_new_tokens(self) -> int | None:
        """Constrained: the smallest max_new_tokens that holds a complete answer (stop token included)."""
        return self.closer.min_new_tokens if self.closer else None

    def processors(self, max_new_tokens: int | None = None, greedy: bool = True) -> LogitsProcessorList:
        """Fresh processors for ONE generate call (xgrammar's keeps per-call matcher state).

        ``max_new_tokens``: the call's budget; constrained answers close within it
        (None: no budget closing, only the string bound). ``greedy``: the call does not sample
        (the closing then checks only the argmax while it fits; sampling keeps a checked top-k).
        """
        if self.closer and max_new_tokens is not None and max_new_tokens < self.closer.min_new_tokens:
            raise ValueError(f"max_new_tokens {max_new_tokens} < {self.closer.min_new_tokens}, the shortest "
                             f"complete answer")
        processors: list[LogitsProcessor] = []
        self._last_first_step = None
        self._last_closer = None
        if self.label_first_ids:
            # Before the grammar mask: raw logits (the label tokens are allowed
            # by the grammar anyway, so masked or not they read the same).
            self._last_first_step = FirstStepLogits(list(self.label_first_ids.values()))
            processors.append(self._last_first_step)
        if self.compiled is not None:
            import xgrammar as xgr

            processors.append(xgr.contrib.hf.LogitsProcessor(self.compiled))
        # Confidence before the closing: a token it forces reads the model's own (grammar-masked)
        # log-prob, not a renormalised 0.
        self._last_chosen = ChosenTokenLogprobs()
        processors.append(self._last_chosen)
        if self.closer is not None:
            self._last_closer = AnswerCloser(self.closer, max_new_tokens, greedy)
            processors.append(self._last_closer)
        return LogitsProcessorList(processors)

    def refused_steps(self, row: int) -> list[int]:
        """Generated-token indexes of the last call's row where the closing refused the model's choice."""
        if self._last_closer is None or not self._last_closer.interventions:
            return []
        return self._last_closer.interventions[row]

    def closing_limits(self, row: int) -> set[str]:
        """Which limits refused a token in the last call's row: closing.STRING_BOUND, closing.BUDGET."""
        if self._last_closer is None or not self._last_closer.limits:
            return set()
        return self._last_closer.limits[row]

    def lost_rows(self) -> int:
        """Rows of the last call whose output the closing could not follow (0 unless there is a bug)."""
        return self._last_closer.lost if self._last_closer is not None else 0

    def truncated(self, raw: str, token_ends: list[int], row: int) -> list[str]:
        """Slots of the last call's row that the closing cut (``["label"]`` for classification)."""
        return self.truncated_at(raw, token_ends, self.refused_steps(row))

    def truncated_at(self, raw: str, token_ends: list[int], steps: list[int]) -> list[str]:
        """Slots that the closing cut at decode ``steps`` (from either engine)."""
        if not steps:
            return []
        spans = json_value_spans(raw) if self.spec.kind == "extraction" else None
        return truncated_slots(raw, token_ends, steps, spans, self.spec.kind)

    def label_probs(self) -> list[dict[str, float]] | None:
        """Per row of the last call: softmax over the labels' first-token logits."""
        if self._last_first_step is None or self._last_first_step.logits is None:
            return None
        probs = torch.softmax(self._last_first_step.logits.double(), dim=-1)
        labels = list(self.label_first_ids or {})
        return [{label: float(p) for label, p in zip(labels, row)} for row in probs]

    def token_logprobs(self, new_tokens: torch.LongTensor) -> torch.Tensor:
        assert self._last_chosen is not None, "call processors() before generate"
        return self._last_chosen.finish(new_tokens)

    def parse(self, raw: str) -> tuple[Any, bool]:
        return parse_output(raw, self.spec, self.bounds)

    def decode(self, ids: list[int]) -> tuple[str, list[int]]:
        """The answer text of generated ids (stop token excluded) and each token's end offset in it."""
        return decode_tokens(self.token_bytes, ids)


def tokenizer_info(tokenizer, model):
    """xgrammar's view of the vocabulary: vocab_size from the model, or from a model config (the vLLM
    path holds no HF model), because Gemma pads the embedding past the tokenizer."""
    import xgrammar as xgr

    vocab_size = getattr(model, "config", model).vocab_size
    return xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=end_of_turn_eos_ids(tokenizer)
    )


def closer_spec(tokenizer, info, spec: TaskSpec, bounds: SchemaBounds) -> CloserSpec:
    """The closing of ``spec``'s answers over xgrammar's token bytes ``info`` (one per task; shared by
    the HF processor and the vLLM one, which builds it in the engine from the same inputs)."""
    token_bytes = list(info.decoded_vocab)
    quote = torch.tensor([b.startswith(b'"') for b in token_bytes]) if spec.kind == "extraction" else None
    excluded = set(tokenizer.all_special_ids) | set(info.special_token_ids)
    return CloserSpec.for_task(spec, token_bytes, excluded, end_of_turn_eos_ids(tokenizer), quote, bounds)


def make_compiler(tokenizer, model):
    """One GrammarCompiler per model."""
    import xgrammar as xgr

    return xgr.GrammarCompiler(tokenizer_info(tokenizer, model))


# --- slot confidence -------------------------------------------------------


def decode_tokens(token_bytes: list[bytes], ids: list[int]) -> tuple[str, list[int]]:
    """``(text, end)``: the UTF-8 text of the tokens' bytes and where each token's text ends in it.

    The bytes are the ones the grammar checked (xgrammar's ``decoded_vocab``), decoded
    incrementally with ``errors="replace"``: a character belongs to the token that completes
    it (a token that only starts one ends where it began), and an invalid sequence (byte
    tokens spelling a UTF-16 surrogate, which xgrammar lets through; a character cut off
    by max_new_tokens) becomes U+FFFD without taking the ASCII byte after it along, as the
    tokenizer's byte-fallback decoding does with a closing quote.
    """
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces, ends, length = [], [], 0
    for i, token in enumerate(ids):
        piece = utf8.decode(token_bytes[token], final=i == len(ids) - 1)
        pieces.append(piece)
        length += len(piece)
        ends.append(length)
    return "".join(pieces), ends


def json_value_spans(text: str) -> dict[str, tuple[int, int]] | None:
    """Character span of each top-level value of a JSON object text; None if it is not one."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    try:
        i = skip(0)
        if text[i] != "{":
            return None
        i = skip(i + 1)
        if text[i] == "}":
            return spans
        while True:
            if text[i] != '"':
                return None
            key, i = json.decoder.scanstring(text, i + 1)
            i = skip(i)
            if text[i] != ":":
                return None
            start = skip(i + 1)
            _, end = decoder.raw_decode(text, start)
            spans[key] = (start, end)
            i = skip(end)
            if text[i] == "}":
                return spans
            if text[i] != ",":
                return None
            i = skip(i + 1)
    except (IndexError, ValueError):
        return None


def value_tokens(spans: dict[str, tuple[int, int]], token_ends: list[int],
                 through_end: bool = False) -> dict[str, list[int]]:
    """Per key of ``spans`` (:func:`json_value_spans`): the indices of its value's tokens, given each
    token's end offset. They are the tokens that overlap the value's characters (quotes and ``null``
    included) and the token that ends where the value starts; ``through_end`` adds the token right
    after it (the ``,``/``}`` that ends it, or a string's last characters with it).

    The token before the value counts because Gemma decides a value's type there: ``":"`` (key
    close, colon, the string's opening quote) against ``":`` (then ``null`` or a number) is one
    token, and after ``":`` the model writes ``null`` with near certainty. Without it a ``null``
    would always look certain (and right), however unsure the model was to leave the slot empty.
    """
    starts = [0] + token_ends[:-1]
    out: dict[str, list[int]] = {}
    for key, (lo, hi) in spans.items():
        end = hi + 1 if through_end else hi
        out[key] = [i for i, (s, e) in enumerate(zip(starts, token_ends))
                    if (s < end and e >= lo and e > s) or (s == e and lo <= s < hi)]
    return out


def slot_logprobs(
    text: str, token_ends: list[int], logprobs: list[float]
) -> dict[str, float] | None:
    """Per top-level key: mean log-prob of its value's tokens (:func:`value_tokens`): choosing
    ``null`` over a value, or where a string ends, is part of the answer."""
    spans = json_value_spans(text)
    if spans is None:
        return None
    return {key: float(sum(logprobs[i] for i in picked) / len(picked))
            for key, picked in value_tokens(spans, token_ends).items() if picked}
