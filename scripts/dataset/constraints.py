"""Slot constraints learned from the training targets, and the targets that break the configured ones.

    fab dataset.stats --config configs/datasets.yaml     # prints both; stats.json keeps them

Per extraction slot, from the non-null values of the training split's targets:

* string: few distinct values (at most ``stats.enum_max_values``, each seen
  ``stats.enum_min_count`` times or more) -> ``enum``; otherwise ``max_chars``
  = the longest value plus ``stats.constraint_margin``; instead a ``pattern`` when
  every value has one of a few shapes (absolute URL, upper-case code of one length,
  digits): the two do not combine.
* number / integer: ``minimum: 0`` when no value is negative (else the lowest
  minus the margin of the range), ``maximum`` = the highest plus the margin.
* string_list: ``unique_items`` when no list repeats an item, ``max_items`` and
  ``max_chars`` (per item) = the largest seen plus the margin.

Slots with fewer than ``stats.constraint_min_values`` values get no proposal. Each
proposal carries the counts behind it, printed as YAML comments beside the line to
paste under the task's ``slots:``. Separately, every training target is checked
against the constraints already configured (narrowed by the example's own
``slot_specs``): a label the grammar could never produce is a label the model is
trained on and then forbidden to say.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Any

import yaml

from scripts.contracts import CleanRecord, ConstraintViolations, SlotProposal
from scripts.dataset.config import SlotSpec, StatsSettings, TaskSpec

EXAMPLE_IDS = 5  # example ids kept per violated slot
_SHAPES = (  # (pattern, what it means): proposed when every value matches
    (r"^https?://\S+$", "absolute URL"),
    (r"^[0-9]+$", "digits only"),
)


class ConstraintAccumulator:
    """One extraction task's training targets: values per slot, and the configured constraints they break."""

    def __init__(self, spec: TaskSpec, settings: StatsSettings):
        from scripts.evaluation.generation.config import SchemaBounds

        self.spec, self.settings = spec, settings
        self.values: dict[str, list[Any]] = defaultdict(list)
        self.violations: dict[str, ConstraintViolations] = {}
        # only the registry's constraints are checked here, not eval.yaml's global bounds
        self._bounds = SchemaBounds(max_list_items=10**9, number_minimum=-1e308, number_maximum=1e308,
                                    integer_minimum=-(10**18), integer_maximum=10**18)

    def add(self, record: CleanRecord, target: dict[str, Any]) -> None:
        from scripts.evaluation.generation.answer_schema import slot_violation

        slots = self.spec.slots_for(record.slot_specs)
        for name, slot in slots.items():
            value = target.get(name)
            if value is None:
                continue
            self.values[name].append(value)
            if not slot.constraint_keys():
                continue
            problem = slot_violation(value, slot, self._bounds)
            if problem:
                seen = self.violations.setdefault(name, ConstraintViolations(count=0, first=problem))
                seen.count += 1
                if len(seen.example_ids) < EXAMPLE_IDS:
                    seen.example_ids.append(record.id)

    def proposals(self) -> dict[str, SlotProposal]:
        out = {}
        for name, slot in (self.spec.catalog or {}).items():
            values = self.values.get(name, [])
            if len(values) < self.settings.constraint_min_values:
                continue
            proposal = propose(slot.type, values, self.settings)
            if proposal is not None:
                out[name] = proposal
        return out


def _margin_up(value: float, margin: float, integer: bool) -> float | int:
    grown = value + abs(value) * margin
    return int(math.ceil(grown)) if integer else _round_up(grown)


def _round_up(value: float) -> float:
    """Two significant digits, rounded away from the observed range (a bound to paste, not a datum)."""
    if value == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return float(math.ceil(value / scale) * scale)


def propose(kind: str, values: list[Any], settings: StatsSettings) -> SlotProposal | None:
    """The constraints the observed non-null ``values`` of one slot suggest, with the counts behind them."""
    margin = settings.constraint_margin
    pct = f"+{margin:.0%} margin"
    if kind == "string":
        strings = [v for v in values if isinstance(v, str)]
        counts = Counter(strings)
        if len(counts) <= settings.enum_max_values and min(counts.values()) >= settings.enum_min_count:
            return SlotProposal(
                constraints={"enum": [v for v, _ in counts.most_common()]},
                evidence=f"{len(strings)} values, {len(counts)} distinct: "
                         + ", ".join(f"{v} {n}" for v, n in counts.most_common()))
        longest = max(map(len, strings))
        out: dict[str, Any] = {"max_chars": int(math.ceil(longest * (1 + margin)))}
        evidence = f"{len(strings)} values, {len(counts)} distinct, longest {longest} chars ({pct})"
        for pattern, meaning in _SHAPES:
            if all(re.fullmatch(pattern, v) for v in strings):
                out = {"pattern": pattern}  # max_chars and pattern do not combine (config.SlotSpec)
                evidence += f"; all {meaning}"
                break
        else:
            lengths = {len(v) for v in strings}
            if len(lengths) == 1 and all(re.fullmatch(r"[A-Z]+", v) for v in strings):
                out = {"pattern": f"^[A-Z]{{{lengths.pop()}}}$"}
                evidence += "; all upper-case codes of one length"
        return SlotProposal(constraints=out, evidence=evidence)
    if kind in ("number", "integer"):
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        low, high = min(numbers), max(numbers)
        integer = kind == "integer"
        minimum = 0 if low >= 0 else -_margin_up(-low, margin, integer)
        return SlotProposal(
            constraints={"minimum": minimum, "maximum": _margin_up(high, margin, integer)},
            evidence=f"{len(numbers)} values in [{low:g}, {high:g}] ({pct}"
                     + ("; none negative: minimum 0)" if low >= 0 else ")"))
    if kind == "string_list":
        lists = [v for v in values if isinstance(v, list)]
        items = [item for v in lists for item in v if isinstance(item, str)]
        repeated = sum(len(set(v)) != len(v) for v in lists)
        out = {}
        if not repeated and any(len(v) > 1 for v in lists):
            out["unique_items"] = True
        longest_list = max(map(len, lists))
        out["max_items"] = max(1, int(math.ceil(longest_list * (1 + margin))))
        if items:
            out["max_chars"] = int(math.ceil(max(map(len, items)) * (1 + margin)))
        return SlotProposal(
            constraints=out,
            evidence=f"{len(lists)} lists, {repeated} repeat an item, at most {longest_list} items, longest item "
                     f"{max(map(len, items), default=0)} chars ({pct})")
    return None


def proposals_yaml(task: str, spec: TaskSpec, proposals: dict[str, SlotProposal]) -> str:
    """The proposals as the ``slots:`` lines of ``task`` to paste into configs/datasets.yaml, in catalog
    order, each with its counts as a comment; slots without one keep their configured entry."""
    lines = [f"# proposed from the training targets of {task}: paste under tasks.{task}.slots",
             "slots:"]
    for name, slot in (spec.catalog or {}).items():
        proposal = proposals.get(name)
        if proposal is None:
            entry = slot.model_dump(mode="json")
            note = "configured (too few values to propose)"
        else:
            entry = {"type": slot.type, **proposal.constraints}
            SlotSpec.model_validate(entry)  # a proposal is always a valid registry entry
            note = proposal.evidence
        # one line: `name: type` or `name: {type: ..., ...}`
        text = f"{name}: " + yaml.safe_dump(entry, default_flow_style=True, width=10**6, allow_unicode=True,
                                            sort_keys=False).strip().removesuffix("\n...").strip()
        lines.append(f"  {text}  # {note}")
    return "\n".join(lines) + "\n"
