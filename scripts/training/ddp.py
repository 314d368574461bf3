"""``train.run --nproc N``: multi-process DDP (hf backend) through ``torchrun``, running ``run_training``.

    fab train.run --config configs/training.yaml --nproc 4

    from scripts.training.ddp import launch
    result = launch("configs/training.yaml", 2, max_steps=6)   # -> RunResult of rank 0

The launching process does the checks and the run resolution once (prepare
a new run, or pick the checkpoint for ``--resume``), so every rank trains
the same run directory; then ``python -m torch.distributed.run --standalone
--nproc-per-node N -m scripts.training.ddp ...`` starts the ranks. Each rank
calls ``run_training`` (gloo on CPU, NCCL on GPUs; one GPU per rank), which
shards the data, keeps metrics, checkpoint weights and the adapter (or, for
``train.method: full``, model/) on rank 0 and checks that every rank ended
with the same trained weights (``rank_adapter_sha256``). Each rank prints one
``rank R/N: adapter|model sha256 ..., process group gloo|nccl`` line.
Unsloth is single-GPU: ``--backend unsloth`` with ``--nproc`` > 1
is a ``UserError``; ``auto`` picks hf.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from scripts.config import REPO_ROOT, UserError
from scripts.contracts import RunResult
from scripts.paths import RUN_RESULT as RESULT
from scripts.training.run import run_training, setup_run, training_config


def launch(
    config: str | Path,
    nproc: int,
    *,
    run_id: str | None = None,
    resume: str | None = None,
    max_steps: int | None = None,
    backend: str | None = None,
    method: str | None = None,
    say=print,
    timeout: float | None = None,
    reprepare: bool = False,
) -> RunResult:
    """Start ``nproc`` ranks on this host; return rank 0's ``RunResult`` (from ``<run_dir>/result.json``)."""
    config = Path(config).resolve()
    cfg = training_config(config, max_steps=max_steps, backend=backend, method=method)
    setup = setup_run(cfg, run_id=run_id, resume=resume, nproc=nproc, say=say, say_backend=False,
                      reprepare=reprepare)  # the ranks then find the run prepared with this config
    chosen, reason, run_dir, checkpoint = setup.backend, setup.backend_reason, setup.run_dir, setup.checkpoint
    say(f"launching {nproc} processes (torchrun, DDP) on run {run_dir.name}, backend {chosen} ({reason})")
    (run_dir / RESULT).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           f"--nproc-per-node={nproc}", "-m", "scripts.training.ddp",
           "--config", str(config), "--backend", chosen, "--method", cfg.train.method]
    cmd += ["--resume", str(checkpoint)] if checkpoint is not None else ["--run-id", run_dir.name]
    if cfg.train.max_steps is not None:
        cmd += ["--max-steps", str(cfg.train.max_steps)]
    pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    done = subprocess.run(cmd, cwd=Path.cwd(), env=env, timeout=timeout)
    if not (run_dir / RESULT).is_file():
        raise UserError(f"torchrun exited with code {done.returncode} before rank 0 finished; "
                        "see the output above")
    return RunResult.model_validate_json((run_dir / RESULT).read_text())


def main(argv: list[str] | None = None) -> int:
    """One rank (started by torchrun)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.training.ddp")
    parser.add_argument("--config", required=True)
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--run-id")
    parser.add_argument("--resume")
    parser.add_argument("--max-steps")
    parser.add_argument("--method")
    args = parser.parse_args(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    console = None
    if rank == 0:
        from rich.console import Console

        console = Console()
    result = run_training(
        training_config(args.config, max_steps=args.max_steps, backend=args.backend, method=args.method),
        run_id=args.run_id,
        resume=args.resume, console=console, say=console.print if console else (lambda *_: None),
    )
    import torch.distributed as dist

    sha = (result.rank_adapter_sha256 or ["-"] * world)[rank]
    group = dist.get_backend() if dist.is_initialized() else "none"
    what = "model" if result.method == "full" else "adapter"
    wrote = "yes" if result.weights_dir else "no"
    print(f"rank {rank}/{world}: {what} sha256 {sha}, wrote {what}: {wrote}, process group {group}", flush=True)
    if result.interrupted_by:
        return 130 if result.interrupted_by == "SIGINT" else 143
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
