"""Escalation curve: coverage/accuracy per threshold and the recommended threshold."""

from __future__ import annotations

import math

import pytest

from scripts.contracts import Candidate
from scripts.evaluation.judging.escalation import EscalationPoint, confidence, escalation_curve


def _cand(**kw) -> Candidate:
    base = dict(id="x", task="t", kind="classification", prompt_sha256="0", model="m", constrained=True,
                raw="YES", parsed="YES", valid=True, latency_s=0.1, prompt_tokens=10, output_tokens=1)
    return Candidate(**{**base, **kw})


def test_confidence_from_label_probs_and_slot_logprobs():
    assert confidence(_cand(label_probs={"YES": 0.2, "NO": 0.8})) == 0.8
    ext = _cand(kind="extraction", slot_logprob={"title": -0.01, "price": math.log(0.7)})
    assert confidence(ext) == pytest.approx(0.7)
    assert confidence(_cand(valid=False, label_probs={"YES": 0.99, "NO": 0.01})) is None
    assert confidence(_cand()) is None


def test_curve_and_recommendation():
    points = [EscalationPoint(0.99, True, 100), EscalationPoint(0.97, True, 100), EscalationPoint(0.9, True, 100),
              EscalationPoint(0.8, False, 100), EscalationPoint(0.6, True, 100), EscalationPoint(None, False, 500)]
    out = escalation_curve(points, [0.5, 0.85, 0.95], target_accuracy=0.95)
    rows = {r.threshold: r for r in out.curve}
    assert rows[0.5].kept == 5 and rows[0.5].accuracy_kept == 0.8
    assert rows[0.85].kept == 3 and rows[0.85].accuracy_kept == 1.0
    assert rows[0.85].coverage == 0.5 and rows[0.85].prompt_tokens_saved == 300
    assert rows[0.85].prompt_tokens_saved_share == pytest.approx(300 / 1000)
    assert rows[0.85].accuracy_overall == 1.0  # the rest go to the strong model
    assert out.recommended.threshold == 0.85  # lowest threshold meeting the target


def test_no_threshold_meets_the_target():
    out = escalation_curve([EscalationPoint(0.9, False, 1)], [0.5, 0.9], target_accuracy=0.9)
    assert out.recommended is None and out.curve[0].accuracy_kept == 0.0
