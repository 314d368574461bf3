"""Judging: deterministic slot scorers first, the LLM judge for what is left, then the escalation curve.

    fab eval.judge --split validation --config configs/judge_slots.yaml

``config`` (`configs/judge_slots.yaml`), ``judge`` (the run), ``scoring`` (slot scorers, classification
metrics), ``llm_judge`` (LiteLLM client and cache), ``escalation`` (where the strong model is still needed).
"""
