"""Training stage: SFT of Gemma 3 270M at a rope-scaled 131072-token context, LoRA or full (``train.method``).

    fab train.prepare --config configs/training.yaml
    fab train.run --config configs/training.yaml [--resume latest|PATH] [--max-steps N] [--backend hf]

Modules: ``config`` (`configs/training.yaml`), ``data`` (chat-template tokenisation + answer-only labels),
``loss`` (chunked cross-entropy, never seq x vocab logits), ``prepare``
(checks + run directory), ``backends`` (hf | unsloth model loading),
``callbacks`` (metrics.jsonl, progress bar, signals, loss.png), ``run``.
"""
