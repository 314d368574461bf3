"""Escalation policy: on how many pages can the small model replace the strong one?

    from scripts.evaluation.judging.escalation import confidence, escalation_curve
    conf = confidence(candidate)        # classifier: max label prob; extractor: exp(min slot mean logprob)
    curve = escalation_curve(points, thresholds=[0.5, 0.9], target_accuracy=0.98)

A page whose confidence is at or above the threshold is kept by the small
model; the rest are escalated to the strong model (assumed correct, it is the
reference). Invalid outputs and pages without confidence are always escalated.
The recommendation is the lowest threshold (most pages kept) whose accuracy on
the kept pages meets the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scripts.contracts import Candidate, Escalation, EscalationRow


@dataclass
class EscalationPoint:
    confidence: float | None
    correct: bool
    prompt_tokens: int = 0


def confidence(candidate: Candidate) -> float | None:
    """The small model's confidence in [0, 1], or None when it cannot be trusted at all."""
    if not candidate.valid:
        return None
    if candidate.truncated_slots:  # closed early: some slot is cut, whatever the tokens' probabilities
        return 0.0
    if candidate.label_probs:
        return float(max(candidate.label_probs.values()))
    if candidate.slot_logprob:
        values = [v for v in candidate.slot_logprob.values() if v is not None and not math.isnan(v)]
        if not values:
            return None
        worst = min(values)
        return float(math.exp(min(worst, 0.0)))  # logprob -> probability; clamp tiny positive noise
    return None


def escalation_curve(
    points: Sequence[EscalationPoint], thresholds: Sequence[float], target_accuracy: float, min_kept: int = 1
) -> Escalation:
    n = len(points)
    total_tokens = sum(p.prompt_tokens for p in points)
    rows = []
    for t in sorted(set(float(x) for x in thresholds)):
        kept = [p for p in points if p.confidence is not None and p.confidence >= t]
        correct = sum(p.correct for p in kept)
        tokens = sum(p.prompt_tokens for p in kept)
        rows.append(EscalationRow(
            threshold=t,
            kept=len(kept),
            coverage=round(len(kept) / n, 4) if n else 0.0,
            accuracy_kept=round(correct / len(kept), 4) if kept else None,
            # escalated pages get the strong model's (= the reference) answer
            accuracy_overall=round((correct + n - len(kept)) / n, 4) if n else None,
            strong_calls_saved=round(len(kept) / n, 4) if n else 0.0,
            prompt_tokens_saved=tokens,
            prompt_tokens_saved_share=round(tokens / total_tokens, 4) if total_tokens else 0.0,
        ))
    meeting = [r for r in rows if r.kept >= min_kept and r.accuracy_kept is not None
               and r.accuracy_kept >= target_accuracy]
    best = min(meeting, key=lambda r: r.threshold) if meeting else None
    return Escalation(n=n, target_accuracy=target_accuracy,
                      with_confidence=sum(p.confidence is not None for p in points), curve=rows, recommended=best)
