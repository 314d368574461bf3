"""Trainer callbacks: metrics.jsonl, a rich progress bar, SIGINT/SIGTERM checkpointing; loss.png.

    callbacks = [MetricsCallback(run_dir / "metrics.jsonl"), RichProgressCallback(), SignalCheckpoint()]
    write_loss_plot(run_dir / "metrics.jsonl", run_dir / "loss.png")
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from scripts.contracts import MetricsRow, read_jsonl


def peak_memory_mb() -> float:
    """Peak accelerator memory when training on a GPU, else peak resident memory of this process."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20


class MetricsCallback(TrainerCallback):
    """One JSON line per logging step: step, epoch, loss, lr, grad_norm, tokens, tokens_per_s, peak_memory_mb."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._last = None  # (time, tokens) at the previous log

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now, tokens = time.perf_counter(), logs.get("num_tokens")
        last_time, last_tokens = self._last or (now, None)
        rate = None
        if tokens is not None and now > last_time:
            rate = (tokens - (last_tokens or 0)) / (now - last_time) if last_tokens is not None else None
        self._last = (now, tokens)
        row = MetricsRow(
            step=state.global_step, epoch=round(state.epoch or 0.0, 4), loss=float(logs["loss"]),
            lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"), tokens=tokens,
            tokens_per_s=round(rate, 1) if rate is not None else None,
            peak_memory_mb=round(peak_memory_mb(), 1),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row.model_dump()) + "\n")


class RichProgressCallback(TrainerCallback):
    """Steps, loss and ETA on one rich bar (HF's tqdm bar is disabled)."""

    def __init__(self, console=None):
        self.console = console
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, loss="-")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress and logs and "loss" in logs:
            self.progress.update(self.task, loss=f"{logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()
            self.progress = None


class SignalCheckpoint(TrainerCallback):
    """On SIGINT/SIGTERM: finish the current step, save a checkpoint, stop. A second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # second signal: give up immediately
            self.uninstall()
            raise KeyboardInterrupt
        self.received = signum

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
        return control


def read_metrics(path: Path) -> list[MetricsRow]:
    return list(read_jsonl(Path(path), MetricsRow)) if Path(path).is_file() else []


def write_loss_plot(metrics_path: Path, out: Path) -> Path | None:
    rows = [r for r in read_metrics(metrics_path) if r.loss is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r.step for r in rows], [r.loss for r in rows], marker="." if len(rows) < 50 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
