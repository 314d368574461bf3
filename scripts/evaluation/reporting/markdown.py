"""Markdown for the eval report: number formats, intervals, cells and tables (GitHub-flavoured).

    from scripts.evaluation.reporting.markdown import pct, table
    lines = table(["metric", "value"], [["accuracy", pct(0.833)]])   # right-aligns numeric columns
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def delta(value: Any, base: Any, rate: bool = True) -> str:
    """A change in percentage points (a rate), else as a number."""
    if value is None or base is None:
        return "n/a"
    d = value - base
    return f"{'+' if d >= 0 else ''}{100 * d:.1f} pp" if rate else f"{'+' if d >= 0 else ''}{d:.3f}"


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def delta_ci(value: Any, base: Any, n: int | None, base_n: int | None, min_n: int = 1) -> str:
    """Difference of two rates with Newcombe's 95% interval (from each side's Wilson interval; sound at
    small n and at 0% or 100%, where a Wald interval collapses or leaves [-100, 100]); no interval when
    either side has fewer than ``min_n`` judgements."""
    text = delta(value, base)
    if value is None or base is None or not n or not base_n:
        return text
    if n < min_n or base_n < min_n:
        return f"{text} (n too small)"
    (l1, u1), (l2, u2) = wilson(value, n), wilson(base, base_n)
    d = value - base
    low = d - math.sqrt((value - l1) ** 2 + (u2 - base) ** 2)
    high = d + math.sqrt((u1 - value) ** 2 + (base - l2) ** 2)
    return f"{text} [{100 * low:+.1f}, {100 * high:+.1f}]"


def cell(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`" if text else "_(empty)_"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    numeric = re.compile(r"^[-+]?[\d.,]+( ?%| pp| s)?$|^n/a$|^$|^\[.*\]$")
    align = ["---:" if i and rows and all(numeric.match(r[i]) for r in rows) else "---"
             for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def too_small_note(n: int, base_n: int | None, min_n: int) -> str:
    sides = f"n = {n}" + (f", baseline n = {base_n}" if base_n is not None else "")
    return (f"_n too small_: no 95% interval below {min_n} examples (here {sides}; `report.min_n_for_ci`). "
            "An interval from so few examples is either a point (a bootstrap of n = 1 gives [0%, 0%]) or "
            "spans most of 0-100%: it would claim a certainty the data do not have.")


def ci_bounds(ci: dict | None, name: str) -> str:
    bounds = (ci or {}).get(name)
    fmt = num if name == "kappa" else pct
    return f"[{fmt(bounds[0])}, {fmt(bounds[1])}]" if bounds else "n/a"


def html_safe(text: str) -> str:
    """`<invalid>` would vanish as an HTML tag on GitHub."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


METRIC_IS_RATE = {"accuracy", "precision_yes", "recall_yes", "f1_yes", "json_validity", "slot_accuracy",
                  "example_accuracy", "hallucination_rate", "omission_rate"}


def metric_text(name: str, value: Any) -> str:
    return pct(value) if name in METRIC_IS_RATE else num(value)

