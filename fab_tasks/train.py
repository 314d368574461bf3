"""Training stage: prepare a run, then LoRA SFT.

    fab train.prepare --config configs/training.yaml
    fab train.run --config configs/training.yaml [--resume latest|PATH] [--max-steps N] [--backend hf]
                  [--nproc N]  (N > 1: DDP through torchrun, hf backend)
"""

from __future__ import annotations

from invoke import task
from invoke.exceptions import Exit

from fab_tasks._common import console, user_errors
from scripts.config import TrainingConfig, load_config

DEFAULT_CONFIG = "configs/training.yaml"


@task(help={
    "config": f"training config (default {DEFAULT_CONFIG})",
    "run_id": "run folder name under output.runs_dir (default: config's run_id, else a UTC timestamp)",
})
@user_errors
def prepare(c, config=DEFAULT_CONFIG, run_id=""):
    """Check config, splits (sha256 vs manifest), tokenizer, lengths; create models/runs/<run_id>/."""
    from scripts.training.prepare import prepare_run

    report = prepare_run(load_config(config, TrainingConfig), run_id or None)
    for split, s in report.splits.items():
        console.print(f"{split}: {s.examples_kept}/{s.examples_in} examples kept, longest {s.longest_tokens} "
                      f"tokens ({s.longest_id}), {s.dropped_too_long} dropped, {s.truncated} truncated "
                      f"(max_seq_length {report.max_seq_length}, {report.truncation})")
    console.print(f"prepared {report.run_dir}/ (config.yaml, dataset_manifest.json, prepare.json; "
                  f"code {report.code_version})")


@task(default=True, help={
    "config": f"training config (default {DEFAULT_CONFIG})",
    "resume": "`latest` (newest checkpoint) or a checkpoint / run dir path",
    "max_steps": "optimiser steps, overriding the config",
    "backend": "auto | unsloth | hf, overriding the config",
    "run_id": "run folder to train (default: the prepared run, or a new one)",
    "nproc": "processes (GPUs) for DDP via torchrun, hf backend; 1 (default) trains in this process",
})
@user_errors
def run(c, config=DEFAULT_CONFIG, resume="", max_steps=None, backend="", run_id="", nproc=1):
    """LoRA SFT (answer-only loss, rope-scaled 131072 context); checkpoints, metrics.jsonl, adapter/."""
    if int(nproc) > 1:
        from scripts.training.ddp import launch

        result = launch(config, int(nproc), run_id=run_id or None, resume=resume or None, max_steps=max_steps,
                        backend=backend or None, say=console.print)
    else:
        from scripts.training.run import run_training, training_config

        result = run_training(training_config(config, max_steps=max_steps, backend=backend or None),
                              run_id=run_id or None, resume=resume or None, console=console, say=console.print)
    if result.interrupted_by:
        console.print(f"{result.interrupted_by}: stopped at step {result.global_step}, checkpoint saved in "
                      f"{result.run_dir}/checkpoints; continue with `fab train.run --resume latest`")
        raise Exit(code=130 if result.interrupted_by == "SIGINT" else 143)
    if result.world_size > 1:
        sha = result.rank_adapter_sha256[0][:12]
        console.print(f"{result.world_size} ranks trained the same adapter (sha256 {sha})")
    console.print(f"trained {result.global_step} steps on {result.train_examples} examples "
                  f"({result.dropped_too_long} dropped as too long), final loss {result.final_loss}")
    console.print(f"wrote {result.adapter_dir}/, {result.run_dir}/metrics.jsonl, {result.run_dir}/loss.png")


@task(help={
    "output": "where the tiny model goes (default models/tiny-gemma3)",
    "schema_version": "processed data whose train split trains the tokenizer (default v1)",
    "hidden_size": "model width (default 64)",
    "layers": "decoder layers, alternating sliding/global attention (default 2)",
    "seed": "weight init seed (default 0)",
})
@user_errors
def init_tiny(c, output="models/tiny-gemma3", schema_version="v1", hidden_size=64, layers=2, seed=0):
    """Build a tiny random Gemma 3 + locally trained tokenizer for CPU runs (configs/training_tiny.yaml)."""
    from pathlib import Path

    from scripts.config import DatasetsConfig
    from scripts.tiny_model import build_tiny_gemma, texts_for_tokenizer

    datasets = load_config("configs/datasets.yaml", DatasetsConfig)
    texts, source = texts_for_tokenizer(datasets.version_dir(schema_version) / "splits")
    path = build_tiny_gemma(Path(output), texts, hidden_size=int(hidden_size), num_layers=int(layers),
                            seed=int(seed), embedding_scale=10.0)
    console.print(f"wrote a tiny Gemma 3 (hidden {hidden_size}, {layers} layers, tokenizer from {source}) "
                  f"to {path}; train it with `fab train.run --config configs/training_tiny.yaml`")
