"""Training tokens/s with padding-free packing vs one example per micro-batch, on the sample's length mix.

    .venv/bin/python bench/packing_bench.py [--model tiny|real] [--budgets 2048,4096,8192] [--examples N]
                                            [--rows 2000] [--reps 1] [--attn windowed_sdpa] [--threads N] [--seed 0]
    .venv/bin/python bench/packing_bench.py --model real --real-dir models/gemma-3-270m

Setup (as `fab demo` chains it): sample data -> dataset.clean -> dataset.split, then the train split cut
to ``--examples`` examples drawn at random (seeded), so the sample's length mix stays (with the real
tokenizer: nav pages ~0.4-2k tokens with a 2-token answer, product pages ~0.6-3.4k with a ~100-token
JSON answer). ``--model tiny``: a tiny Gemma 3 (hidden 64, 2 layers) with a tokenizer trained on the
train split; ``--model real``: the imported Gemma 3 270M (``fab train.import-gguf``; imported first
when missing).

Each variant is ONE EPOCH of ``train.run`` (hf backend, LoRA, fp32, ``fab demo --real``'s CPU settings:
no gradient checkpointing, chunk 1024, grad accumulation 1) over the same examples, in a fresh child
process: ``batch 1`` (packing off, one example per micro-batch: no padding either) and ``packed B`` for
each budget B (``packing.max_tokens``: best-fit-decreasing rows of at most B tokens). Every variant
trains on exactly the same tokens, so tokens/s is total tokens / wall time of the epoch (from the
trainer's first step to its last, load and save excluded) and the ratio is batch-1 time / packed
time. With ``--reps 2`` the order alternates (ABBA) and each variant keeps its fastest epoch: noise on
a shared machine only adds time.

What packing can win on a CPU: one LM-head pass, one LoRA/optimizer step and one call's overhead per
row instead of per example, and larger matrix products. What it costs under sdpa and eager: the
attention of a packed row is computed over the whole row (``row x row`` scores, the other examples
masked out), so bigger budgets pay attention for nothing; windowed_sdpa (the CPU default) and
flash_attention_2 (GPU) cut the row at the example boundaries instead (``bench/gpu_check.py``'s ``packing`` stage).

Prints one line per variant and ``packed / batch-1 tokens/s (B tokens): R``. Ratios, not absolute speeds:
the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scripts.host import proc_status_kib  # noqa: E402
from train_bench import (  # noqa: E402  (bench/ is not a package)
    build_setup, real_model, real_overrides, rewrite_train_split, training_config,
    training_overrides,
)

BATCH_1 = 0  # budget value standing for "packing off"


def keep_random(datasets, tokenizer_dir: Path, examples: int, seed: int) -> list[int]:
    """Rewrite the train split as ``examples`` of its examples drawn at random; their token counts."""
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.model.loading import load_tokenizer
    from scripts.training.data import encode_example

    records = list(read_jsonl(datasets.data_paths().split_file("train"), CleanRecord))
    if len(records) < examples:
        raise SystemExit(f"only {len(records)} training examples; raise --rows or lower --examples")
    tokenizer = load_tokenizer(str(tokenizer_dir))
    chosen = sorted(random.Random(seed).sample(records, examples), key=lambda r: r.id)
    kept = [(len(encode_example(tokenizer, record)[0]), record) for record in chosen]
    rewrite_train_split(datasets, kept)
    return [n for n, _ in kept]


def epoch_timer():
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        """Wall time from the first micro-step's start to the last step's end, and the tokens trained."""

        def __init__(self):
            self.start = self.end = None
            self.tokens = 0
            self.losses = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = self.start or time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                self.tokens = logs["num_tokens"]
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    return EpochTimer()


def variant_overrides(base: dict, budget: int) -> dict:
    packed = {"packing.enabled": True, "packing.max_tokens": budget} if budget != BATCH_1 else {}
    epoch = {k: v for k, v in base.items() if k != "train.max_steps"}  # the YAML's null: epochs decide
    return {**epoch, **packed, "train.epochs": 1}


def child_main(args) -> None:
    """``--child BUDGET``: one epoch with the parent's overrides; prints its numbers as JSON."""
    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console

    from scripts.training.run import run_training

    cfg = training_config(variant_overrides(json.loads(args.overrides.read_text()), args.child))
    timer = epoch_timer()
    console = Console(file=open("/dev/null", "w"), force_terminal=True, width=100)
    result = run_training(cfg, run_id=f"b{args.child}-{args.child_run}", extra_callbacks=(timer,),
                          console=console, say=lambda _: None)
    print(json.dumps({"tokens": timer.tokens, "seconds": timer.end - timer.start, "steps": result.global_step,
                      "loss_first": timer.losses[0], "loss_last": timer.losses[-1],
                      "peak_rss_kib": proc_status_kib("VmHWM")}))


def run_child(args, overrides_file: Path, tmp: Path, budget: int, i: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(budget), "--child-run", str(i), "--overrides",
           str(overrides_file), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"variant {budget} run {i} failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label(budget: int) -> str:
    return "batch 1" if budget == BATCH_1 else f"packed {budget}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "real"], default="tiny",
                        help="tiny: a tiny random Gemma 3 (default); real: the imported Gemma 3 270M")
    parser.add_argument("--budgets", default="2048,4096,8192",
                        help="packing.max_tokens values to compare with batch 1 (comma-separated)")
    parser.add_argument("--examples", type=int, default=None,
                        help="training examples drawn at random from the train split (default 64, real 32)")
    parser.add_argument("--rows", type=int, default=2000, help="sample rows (about 80%% land in train)")
    parser.add_argument("--reps", type=int, default=1, help="epochs per variant, order alternating (default 1)")
    parser.add_argument("--attn", default="windowed_sdpa", help="model.attn_implementation (default windowed_sdpa, what auto "
                                                       "resolves to on a CPU)")
    parser.add_argument("--real-dir", type=Path, default=REPO / "models/gemma-3-270m",
                        help="--model real: the train.import-gguf folder (imported there when missing)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-run", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_main(args)
        return
    real = args.model == "real"
    examples = args.examples or (32 if real else 64)
    budgets = [int(b) for b in args.budgets.split(",")]

    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="packing-bench-") as tmp:
        tmp_path = Path(tmp)
        datasets, tiny = build_setup(tmp_path, args.rows, args.seed, tiny=not real)
        model_dir = args.real_dir if real else tiny
        name = real_model(args.real_dir) if real else "tiny Gemma 3 (hidden 64, 2 layers)"
        lengths = keep_random(datasets, model_dir, examples, args.seed)
        extra = {**real_overrides(), "model.attn_implementation": args.attn, "train.warmup_ratio": 0.0}
        if not real:
            extra["train.lr"] = 3.0e-3  # configs/training_tiny.yaml's: a random tiny model learns from scratch
        overrides = training_overrides(tmp_path, model_dir, 1, args.seed, extra)
        overrides_file = tmp_path / "overrides.json"
        overrides_file.write_text(json.dumps(overrides))
        lengths.sort()
        print(f"setup: {name}; {args.rows} sample rows -> clean -> split -> {examples} random training examples, "
              f"{sum(lengths):,} tokens (min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
              f"max {lengths[-1]}) in {time.perf_counter() - began:.0f}s")
        print(f"each variant: one epoch of train.run, hf backend, LoRA r {training_config(overrides).lora.r}, "
              f"fp32, attn {args.attn}, grad accumulation 1, gradient checkpointing "
              f"{training_config(overrides).train.gradient_checkpointing}; a fresh process each")
        variants = [BATCH_1, *budgets]
        order = []
        for rep in range(args.reps):
            order += variants if rep % 2 == 0 else variants[::-1]
        best: dict[int, dict] = {}
        for i, budget in enumerate(order):
            out = run_child(args, overrides_file, tmp_path, budget, i)
            print(f"  {label(budget):>13}: {out['tokens'] / out['seconds']:8,.0f} tokens/s ({out['steps']} steps, "
                  f"{out['tokens']:,.0f} tokens in {out['seconds']:.1f}s; loss first {out['loss_first']:.3f}, "
                  f"last {out['loss_last']:.3f}; peak RSS {out['peak_rss_kib'] / 1024:,.0f} MiB)", flush=True)
            if out["tokens"] != sum(lengths):
                raise RuntimeError(f"{label(budget)} trained {out['tokens']} tokens, not the {sum(lengths)} of "
                                   "the examples: no fair ratio")
            if budget not in best or out["seconds"] < best[budget]["seconds"]:
                best[budget] = out
    base = best[BATCH_1]["seconds"]
    for budget in budgets:
        print(f"packed / batch-1 tokens/s ({budget} tokens): {base / best[budget]['seconds']:.2f}")
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
