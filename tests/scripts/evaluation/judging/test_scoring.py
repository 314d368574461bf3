"""Slot scorers on tricky values, and classifier metrics against a hand-computed confusion matrix."""

from __future__ import annotations

import pytest

from scripts.config import REPO_ROOT, load_config
from scripts.evaluation.judging.config import JudgeConfig, SlotRule
from scripts.evaluation.judging.scoring import (
    bootstrap_ci, classification_metrics, invalid_slot, normalise_text, parse_number, score_slot,
)

NUMERIC = SlotRule(scorer="numeric", tolerance=0.01)


@pytest.mark.parametrize("text, value", [
    ("$1,299.00", 1299.0), ("1.299,00 EUR", 1299.0), ("1 299,00 zł", 1299.0), ("£12.99", 12.99),
    (1299, 1299.0), (12.5, 12.5), ("-5", -5.0), ("4.5", 4.5), ("n/a", None), (True, None), (None, None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("reference, candidate, passed", [
    (1299, "$1,299.00", True),
    (1299.0, "1.299,00 EUR", True),
    ("$1,299.00", 1299, True),
    (100.0, 100.9, True),     # inside 1%
    (100.0, 101.5, False),    # outside 1%
    (19.99, "19,99 €", True),
    (19.99, "cheap", False),
])
def test_numeric_with_tolerance(reference, candidate, passed):
    s = score_slot(reference, candidate, NUMERIC)
    assert s.passed is passed and s.method == "numeric"
    assert s.outcome == ("correct" if passed else "wrong")
    assert 0.0 <= s.score <= 1.0


def test_exact_normalises_nfkc_case_and_whitespace():
    rule = SlotRule(scorer="exact")
    assert normalise_text("  ＮＩＫＥ\u00a0 Air ") == "nike air"
    assert score_slot("Nike Air", "  ＮＩＫＥ\u00a0 air ", rule).passed
    assert score_slot("Straße", "STRASSE", rule).passed  # casefold, not lower()
    assert not score_slot("Nike", "Adidas", rule).passed
    assert score_slot(120, "120", rule).passed and score_slot(12.0, 12, rule).passed


def test_set_f1_ignores_order_and_normalises_items():
    rule = SlotRule(scorer="set", threshold=1.0)
    s = score_slot(["Men", "Shoes", "Running"], ["running", "MEN ", "shoes"], rule)
    assert s.passed and s.score == 1.0
    partial = score_slot(["Men", "Shoes"], ["Men"], rule)
    assert not partial.passed and partial.score == pytest.approx(2 * 1 / 3, abs=1e-3)


def test_fuzzy_threshold_and_grey_band_undecided():
    rule = SlotRule(scorer="fuzzy", threshold=0.9, llm_when="grey", grey_band=(0.5, 0.9))
    assert score_slot("Blue Cotton Shirt", "shirt cotton blue", rule).passed  # word order ignored
    grey = score_slot("Blue Cotton Shirt", "Blue Shirt", rule)
    assert not grey.passed and grey.undecided and 0.5 <= grey.score < 0.9
    far = score_slot("Blue Cotton Shirt", "Garden hose", rule)
    assert not far.passed and not far.undecided


def test_llm_when_not_exact_and_llm_scorer():
    title = SlotRule(scorer="fuzzy", threshold=0.9, llm_when="not_exact")
    assert not score_slot("Blue Shirt", "blue  shirt", title).undecided
    assert score_slot("Blue Shirt", "Blue Shirts", title).undecided
    llm = SlotRule(scorer="llm")
    exact = score_slot("Red", "red", llm)
    assert exact.passed and not exact.undecided
    assert score_slot("Red", "crimson", llm).undecided


@pytest.mark.parametrize("reference, candidate, outcome, passed", [
    (None, "Nike", "hallucination", False),
    ("", 12.5, "hallucination", False),
    ([], ["Shoes"], "hallucination", False),
    ("Nike", None, "omission", False),
    (["Shoes"], [], "omission", False),
    (None, None, "correct", True),
    (None, "  ", "correct", True),
])
def test_null_cases(reference, candidate, outcome, passed):
    for scorer in ("exact", "numeric", "fuzzy", "set", "llm"):
        s = score_slot(reference, candidate, SlotRule(scorer=scorer))
        assert (s.outcome, s.passed, s.undecided) == (outcome, passed, False), scorer


def test_invalid_candidate_is_wrong_not_skipped():
    s = invalid_slot()
    assert (s.passed, s.outcome, s.method, s.score) == (False, "wrong", "invalid", 0.0)


def test_example_slot_specs_override_config_but_keep_llm_policy():
    cfg = load_config(REPO_ROOT / "configs/judge_slots.yaml", JudgeConfig)
    title = cfg.rule_for("productpage_extractor", "title", "string", {"type": "string", "scorer": "fuzzy"})
    assert title.scorer == "fuzzy" and title.llm_when == "not_exact"
    price = cfg.rule_for("productpage_extractor", "price", "number", {"scorer": "numeric", "tolerance": 0.05})
    assert price.scorer == "numeric" and price.tolerance == 0.05
    assert cfg.rule_for("productpage_extractor", "sku", "string", {"scorer": "bogus"}).scorer == "exact"
    assert cfg.rule_for("productpage_extractor", "categories", "string_list").scorer == "set"


def test_classification_metrics_hand_computed():
    # reference YES: 8 -> 6 YES, 1 NO, 1 invalid; reference NO: 12 -> 2 YES, 10 NO
    refs = ["YES"] * 8 + ["NO"] * 12
    preds = ["YES"] * 6 + ["NO"] + [None] + ["YES"] * 2 + ["NO"] * 10
    m = classification_metrics(refs, preds, ["YES", "NO"])
    assert m["labels"] == ["YES", "NO", "<invalid>"]
    assert m["confusion"]["YES"] == {"YES": 6, "NO": 1, "<invalid>": 1}
    assert m["confusion"]["NO"] == {"YES": 2, "NO": 10, "<invalid>": 0}
    assert m["accuracy"] == pytest.approx(16 / 20)
    assert m["precision"] == pytest.approx(6 / 8)
    assert m["recall"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(0.75)
    # kappa: p_o = 0.8; p_e = (8*8 + 12*11 + 0*1) / 400 = 196/400 = 0.49
    assert m["kappa"] == pytest.approx((0.8 - 0.49) / (1 - 0.49), abs=1e-6)


def test_kappa_edge_cases():
    assert classification_metrics(["YES", "NO"], ["YES", "NO"], ["YES", "NO"])["kappa"] == 1.0
    assert classification_metrics(["YES", "YES"], ["YES", "YES"], ["YES", "NO"])["kappa"] == 1.0
    m = classification_metrics(["NO", "NO"], ["NO", "NO"], ["YES", "NO"])
    assert m["precision"] is None and m["recall"] is None and m["accuracy"] == 1.0


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    refs = ["YES"] * 30 + ["NO"] * 30
    preds = ["YES"] * 25 + ["NO"] * 5 + ["NO"] * 27 + ["YES"] * 3
    a = bootstrap_ci(refs, preds, ["YES", "NO"], resamples=300, seed=7)
    b = bootstrap_ci(refs, preds, ["YES", "NO"], resamples=300, seed=7)
    assert a == b
    acc = classification_metrics(refs, preds, ["YES", "NO"])["accuracy"]
    assert a["accuracy"][0] < acc < a["accuracy"][1] and a["accuracy"][1] <= 1.0
    assert bootstrap_ci([], [], ["YES", "NO"])["accuracy"] is None
