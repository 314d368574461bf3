"""The answer's schema per task: the JSON schema the grammar and vLLM compile, the validator and parser of
an answer, and the longest answer in tokens. Torch-free: the dataset stats, the export and the benches
read it without loading a model.

    from scripts.evaluation.generation.answer_schema import parse_output, slots_json_schema
    schema = slots_json_schema(task_spec.catalog, bounds)   # properties in catalog order, all required
    parsed, valid = parse_output(raw_text, task_spec, bounds)

Which slot constraints the schema holds and which the closing keeps instead: ``decoding``'s module doc.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from scripts.dataset.config import SlotSpec, TaskSpec, pattern_matches
from scripts.evaluation.generation.config import SchemaBounds

Slots = Mapping[str, "str | SlotSpec"]


def slot_specs(slots: Slots) -> dict[str, SlotSpec]:
    """``{name: SlotSpec}`` from a task's ``catalog`` or a plain ``{name: type}`` mapping."""
    return {name: s if isinstance(s, SlotSpec) else SlotSpec(type=s) for name, s in slots.items()}


def numeric_range(slot: SlotSpec, bounds: SchemaBounds) -> tuple[float, float]:
    """A number/integer slot's inclusive range: its own ``minimum``/``maximum`` where set (they replace
    ``schema_bounds``' for that slot), else the bounds'."""
    low, high = ((bounds.integer_minimum, bounds.integer_maximum) if slot.type == "integer"
                 else (bounds.number_minimum, bounds.number_maximum))
    low = low if slot.minimum is None else slot.minimum
    high = high if slot.maximum is None else slot.maximum
    if slot.type == "integer":
        return int(math.ceil(low)), int(math.floor(high))
    return low, high


def list_limit(slot: SlotSpec, bounds: SchemaBounds) -> int:
    """Most items of a string_list slot: its ``max_items`` capped by ``schema_bounds.max_list_items``."""
    return min(bounds.max_list_items, slot.max_items or bounds.max_list_items)


def _value_schema(slot: SlotSpec, bounds: SchemaBounds) -> dict[str, Any]:
    if slot.type == "string":
        out: dict[str, Any] = {"type": "string"}
        if slot.enum is not None:
            out["enum"] = list(slot.enum)
        if slot.pattern is not None:
            out["pattern"] = slot.pattern
        return out
    if slot.type in ("number", "integer"):
        low, high = numeric_range(slot, bounds)
        return {"type": slot.type, "minimum": low, "maximum": high}
    if slot.type == "boolean":
        return {"type": "boolean"}
    return {"type": "array", "items": {"type": "string"}, "maxItems": list_limit(slot, bounds)}


def slots_json_schema(slots: Slots, bounds: SchemaBounds) -> dict[str, Any]:
    """The JSON schema a task's answer must satisfy (all keys required, all nullable).

    ``properties`` and ``required`` list the slots in ``slots``' own (catalog) order: xgrammar
    generates the keys in that order, and so does vLLM's xgrammar backend with this schema.
    Holds what xgrammar enforces (enum, pattern, minimum/maximum, maxItems); ``max_chars`` and
    ``unique_items`` are enforced by ``closing.AnswerCloser`` and checked by
    :func:`validate_extraction` instead (see the module doc), and string length is bounded in
    tokens at generation time, not here.
    """
    specs = slot_specs(slots)
    return {
        "type": "object",
        "properties": {
            name: {"anyOf": [_value_schema(slot, bounds), {"type": "null"}]} for name, slot in specs.items()
        },
        "required": list(specs),
        "additionalProperties": False,
    }


def _string_ok(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")  # a lone \ud800 escape parses, but no file or database can store it
    except UnicodeEncodeError:
        return False
    return True


def slot_violation(v: Any, slot: SlotSpec, bounds: SchemaBounds) -> str | None:
    """Why a non-null value breaks its slot (type, bounds or a constraint); None when it is valid."""
    kind = slot.type
    if kind == "string":
        if not _string_ok(v):
            return f"{v!r} is not a valid string"
        if slot.enum is not None and v not in slot.enum:
            return f"{v!r} is not one of {', '.join(slot.enum)}"
        if slot.max_chars is not None and len(v) > slot.max_chars:
            return f"{len(v)} characters, more than max_chars {slot.max_chars}"
        if slot.pattern is not None and not pattern_matches(slot.pattern, v):
            return f"{v!r} does not match pattern {slot.pattern!r}"
        return None
    if kind in ("number", "integer"):
        low, high = numeric_range(slot, bounds)
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not number or (kind == "integer" and not isinstance(v, int)):
            return f"{v!r} is not a valid {kind}"
        if not low <= v <= high:
            return f"{v!r} is outside [{low:g}, {high:g}]"
        return None
    if kind == "boolean":
        return None if isinstance(v, bool) else f"{v!r} is not a valid boolean"
    if not isinstance(v, list) or not all(map(_string_ok, v)):
        return f"{v!r} is not a valid string_list"
    if len(v) > list_limit(slot, bounds):
        return f"{len(v)} items, more than {list_limit(slot, bounds)}"
    if slot.unique_items and len(set(v)) != len(v):
        twice = next(item for item in v if v.count(item) > 1)
        return f"{twice!r} is listed twice (unique_items)"
    if slot.max_chars is not None and any(len(item) > slot.max_chars for item in v):
        return f"an item is longer than max_chars {slot.max_chars}"
    return None


def validate_extraction(value: Any, slots: Slots, bounds: SchemaBounds) -> list[str]:
    """Violations of :func:`slots_json_schema` and of the constraints it leaves to the closing
    (``max_chars``, ``unique_items``); empty list = valid."""
    specs = slot_specs(slots)
    if not isinstance(value, dict):
        return [f"expected an object, got {type(value).__name__}"]
    errors = [f"missing key {k!r}" for k in specs if k not in value]
    errors += [f"unknown key {k!r}" for k in value if k not in specs]
    for name, slot in specs.items():
        v = value.get(name)
        if v is None:
            continue
        problem = slot_violation(v, slot, bounds)
        if problem:
            errors.append(f"{name}: {problem}")
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
    if validate_extraction(value, spec.catalog or {}, bounds):
        return None, False
    return value, True


def max_answer_tokens(slots: Slots, bounds: SchemaBounds) -> int:
    """Most tokens a complete constrained extraction answer can take, stop token included.

    An upper bound from bytes (no allowed token is empty): each key literal and number
    at most one token per byte; a string at most ``max_string_tokens`` (an enum value at most
    its bytes; a ``max_chars`` string at most 4 bytes per character), then up to five more to
    finish a ``\\uXXXX`` escape, then its closing quote.
    """
    specs = slot_specs(slots)

    def string(slot: SlotSpec) -> int:
        if slot.enum is not None:
            return max(len(json.dumps(v, ensure_ascii=False).encode()) for v in slot.enum)
        most = bounds.max_string_tokens if slot.max_chars is None else min(bounds.max_string_tokens,
                                                                             4 * slot.max_chars)
        return most + 6

    def value(slot: SlotSpec) -> int:
        if slot.type == "string":
            return string(slot)
        if slot.type in ("number", "integer"):
            low, high = numeric_range(slot, bounds)
            digits = len(f"{max(abs(low), abs(high)):.0f}") + 1  # and the sign
            return digits + (7 if slot.type == "number" else 0)  # . and 6 decimals
        if slot.type == "boolean":
            return 5
        return 2 + list_limit(slot, bounds) * (string(slot) + 1)

    keys = sum(len(json.dumps(name, ensure_ascii=False).encode()) + 2 for name in specs)  # {"name": / ,"name":
    return keys + sum(max(value(slot), 4) for slot in specs.values()) + 2  # "}" and the stop token
