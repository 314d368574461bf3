"""Dataset stage: clean, split, stats."""
