"""Slot constraints proposed from training targets, and targets that break the configured ones."""

import yaml

from scripts.contracts import CleanRecord
from scripts.dataset.config import SlotSpec, StatsSettings, TaskSpec
from scripts.dataset.constraints import ConstraintAccumulator, propose, proposals_yaml

SETTINGS = StatsSettings(constraint_min_values=5)
SPEC = TaskSpec(kind="extraction", system_prompt="x", slots={
    "title": "string",
    "availability": {"type": "string", "enum": ["in_stock", "out_of_stock"]},
    "rating": {"type": "number", "minimum": 0, "maximum": 5},
    "categories": {"type": "string_list", "unique_items": True},
    "image_url": "string",
    "review_count": "integer",
})


def _record(i, slot_specs=None):
    return CleanRecord(id=f"p{i}", task="t", kind="extraction", system_prompt="", prompt="x", target="{}",
                       domain="d", schema_version="v2", prompt_chars=1, slot_specs=slot_specs)


def _accumulate(targets, slot_specs=None):
    acc = ConstraintAccumulator(SPEC, SETTINGS)
    for i, target in enumerate(targets):
        acc.add(_record(i, slot_specs), target)
    return acc


def test_few_distinct_strings_become_an_enum_with_their_counts():
    got = propose("string", ["in_stock"] * 8 + ["preorder"] * 5, SETTINGS)
    assert got.constraints == {"enum": ["in_stock", "preorder"]}
    assert "13 values, 2 distinct: in_stock 8, preorder 5" == got.evidence


def test_free_text_gets_max_chars_with_the_margin_and_urls_a_pattern():
    titles = propose("string", [f"title {i:02d}" + "x" * i for i in range(30)], SETTINGS)
    assert titles.constraints == {"max_chars": 56}  # longest 8 + 29 = 37 chars, * 1.5 rounded up
    assert "longest 37 chars (+50% margin)" in titles.evidence
    urls = propose("string", [f"https://shop.example/{i}.jpg" for i in range(30)], SETTINGS)
    assert urls.constraints["pattern"] == r"^https?://\S+$" and "all absolute URL" in urls.evidence
    codes = propose("string", ["EUR", "USD", "GBP", "PLN", "CHF", "SEK"] * 3 + ["NOK"], SETTINGS)
    assert codes.constraints["pattern"] == "^[A-Z]{3}$"  # NOK seen once: not an enum


def test_numbers_lists_and_the_yaml_to_paste():
    rating = propose("number", [2.8, 4.1, 5.0, 3.3, 4.9], SETTINGS)
    assert rating.constraints == {"minimum": 0, "maximum": 7.5}
    assert rating.evidence.startswith("5 values in [2.8, 5]")
    count = propose("integer", [-4, 10, 2534], SETTINGS)
    assert count.constraints == {"minimum": -6, "maximum": 3801}
    lists = propose("string_list", [["A", "B"], ["A"], ["Garden", "Hoses", "Spray"]], SETTINGS)
    assert lists.constraints == {"unique_items": True, "max_items": 5, "max_chars": 9}
    assert "0 repeat an item" in lists.evidence
    repeated = propose("string_list", [["A", "A"], ["B"]], SETTINGS)
    assert "unique_items" not in repeated.constraints

    text = proposals_yaml("t", SPEC, {"rating": rating, "categories": lists})
    pasted = yaml.safe_load(text)["slots"]
    assert list(pasted) == SPEC.slot_order  # catalog order kept
    assert pasted["rating"] == {"type": "number", "minimum": 0, "maximum": 7.5}
    assert pasted["availability"] == {"type": "string", "enum": ["in_stock", "out_of_stock"]}  # configured, kept
    assert pasted["title"] == "string"
    assert "# 5 values in [2.8, 5]" in text
    TaskSpec(kind="extraction", system_prompt="x", slots=pasted)  # what is pasted loads


def test_targets_breaking_configured_constraints_are_counted_with_ids():
    ok = {"availability": "in_stock", "rating": 4.5, "categories": ["A", "B"]}
    acc = _accumulate([ok, ok | {"rating": 68}, ok | {"availability": "currently unavailable"},
                       ok | {"categories": ["Food", "Food"]}, ok | {"rating": 98}])
    assert acc.violations["rating"].count == 2 and acc.violations["rating"].example_ids == ["p1", "p4"]
    assert "68" in acc.violations["rating"].first and "[0, 5]" in acc.violations["rating"].first
    assert acc.violations["availability"].example_ids == ["p2"]
    assert "listed twice" in acc.violations["categories"].first
    assert "title" not in acc.violations


def test_an_example_slot_specs_narrows_but_never_widens():
    narrowed = SPEC.slots_for({"rating": {"maximum": 4, "scorer": "numeric"},
                               "availability": {"enum": ["in_stock", "preorder"]},
                               "title": {"max_chars": 3, "minimum": 2}})  # minimum does not apply to text
    assert narrowed["rating"].maximum == 4 and narrowed["rating"].minimum == 0
    assert narrowed["availability"].enum == ["in_stock"]  # intersected: preorder is not configured
    assert narrowed["title"] == SlotSpec(type="string", max_chars=3)
    assert SPEC.slots_for({"rating": {"maximum": 9}})["rating"].maximum == 5  # never widens
    assert SPEC.slots_for({"rating": "garbage"})["rating"] == SPEC.catalog["rating"]
    acc = _accumulate([{"rating": 4.5}], slot_specs={"rating": {"maximum": 4}})
    assert acc.violations["rating"].count == 1
