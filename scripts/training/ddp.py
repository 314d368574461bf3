"""``train.run --nproc N``: multi-process DDP (hf backend) through ``torchrun``, running ``run_training``.

    fab train.run --config configs/training.yaml --nproc 4

    from scripts.training.ddp import launch
    result = launch("configs/training.yaml", 2, max_steps=6)   # -> RunResult of rank 0

The launching process does the checks and the run resolution once (prepare
a new run, or pick the checkpoint for ``--resume``), so every rank trains
the same run directory; then ``python -m torch.distributed.run --standalone
--nproc-per-node N -m scripts.training.ddp ...`` starts the ranks. Each rank
calls ``run_training`` (gloo on CPU, NCCL on GPUs; one GPU per rank), which
shards the data, keeps metrics, checkpoint weights and the adapter on rank 0
and checks that every rank ended with the same LoRA weights
(``rank_adapter_sha256``). Each rank prints one ``rank R/N: adapter sha256
..., process group gloo|nccl`` line. Unsloth is single-GPU: ``--backend unsloth`` with ``--nproc`` > 1
is a ``UserError``; ``auto`` picks hf.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from scripts.config import REPO_ROOT, TrainingConfig, UserError, load_config
from scripts.training.backends import pick_backend
from scripts.training.prepare import check_splits
from scripts.training.run import RESULT, RunResult, check_same_base, resolve_run, run_training


def _overrides(cfg: TrainingConfig, max_steps: int | None, backend: str | None) -> TrainingConfig:
    if max_steps is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": int(max_steps)})})
    if backend:
        cfg = cfg.model_copy(update={"backend": backend})
    return cfg


def launch(
    config: str | Path,
    nproc: int,
    *,
    run_id: str | None = None,
    resume: str | None = None,
    max_steps: int | None = None,
    backend: str | None = None,
    say=print,
    timeout: float | None = None,
) -> RunResult:
    """Start ``nproc`` ranks on this host; return rank 0's ``RunResult`` (from ``<run_dir>/result.json``)."""
    config = Path(config).resolve()
    cfg = _overrides(load_config(config, TrainingConfig), max_steps, backend)
    chosen, reason = pick_backend(cfg.backend, nproc=nproc)
    check_splits(cfg)
    run_dir, checkpoint = resolve_run(cfg, run_id, resume)
    if checkpoint is not None:
        check_same_base(cfg, run_dir, checkpoint)
        say(f"resuming {run_dir.name} from {checkpoint.name} (step {checkpoint.name.rsplit('-', 1)[-1]})")
    say(f"launching {nproc} processes (torchrun, DDP) on run {run_dir.name}, backend {chosen} ({reason})")
    (run_dir / RESULT).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           f"--nproc-per-node={nproc}", "-m", "scripts.training.ddp",
           "--config", str(config), "--backend", chosen]
    cmd += ["--resume", str(checkpoint)] if checkpoint is not None else ["--run-id", run_dir.name]
    if max_steps is not None:
        cmd += ["--max-steps", str(int(max_steps))]
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
    parser.add_argument("--max-steps", type=int)
    args = parser.parse_args(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    console = None
    if rank == 0:
        from rich.console import Console

        console = Console()
    result = run_training(
        load_config(args.config, TrainingConfig), run_id=args.run_id, resume=args.resume,
        max_steps=args.max_steps, backend=args.backend, console=console,
        say=console.print if console else (lambda *_: None),
    )
    import torch.distributed as dist

    sha = (result.rank_adapter_sha256 or ["-"] * world)[rank]
    group = dist.get_backend() if dist.is_initialized() else "none"
    wrote = "yes" if result.adapter_dir else "no"
    print(f"rank {rank}/{world}: adapter sha256 {sha}, wrote adapter: {wrote}, process group {group}", flush=True)
    if result.interrupted_by:
        return 130 if result.interrupted_by == "SIGINT" else 143
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
