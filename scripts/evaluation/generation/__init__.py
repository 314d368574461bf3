"""Candidates: constrained generation (xgrammar) with an answer that closes itself within the budget.

    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import generate_candidates
    summary = generate_candidates(load_config("configs/eval.yaml", EvalConfig), "validation", limit=20)

``config`` (`configs/eval.yaml`), ``generate`` (the split -> candidates file), ``decoding`` (grammars,
confidence), ``closing`` (the answer closing before ``max_new_tokens``).
"""
