"""Evaluation stage: generate candidates, judge them against the references, report the judge run.

    fab eval.generate --split validation --config configs/eval.yaml [--limit N]
    fab eval.judge --split validation
    fab eval.report

``generation`` (the fine-tuned model's constrained answers), ``judging`` (slot scorers, the LLM judge,
escalation), ``reporting`` (Markdown + charts for a pull request); each owns its config.
"""
