"""Evaluation stage: constrained generation of candidates (scoring and judging live beside it).

    fab eval.generate --split validation --config configs/eval.yaml [--limit N]

    from scripts.config import load_config
    from scripts.evaluation.config import EvalConfig
    from scripts.evaluation.generate import generate_candidates
    summary = generate_candidates(load_config("configs/eval.yaml", EvalConfig), "validation", limit=20)
"""
