"""Dataset stage: clean, split, stats, constraints; ``config`` types `configs/datasets.yaml` (the task
registry, the workspace root and schema version)."""
