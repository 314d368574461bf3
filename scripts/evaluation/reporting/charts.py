"""The eval report's PNG charts, written beside the Markdown as ``<stem>_<chart>.png``.

    from scripts.evaluation.reporting.charts import write_charts
    charts = write_charts(summary, Path("reports/latest_eval.md"))   # {"escalation": "latest_eval_escalation.png", ...}
"""

from __future__ import annotations

from pathlib import Path

from scripts.contracts import EscalationRow, JudgeSummary


def write_charts(summary: JudgeSummary, out: Path) -> dict[str, str]:
    """Escalation curves, per-slot accuracy and confusion matrices; returns chart key -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    stem = out.stem
    tasks = summary.tasks
    # escalation curves
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for task, t in tasks.items():
        curve = chart_points(t.escalation.curve)
        if curve:
            ax.plot([r.coverage for r in curve], [r.accuracy_kept for r in curve], marker="o", label=task)
            plotted = True
    if plotted:
        ax.set_xlabel("share of pages kept by the small model")
        ax.set_ylabel("accuracy on kept pages")
        ax.set_title("Escalation: coverage vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        name = f"{stem}_escalation.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made["escalation"] = name
    plt.close(fig)
    # per-slot accuracy
    for task, t in tasks.items():
        slots = t.slots
        if not slots:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(slots) + 1.2))
        names = list(slots)
        correct = [100 * (slots[s].accuracy or 0) for s in names]
        ax.barh(names, correct, color="#4c72b0", label="correct")
        cut = [100 * slots[s].truncated / slots[s].n if slots[s].n else 0 for s in names]
        if any(cut):  # cut values are scored wrong: they sit after the correct share, never inside it
            ax.barh(names, cut, left=correct, color="#bbbbbb", hatch="//", edgecolor="#777777",
                    label="truncated: closed early at the token budget or string bound (scored wrong)")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_xlabel("accuracy (%)")
        ax.set_title(f"{task}: per-slot accuracy")
        name = f"{stem}_{task}_slots.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made[f"slots:{task}"] = name
        plt.close(fig)
    # confusion matrices
    for task, t in tasks.items():
        cls = t.classification
        if not cls:
            continue
        labels = cls["labels"]
        matrix = [[cls["confusion"][r][c] for c in labels] for r in labels]
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("small model")
        ax.set_ylabel("strong model (reference)")
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center")
        ax.set_title(task, fontsize=9)
        name = f"{stem}_{task}_confusion.png"
        fig.savefig(out.parent / name, dpi=110, bbox_inches="tight")
        made[f"confusion:{task}"] = name
        plt.close(fig)
    return made



def chart_points(curve: list[EscalationRow]) -> list[EscalationRow]:
    """The curve's points that carry an accuracy; a chart needs two different coverages, not one dot."""
    points = [r for r in curve if r.accuracy_kept is not None]
    return points if len({r.coverage for r in points}) >= 2 else []

