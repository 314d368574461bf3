"""Grammar-constrained decoding (xgrammar) and the confidence read from the logits.

    from scripts.evaluation.decoding import TaskDecoder
    decoder = TaskDecoder.build(tokenizer, model, task_spec, bounds, constrained=True)
    out = model.generate(ids, attention_mask=mask, logits_processor=decoder.processors(), ...)
    parsed, valid = decoder.validate(raw_text)

What the grammar allows, per task kind (the registry in configs/datasets.yaml):

* classification: exactly one of the task's labels, then a stop token.
* extraction: one compact JSON object (``,`` and ``:`` without spaces, keys
  sorted -- the same canonical form as the training targets, which
  ``dataset.clean`` writes with ``orjson`` ``OPT_SORT_KEYS``), every slot key
  present, each value ``null`` or of the slot's type: bounded string (JSON
  escapes allowed), bounded number / integer, boolean, or a bounded list of
  bounded strings. No other keys.

The extraction grammar is composed with ``xgr.Grammar.concat`` instead of
compiling :func:`slots_json_schema` directly because xgrammar 0.2.8 turns a
string with ``maxLength`` into ``[^"\\\\\\r\\n]{0,N}``: no escapes at all, so a
title such as ``12" monitor`` could not be written. Numbers do come from
xgrammar's schema converter (``Grammar.from_json_schema`` with
minimum/maximum), which bounds the digits. :func:`validate_extraction` checks
exactly what :func:`slots_json_schema` states; the tests prove every
constrained output passes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from scripts.config import TaskSpec
from scripts.evaluation.config import SchemaBounds
from scripts.modeling import end_of_turn_eos_ids

# A JSON string character: anything but `"`, `\` and control characters, or an
# escape. \u escapes of UTF-16 surrogates (D800-DFFF) are left out: a lone one
# cannot be written back as UTF-8; characters outside the BMP go in raw.
_STRING_CHAR_EBNF = r"""
char ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" nonsurrogate )
nonsurrogate ::= [0-9a-cA-CeEfF] hex hex hex | [dD] [0-7] hex hex
hex ::= [0-9a-fA-F]
"""


# --- schema and validation -------------------------------------------------


def slots_json_schema(slots: dict[str, str], bounds: SchemaBounds) -> dict[str, Any]:
    """The JSON schema a task's answer must satisfy (all keys required, all nullable)."""
    string = {"type": "string", "maxLength": bounds.max_string_length}
    types = {
        "string": string,
        "number": {"type": "number", "minimum": bounds.number_minimum, "maximum": bounds.number_maximum},
        "integer": {
            "type": "integer", "minimum": bounds.integer_minimum, "maximum": bounds.integer_maximum
        },
        "boolean": {"type": "boolean"},
        "string_list": {"type": "array", "items": string, "maxItems": bounds.max_list_items},
    }
    return {
        "type": "object",
        "properties": {
            name: {"anyOf": [types[slots[name]], {"type": "null"}]} for name in sorted(slots)
        },
        "required": sorted(slots),
        "additionalProperties": False,
    }


def validate_extraction(value: Any, slots: dict[str, str], bounds: SchemaBounds) -> list[str]:
    """Violations of :func:`slots_json_schema` (empty list = valid)."""
    if not isinstance(value, dict):
        return [f"expected an object, got {type(value).__name__}"]
    errors = [f"missing key {k!r}" for k in sorted(set(slots) - set(value))]
    errors += [f"unknown key {k!r}" for k in sorted(set(value) - set(slots))]

    def string_ok(v: Any) -> bool:
        return isinstance(v, str) and len(v) <= bounds.max_string_length

    for name, kind in slots.items():
        v = value.get(name)
        if v is None:
            continue
        if kind == "string":
            ok = string_ok(v)
        elif kind == "number":
            ok = (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and bounds.number_minimum <= v <= bounds.number_maximum
            )
        elif kind == "integer":
            ok = (
                isinstance(v, int) and not isinstance(v, bool)
                and bounds.integer_minimum <= v <= bounds.integer_maximum
            )
        elif kind == "boolean":
            ok = isinstance(v, bool)
        else:  # string_list
            ok = isinstance(v, list) and len(v) <= bounds.max_list_items and all(map(string_ok, v))
        if not ok:
            errors.append(f"{name}: {v!r} is not a valid {kind}")
    return errors


def parse_output(raw: str, spec: TaskSpec, bounds: SchemaBounds) -> tuple[Any, bool]:
    """(parsed, valid): a label or the JSON object; parsed is None when invalid."""
    if spec.kind == "classification":
        label = raw.strip()
        return (label, True) if label in (spec.labels or []) else (None, False)
    try:
        value = json.loads(raw)
    except ValueError:
        return None, False
    if validate_extraction(value, spec.slots or {}, bounds):
        return None, False
    return value, True


# --- grammars --------------------------------------------------------------


def _ebnf_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _string_ebnf(max_len: int) -> str:
    return f'root ::= "\\"" char{{0,{max_len}}} "\\""\n' + _STRING_CHAR_EBNF


def _string_list_ebnf(max_len: int, max_items: int) -> str:
    return (
        f'root ::= "[" ( item ( "," item ){{0,{max_items - 1}}} )? "]"\n'
        f'item ::= "\\"" char{{0,{max_len}}} "\\""\n' + _STRING_CHAR_EBNF
    )


def classification_grammar(labels: list[str]):
    import xgrammar as xgr

    return xgr.Grammar.from_ebnf("root ::= " + " | ".join(_ebnf_literal(label) for label in labels))


def extraction_grammar(slots: dict[str, str], bounds: SchemaBounds):
    """``{"a":<value>,"b":<value>}`` with sorted keys; each value null or of the slot's type."""
    import xgrammar as xgr

    def ebnf(text: str):
        return xgr.Grammar.from_ebnf(text)

    def value(kind: str):
        if kind == "string":
            typed = ebnf(_string_ebnf(bounds.max_string_length))
        elif kind == "string_list":
            typed = ebnf(_string_list_ebnf(bounds.max_string_length, bounds.max_list_items))
        elif kind == "boolean":
            typed = ebnf('root ::= "true" | "false"')
        else:
            schema = slots_json_schema({"v": kind}, bounds)["properties"]["v"]["anyOf"][0]
            typed = xgr.Grammar.from_json_schema(schema, any_whitespace=False)
        return xgr.Grammar.union(typed, ebnf('root ::= "null"'))

    parts = []
    for i, name in enumerate(sorted(slots)):
        prefix = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        parts += [ebnf("root ::= " + _ebnf_literal(prefix)), value(slots[name])]
    parts.append(ebnf('root ::= "}"'))
    return xgr.Grammar.concat(*parts)


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
    label_first_ids: dict[str, int] | None = None
    warnings: list[str] = field(default_factory=list)
    _last_first_step: FirstStepLogits | None = None
    _last_chosen: ChosenTokenLogprobs | None = None

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
                grammar = extraction_grammar(spec.slots or {}, bounds)
            decoder.compiled = compiler.compile_grammar(grammar)
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

    def processors(self) -> LogitsProcessorList:
        """Fresh processors for ONE generate call (xgrammar's keeps per-call matcher state)."""
        processors: list[LogitsProcessor] = []
        self._last_first_step = None
        if self.label_first_ids:
            # Before the grammar mask: raw logits (the label tokens are allowed
            # by the grammar anyway, so masked or not they read the same).
            self._last_first_step = FirstStepLogits(list(self.label_first_ids.values()))
            processors.append(self._last_first_step)
        if self.compiled is not None:
            import xgrammar as xgr

            processors.append(xgr.contrib.hf.LogitsProcessor(self.compiled))
        self._last_chosen = ChosenTokenLogprobs()
        processors.append(self._last_chosen)
        return LogitsProcessorList(processors)

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


def make_compiler(tokenizer, model):
    """One GrammarCompiler per model: vocab_size from the model (Gemma pads past the tokenizer)."""
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=model.config.vocab_size, stop_token_ids=end_of_turn_eos_ids(tokenizer)
    )
    return xgr.GrammarCompiler(info)


# --- slot confidence -------------------------------------------------------


def token_end_offsets(tokenizer, ids: list[int], text: str) -> list[int]:
    """Character offset in ``text`` (= decode(ids)) where each token's text ends.

    From the decoded length of every prefix (exact for any tokenizer; O(n^2)
    decoding, ~10 ms for 512 tokens). A byte-fallback token that only starts a
    multi-byte character decodes to U+FFFD, so prefix lengths can dip; taking
    the minimum over later prefixes makes such a token end where its
    character ends.
    """
    ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    for i in range(len(ends) - 2, -1, -1):
        ends[i] = min(ends[i], ends[i + 1])
    if ends and ends[-1] != len(text):
        raise ValueError("token offsets do not add up to the decoded text")
    return ends


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


def slot_logprobs(
    text: str, token_ends: list[int], logprobs: list[float]
) -> dict[str, float] | None:
    """Per top-level key: mean log-prob of the tokens that overlap its value's characters.

    The value span includes quotes and ``null``: choosing ``null`` over a value
    (or where a string ends) is part of the answer.
    """
    spans = json_value_spans(text)
    if spans is None:
        return None
    starts = [0] + token_ends[:-1]
    out: dict[str, float] = {}
    for key, (lo, hi) in spans.items():
        picked = [
            lp for s, e, lp in zip(starts, token_ends, logprobs)
            if (s < hi and e > lo) or (s == e and lo <= s < hi)
        ]
        if picked:
            out[key] = float(sum(picked) / len(picked))
    return out
