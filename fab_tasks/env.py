"""Environment tasks: `fab env.check --for train` before a long run."""

from __future__ import annotations

from invoke import Exit

from fab_tasks._common import console, task, user_errors
from scripts.env_check import STAGE_CHOICES, failures, render_table, run_checks


@task(
    default=True,
    help={"for": f"stage to gate on: {'|'.join(STAGE_CHOICES)} (default: report only, exit 0)"},
)
@user_errors
def check(c, for_=None):
    """Doctor: is this machine ready for a stage? Prints a table, never a secret.

    Checks python, package versions, the torch build (ROCm/HIP, CUDA or CPU),
    visible GPUs and bf16, ROCm env vars, flash-attn, free disk, which secrets
    are set (set/missing only) and the dataset DB (DATASET_DB_PATH).
    With --for STAGE it exits 1 when something that stage needs is missing:

        fab env.check --for train

    --for serve checks the serving host instead: vLLM installed ("not installed" otherwise),
    its fixes for Gemma 3 (<end_of_turn> masked by the grammar, nested rope_parameters read,
    found in its source) and the xgrammar and transformers versions against their minimums.
    """
    checks = run_checks(for_)
    console.print(render_table(checks, for_))
    failed = failures(checks)
    if failed:
        reasons = "; ".join(f"{ch.name}: {ch.detail}" for ch in failed)
        raise Exit(f"error: not ready for `{for_}`: {reasons}", code=1)
    console.print(f"ready for `{for_}`" if for_ else "report only: pass --for STAGE to gate a stage")
