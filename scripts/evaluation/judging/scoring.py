"""Deterministic slot scorers and classification metrics.

    from scripts.evaluation.judging.scoring import score_slot, classification_metrics, bootstrap_ci
    s = score_slot("$1,299.00", 1299, rule)            # SlotScore(score=1.0, passed=True, ...)
    m = classification_metrics(["YES", "NO"], ["YES", "YES"], labels=["YES", "NO"])

Null cases come first for every scorer: reference empty + prediction filled is
a hallucination, reference filled + prediction empty an omission, both empty
correct. A slot is `undecided` when its rule asks for the LLM judge (`llm`
scorer, `llm_when: not_exact`, or a score inside `grey_band`); the judge then
replaces its verdict, and without a judge it is reported as `not_judged`.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np
from price_parser import Price
from rapidfuzz import fuzz

from scripts.evaluation.judging.config import SlotRule

Outcome = Literal["correct", "wrong", "hallucination", "omission", "not_judged"]
INVALID_LABEL = "<invalid>"


@dataclass
class SlotScore:
    score: float
    passed: bool
    method: str  # exact|numeric|fuzzy|set|llm|invalid|truncated
    outcome: Outcome
    undecided: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- normalisation -----------------------------------------------------------


def normalise_text(value: Any) -> str:
    """NFKC, casefold, collapse whitespace; booleans/numbers through their JSON-ish text."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return " ".join(unicodedata.normalize("NFKC", str(value)).casefold().split())


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        return not value
    if isinstance(value, (list, tuple, set)):
        return all(is_empty(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return True
    return False


def parse_number(value: Any) -> float | None:
    """Numbers pass through; text like `$1,299.00` or `1.299,00 EUR` goes through price-parser."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    text = unicodedata.normalize("NFKC", str(value)).strip()
    try:
        return float(text)  # keeps a sign and plain decimals exactly
    except ValueError:
        pass
    return Price.fromstring(text).amount_float


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set)):
        return [v for v in value if not is_empty(v)]
    return [value]


# --- scorers ------------------------------------------------------------------


def exact_equal(reference: Any, candidate: Any) -> bool:
    ref_num, cand_num = _numeric_pair(reference, candidate)
    if ref_num is not None and cand_num is not None and not isinstance(reference, str):
        return ref_num == cand_num
    if isinstance(reference, (list, tuple)) or isinstance(candidate, (list, tuple)):
        return [normalise_text(v) for v in _as_list(reference)] == [normalise_text(v) for v in _as_list(candidate)]
    return normalise_text(reference) == normalise_text(candidate)


def _numeric_pair(reference: Any, candidate: Any) -> tuple[float | None, float | None]:
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        return float(reference), parse_number(candidate)
    return None, None


def fuzzy_score(reference: Any, candidate: Any) -> float:
    """rapidfuzz token_sort_ratio on normalised text, in [0, 1] (word order ignored, typos tolerated)."""
    return fuzz.token_sort_ratio(normalise_text(reference), normalise_text(candidate)) / 100.0


def set_f1(reference: Any, candidate: Any) -> float:
    ref = {normalise_text(v) for v in _as_list(reference)}
    cand = {normalise_text(v) for v in _as_list(candidate)}
    if not ref and not cand:
        return 1.0
    if not ref or not cand:
        return 0.0
    common = len(ref & cand)
    return 2 * common / (len(ref) + len(cand))


def score_slot(reference: Any, candidate: Any, rule: SlotRule) -> SlotScore:
    """Score one slot value against its reference under `rule` (see module doc)."""
    method = rule.scorer
    ref_empty, cand_empty = is_empty(reference), is_empty(candidate)
    if ref_empty and cand_empty:
        return SlotScore(1.0, True, method, "correct", detail="both empty")
    if ref_empty:
        return SlotScore(0.0, False, method, "hallucination", detail="reference empty, prediction filled")
    if cand_empty:
        return SlotScore(0.0, False, method, "omission", detail="reference filled, prediction empty")

    exact = exact_equal(reference, candidate)
    if method == "exact":
        score, passed = (1.0 if exact else 0.0), exact
    elif method == "numeric":
        score, passed, detail = _numeric(reference, candidate, rule)
        if detail:
            return SlotScore(score, passed, method, "correct" if passed else "wrong", detail=detail)
    elif method == "fuzzy":
        score = 1.0 if exact else fuzzy_score(reference, candidate)
        passed = score >= rule.threshold
    elif method == "set":
        score = set_f1(reference, candidate)
        passed = score >= rule.threshold
    else:  # llm: an exact match needs no judge; anything else does
        score = 1.0 if exact else fuzzy_score(reference, candidate)
        passed = exact
    undecided = not exact and (
        method == "llm"
        or rule.llm_when == "not_exact"
        or (rule.llm_when == "grey" and rule.grey_band[0] <= score < rule.grey_band[1])
    )
    return SlotScore(round(score, 4), passed, method, "correct" if passed else "wrong", undecided)


def _numeric(reference: Any, candidate: Any, rule: SlotRule) -> tuple[float, bool, str]:
    ref, cand = parse_number(reference), parse_number(candidate)
    if ref is None:  # reference is not a number: compare as text
        exact = exact_equal(reference, candidate)
        return (1.0 if exact else 0.0), exact, "reference not numeric; exact match used"
    if cand is None:
        return 0.0, False, "prediction not numeric"
    diff = abs(ref - cand)
    allowed = max(rule.absolute_tolerance, rule.tolerance * abs(ref))
    passed = diff <= allowed + 1e-12
    score = 1.0 if passed else max(0.0, 1.0 - diff / max(abs(ref), 1e-9))
    return round(score, 4), passed, ""


def invalid_slot() -> SlotScore:
    """An invalid candidate is wrong on every slot, never skipped."""
    return SlotScore(0.0, False, "invalid", "wrong", detail="candidate output was not valid")


def truncated_slot() -> SlotScore:
    """A slot that constrained decoding closed early (``Candidate.truncated_slots``) is wrong: a cut
    title is a wrong title, and a ``null`` forced at the budget is no answer, even where the
    reference is empty."""
    return SlotScore(0.0, False, "truncated", "wrong",
                     detail="closed early by constrained decoding (max_new_tokens or the string bound)")


# --- classification -------------------------------------------------------------


def classification_metrics(
    references: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str], positive: str = "YES"
) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 on `positive`, confusion matrix, Cohen's kappa.

    A prediction outside `labels` (or None: invalid output) is its own column
    `<invalid>` and always wrong.
    """
    refs, preds, cats = _encode(references, predictions, labels)
    counts = _confusion(refs, preds, len(cats))
    out = _metrics_from_confusion(counts, cats.index(positive) if positive in cats else 0)
    out["n"] = len(refs)
    out["labels"] = cats
    out["confusion"] = {cats[i]: {cats[j]: int(counts[i, j]) for j in range(len(cats))} for i in range(len(cats))}
    return out


def bootstrap_ci(
    references: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str],
    positive: str = "YES", resamples: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of accuracy/precision/recall/f1/kappa (seeded)."""
    refs, preds, cats = _encode(references, predictions, labels)
    names = ("accuracy", "precision", "recall", "f1", "kappa")
    if len(refs) == 0 or resamples <= 0:
        return {k: None for k in names}
    rng = np.random.default_rng(seed)
    pos = cats.index(positive) if positive in cats else 0
    samples: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(resamples):
        idx = rng.integers(0, len(refs), len(refs))
        m = _metrics_from_confusion(_confusion(refs[idx], preds[idx], len(cats)), pos)
        for k in names:
            if m[k] is not None:
                samples[k].append(m[k])
    alpha = (1 - level) / 2
    return {
        k: ([round(float(np.quantile(v, alpha)), 4), round(float(np.quantile(v, 1 - alpha)), 4)] if v else None)
        for k, v in samples.items()
    }


def _encode(references, predictions, labels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cats = [str(label).upper() for label in labels]
    refs_text = [str(r).strip().upper() for r in references]
    preds_text = [INVALID_LABEL if p is None else str(p).strip().upper() for p in predictions]
    for value in refs_text + preds_text:
        if value not in cats and value != INVALID_LABEL:
            cats.append(value)
    if INVALID_LABEL in preds_text:
        cats.append(INVALID_LABEL)
    index = {c: i for i, c in enumerate(cats)}
    return (np.array([index[r] for r in refs_text], dtype=int),
            np.array([index[p] for p in preds_text], dtype=int), cats)


def _confusion(refs: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(refs * k + preds, minlength=k * k).reshape(k, k)


def _metrics_from_confusion(counts: np.ndarray, pos: int) -> dict[str, float | None]:
    n = counts.sum()
    if n == 0:
        return {"accuracy": None, "precision": None, "recall": None, "f1": None, "kappa": None}
    tp = counts[pos, pos]
    predicted_pos, actual_pos = counts[:, pos].sum(), counts[pos, :].sum()
    precision = tp / predicted_pos if predicted_pos else None
    recall = tp / actual_pos if actual_pos else None
    f1 = (2 * tp / (predicted_pos + actual_pos)) if (predicted_pos + actual_pos) else None
    p_o = np.trace(counts) / n
    p_e = float((counts.sum(axis=1) * counts.sum(axis=0)).sum()) / (n * n)
    kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else (1.0 if p_o == 1 else 0.0)
    as_float = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    return {"accuracy": as_float(p_o), "precision": as_float(precision), "recall": as_float(recall),
            "f1": as_float(f1), "kappa": as_float(kappa)}
