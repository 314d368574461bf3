"""train.run throughput vs a bare TRL SFTTrainer, and one training step's peak memory vs sequence length.

    .venv/bin/python bench/train_bench.py [--quick] [--rows 400] [--steps 20] [--warmup 4] [--reps 2]
                                          [--lengths 1024,8192,32768] [--chunk-size 1024] [--seed 0]

Setup (as `fab demo` chains it): sample data -> dataset.clean -> dataset.split
-> tiny Gemma 3 (hidden 64, 2 layers: one sliding, one global; tokenizer
trained on the train split), configs/training.yaml with CPU overrides.

1. Throughput, in this process, alternating ABBA (ours, bare, bare, ours, ...):
   (a) ``scripts.training.run.run_training`` with the hf backend: prepare
   checks, our chunked cross-entropy, metrics.jsonl / rich bar / signal
   callbacks, adapter + loss.png at the end; (b) a bare TRL ``SFTTrainer`` on
   the same tokenized rows (``build_dataset``), the same rope-scaled model
   loaded with plain transformers + PEFT (same LoRA settings), the same
   ``SFTConfig`` (``sft_args``: steps, batch, grad accumulation, gradient
   checkpointing, seed, hence the same data order), none of our callbacks.
   TRL 1.15's SFT loss is a fused LM head over the labelled rows whose kernel
   is Triton-only (fails without a GPU); on CPU the bare loop runs it with
   that kernel swapped for the same math in plain torch.
   Both log every step (the worst case for callback overhead) and carry one
   timing callback; tokens/s is measured between the end of step ``warmup``
   and the last step (steady state: no load, prepare, save or plot). Target:
   ours / bare >= 0.9.
2. Peak memory of ONE training step (forward + backward, LoRA, gradient
   checkpointing on, fp32) on the same tiny architecture with a
   262,144-token vocabulary (random weights, tiny tokenizer, random ids),
   each (length, loss) in a fresh child process: peak RSS (ru_maxrss, with
   the high-water mark reset after the model is loaded) minus RSS after load.
   ``chunked``: the model exactly as ``train.run`` loads it
   (``backends.load_model``) called as the trainer calls it; ``full``: the
   same model's plain transformers loss over full ``seq x vocab`` logits, run
   only where it fits in free memory. Labels: the last ``chunk-size`` tokens
   (an answer after a long prompt, as in SFT; every token at 1k), so the
   chunked loss projects one full tile, the plain loss still builds all
   ``seq`` rows of logits. Attention is sdpa here: eager builds
   ``seq x seq`` fp32 scores per head (4 GiB per head at 32k) and is far too
   slow on CPU. A control column repeats the chunked step with both layers
   global: transformers builds a ``seq x seq`` bool mask for the
   sliding-window layer under sdpa on CPU (1 GiB at 32k), which the loss has
   nothing to do with. Targets: grows ~linearly with length, below the full
   logits.

Default run: about 2.5 minutes on 2 idle cores (the 32k steps take most);
``--quick``: about a minute (two lengths: the linearity check needs three).

Prints ratios and MiB, not absolute speed claims: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VOCAB = 262_144
MIB = 2**20

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
seq, mode, chunk, answer, model_dir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import torch
from scripts.config import TrainingConfig, load_config
from scripts.training.backends import load_model
from scripts.training.prepare import load_checked_tokenizer

def rss_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

cfg = load_config({config!r}, TrainingConfig, {{
    "backend": "hf", "model.name_or_path": model_dir, "model.dtype": "fp32",
    "model.attn_implementation": "sdpa", "loss.chunk_size": chunk}})
torch.manual_seed(0)
model = load_model(cfg, "hf", load_checked_tokenizer(cfg), torch.float32)  # rope, chunked loss, LoRA
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={{"use_reentrant": False}})  # as Trainer does
model.train()
ids = torch.randint(10, model.config.vocab_size, (1, seq))
labels = ids.clone()
labels[:, : max(seq - answer, 0)] = -100
mask = torch.ones_like(ids)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak-RSS high-water mark: measure the step, not the load
base = rss_kib()
start = time.perf_counter()
extra = {{"loss_chunk_size": cfg.loss.chunk_size}} if mode == "chunked" else {{}}
loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False, **extra).loss
loss.backward()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"base_kib": base, "peak_kib": peak, "seconds": seconds, "loss": loss.item()}}))
"""


def quiet() -> None:
    import logging

    for name in ("torchao", "bitsandbytes", "torch.utils._pytree", "transformers", "peft", "trl", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")


def build_setup(tmp: Path, rows: int, seed: int):
    """Sample -> clean -> split -> tiny model; returns (datasets config, tiny model dir)."""
    from scripts.config import DatasetsConfig, load_config
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.dataset.clean import clean_dataset
    from scripts.dataset.split import split_dataset
    from scripts.sample_data import generate_sample
    from scripts.tiny_model import build_tiny_gemma

    datasets = load_config(REPO / "configs/datasets.yaml", DatasetsConfig, {"processed_dir": str(tmp / "processed")})
    generate_sample(tmp / "raw.duckdb", rows=rows, seed=seed)
    clean_dataset(tmp / "raw.duckdb", datasets, "v1")
    split_dataset(datasets)
    texts = []
    for record in read_jsonl(datasets.version_dir("v1") / "splits" / "train.jsonl", CleanRecord):
        texts += [record.system_prompt, record.prompt, record.target]
    tiny = build_tiny_gemma(tmp / "tiny-gemma3", texts, hidden_size=64, num_layers=2, seed=seed,
                            embedding_scale=10.0)
    return datasets, tiny


def training_config(tmp: Path, tiny: Path, steps: int, seed: int):
    from scripts.config import TrainingConfig, load_config

    return load_config(REPO / "configs/training.yaml", TrainingConfig, {
        "backend": "hf",
        "model.name_or_path": str(tiny),
        "model.dtype": "fp32",
        "data.schema_version": "v1",
        "data.processed_dir": str(tmp / "processed"),
        "output.runs_dir": str(tmp / "runs"),
        "train.max_steps": steps,
        "train.logging_steps": 1,  # every step: worst case for our callbacks, and exact token counts
        "train.save_steps": 100_000,  # no checkpoint inside the measured window
        "train.seed": seed,
    })


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Time at each optimiser step's end and the trainer's cumulative ``num_tokens`` logged for it."""

        def __init__(self):
            self.times, self.tokens, self.losses = {}, {}, {}

        def on_step_end(self, args, state, control, **kwargs):
            self.times[state.global_step] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                self.tokens[state.global_step] = logs["num_tokens"]
                self.losses[state.global_step] = logs.get("loss")

        def steps(self, warmup: int) -> list[tuple[float, float]]:
            """(tokens, seconds) of each optimiser step after ``warmup``."""
            return [(self.tokens[k] - self.tokens[k - 1], self.times[k] - self.times[k - 1])
                    for k in range(warmup + 1, max(self.times) + 1)]

    return StepTimer()


def run_ours(cfg, run_id: str, timer) -> float:
    from rich.console import Console

    from scripts.training.run import run_training

    console = Console(file=io.StringIO(), force_terminal=True, width=100)  # the bar renders, off screen
    start = time.perf_counter()
    result = run_training(cfg, run_id=run_id, extra_callbacks=(timer,), console=console, say=lambda _: None)
    if result.adapter_dir is None or result.global_step != cfg.train.max_steps:
        raise RuntimeError(f"train.run did not finish: {result}")
    return time.perf_counter() - start


class TorchChunkedLogProb:
    """Plain-torch stand-in for TRL 1.15's ``_ChunkedLogProbFunction`` (same call, same outputs).

    TRL's SFT loss always goes through its fused LM head (the labelled rows only, projected in
    tiles), whose kernel is Triton-only: with triton installed and no GPU it fails with "0 active
    drivers". On CPU the bare loop swaps in this equivalent, so it does TRL's work (log-prob of the
    labelled rows, entropy and top-1 for its metrics) and nothing of ours.
    """

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
        import torch

        logits = (hidden @ weight.t() if bias is None else hidden @ weight.t() + bias).float() * logit_scale
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        log_probs = (logits / temperature).log_softmax(-1)
        picked = log_probs.gather(-1, targets[:, None]).squeeze(-1)
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1) if "entropy" in outputs else None
            is_top1 = logits.argmax(-1) == targets if "is_top1" in outputs else None
        return picked, entropy, None, None, is_top1


@contextlib.contextmanager
def trl_head_on_cpu():
    """Swap TRL's Triton-only fused-head kernel for ``TorchChunkedLogProb`` while the bare loop trains on CPU."""
    import torch
    import trl.trainer.utils as trl_utils

    if torch.cuda.is_available():
        yield "TRL's own fused LM head (Triton)"
        return
    saved = trl_utils._ChunkedLogProbFunction
    trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
    try:
        yield "TRL's fused LM-head loss, its Triton kernel replaced by plain torch (no GPU)"
    finally:
        trl_utils._ChunkedLogProbFunction = saved


def run_bare(cfg, out_dir: Path, timer) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTTrainer

    from scripts.training.backends import load_model_config
    from scripts.training.data import build_dataset, load_split
    from scripts.training.run import sft_args

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    dataset, _ = build_dataset(load_split(cfg.data, "train"), tokenizer, cfg.model.max_seq_length,
                               cfg.data.truncation)
    set_seed(cfg.train.seed)
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model.name_or_path, config=load_model_config(cfg), dtype=torch.float32,
        attn_implementation=cfg.model.attn_implementation)
    model = get_peft_model(model, LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none", task_type="CAUSAL_LM"))
    trainer = SFTTrainer(model=model, args=sft_args(cfg, out_dir, torch.float32, "hf"), train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # disable_tqdm makes HF print every log dict; not a cost to time
    with trl_head_on_cpu():
        trainer.train()
    return time.perf_counter() - start


def throughput(cfg, tmp: Path, warmup: int, reps: int) -> float:
    """ABBA-alternated runs; returns ours/bare steady-state tokens/s.

    Both see the same batches in the same order, so step k costs the same work in every run. Noise
    on a shared machine only ever adds time, so each step's time is its minimum over the runs of one
    kind, and the ratio is total tokens over summed step minima, ours against bare.
    """
    per_step = {"ours": [], "bare": []}
    order = []
    for rep in range(reps):
        order += ["ours", "bare"] if rep % 2 == 0 else ["bare", "ours"]
    for i, kind in enumerate(order):
        timer = step_timer()
        gc.collect()
        if kind == "ours":
            wall = run_ours(cfg, f"bench-{i}", timer)
        else:
            wall = run_bare(cfg, tmp / f"bare-{i}", timer)
        steps = timer.steps(warmup)
        per_step[kind].append(steps)
        tokens, seconds = sum(t for t, _ in steps), sum(d for _, d in steps)
        print(f"  {i + 1}. {kind:4}  {tokens / seconds:8,.0f} tokens/s  (steps {warmup + 1}-{cfg.train.max_steps}: "
              f"{tokens:,.0f} tokens in {seconds:.1f}s; whole call {wall:.1f}s; loss step 1 {timer.losses[1]:.4f}, "
              f"last {timer.losses[max(timer.losses)]:.4f})", flush=True)
    token_lists = {tuple(t for t, _ in run) for runs in per_step.values() for run in runs}
    if len(token_lists) != 1:
        raise RuntimeError("runs saw different per-step token counts: the data order differs, no fair ratio")
    tokens = sum(next(iter(token_lists)))
    best = {kind: sum(min(step) for step in zip(*[[d for _, d in run] for run in runs]))
            for kind, runs in per_step.items()}
    ours, bare = tokens / best["ours"], tokens / best["bare"]
    means = {kind: sum(tokens / sum(d for _, d in run) for run in runs) / len(runs) for kind, runs in per_step.items()}
    print(f"  per-step minimum over runs: ours {ours:,.0f} tokens/s, bare {bare:,.0f} tokens/s "
          f"(run means {means['ours']:,.0f} / {means['bare']:,.0f}: ratio {means['ours'] / means['bare']:.3f})")
    return ours / bare


def build_big_vocab_model(tiny: Path, out: Path, seed: int, global_only: bool = False) -> Path:
    """The tiny architecture with Gemma 3's 262,144-token vocabulary (the tiny tokenizer is kept).
    ``global_only``: both layers full attention, the control without a sliding-window mask."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    from scripts.tiny_model import tiny_gemma_config

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(seed)
    config = tiny_gemma_config(tokenizer, vocab_size=VOCAB, hidden_size=64, num_layers=2)
    if global_only:
        config.layer_types = ["full_attention"] * config.num_hidden_layers
    model = Gemma3ForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def available_bytes() -> int:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))


def memory_child(seq: int, mode: str, chunk: int, model_dir: Path) -> dict:
    script = CHILD.format(repo=str(REPO), config=str(REPO / "configs/training.yaml"))
    answer = chunk if seq > chunk else seq
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script, str(seq), mode, str(chunk), str(answer), str(model_dir)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {result.returncode}: {tail[:120]}"}
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["delta_mib"] = (row["peak_kib"] - row["base_kib"]) / 1024
    row["wall"] = time.perf_counter() - start
    return row


def memory(tiny: Path, tmp: Path, lengths: list[int], chunk: int, seed: int) -> tuple[dict, bool]:
    model_dir = build_big_vocab_model(tiny, tmp / "tiny-gemma3-262k", seed)
    control_dir = build_big_vocab_model(tiny, tmp / "tiny-gemma3-262k-global", seed, global_only=True)
    rows, control = [], []
    for seq in lengths:
        logits_bytes = seq * VOCAB * 4
        chunked = memory_child(seq, "chunked", chunk, model_dir)
        control.append((seq, memory_child(seq, "chunked", chunk, control_dir)))
        need = 4 * logits_bytes + 2**30  # measured: ~4 x the logits tensor (logits, log-softmax, their grads)
        if need < 0.6 * available_bytes():
            full = memory_child(seq, "full", chunk, model_dir)
        else:
            full = {"skipped": f"skipped: needs ~{need / 2**30:.0f} GiB, "
                               f"{available_bytes() / 2**30:.0f} GiB available"}
        rows.append((seq, logits_bytes, chunked, full))
        c = f"{chunked['delta_mib']:7,.0f} MiB {chunked['seconds']:5.1f}s" if "delta_mib" in chunked else chunked["error"]
        f = (f"{full['delta_mib']:7,.0f} MiB {full['seconds']:5.1f}s" if "delta_mib" in full
             else full.get("error") or full["skipped"])
        g = f"{control[-1][1]['delta_mib']:7,.0f} MiB" if "delta_mib" in control[-1][1] else control[-1][1]["error"]
        print(f"  {seq:6,} {min(seq, chunk):6,} {logits_bytes / MIB:9,.0f} MiB "
              f"{seq * seq / MIB:7,.0f} MiB  {c:20}  {g:>11}    {f}", flush=True)

    measured = [(seq, lb, c["delta_mib"], f) for seq, lb, c, f in rows if "delta_mib" in c]
    if len(measured) != len(rows) or any("delta_mib" not in c for _, c in control):
        print("  a chunked step failed: no memory verdict")
        return {"as trained": False, "all-global": False}, False
    below = True
    for seq, logits_bytes, peak, full in measured:
        if seq > chunk:  # beyond one tile the chunked loss must undercut even the bare logits tensor
            below &= peak * MIB < logits_bytes and ("delta_mib" not in full or peak < full["delta_mib"])
        else:  # one tile is the whole sequence: same logits as the plain loss, by design
            below &= "delta_mib" not in full or peak <= 1.1 * full["delta_mib"]
    linear = {}
    for name, points in (("as trained", [(seq, peak) for seq, _, peak, _ in measured]),
                         ("all-global", [(seq, c["delta_mib"]) for seq, c in control])):
        slopes = [(b[1] - a[1]) / ((b[0] - a[0]) / 1024) for a, b in zip(points, points[1:])]
        # linear: no later slope steeper than the one before (+25%, and a 16 MiB/1k floor for noise)
        linear[name] = all(s2 <= 1.25 * max(s1, 16.0) for s1, s2 in zip(slopes, slopes[1:]))
        print(f"  growth, {name:10}: " + ", ".join(
            f"{a[0] // 1024}k->{b[0] // 1024}k {slope:,.1f} MiB/1k tokens"
            for a, b, slope in zip(points, points[1:], slopes))
              + f"  (full logits alone: {1024 * VOCAB * 4 / MIB:,.0f} MiB/1k tokens)")
    return linear, below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="8 steps, one ours/bare pair, lengths 1k and 8k (about a minute)")
    parser.add_argument("--rows", type=int, default=400, help="sample rows (about 80%% land in train)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per training run (default 20)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before the timed window (default 4)")
    parser.add_argument("--reps", type=int, default=None, help="ours/bare pairs, ABBA order (default 2)")
    parser.add_argument("--lengths", default=None, help="comma-separated (default 1024,8192,32768)")
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="chunked-loss tile rows for the memory part (configs/training.yaml: 4096)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = args.steps or (8 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 4)
    reps = args.reps or (1 if args.quick else 2)
    lengths = [int(x) for x in (args.lengths or ("1024,8192" if args.quick else "1024,8192,32768")).split(",")]
    if not 0 < warmup < steps:
        parser.error("need 0 < --warmup < --steps")

    quiet()
    sys.path.insert(0, str(REPO))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        _, tiny = build_setup(tmp_path, args.rows, args.seed)
        cfg = training_config(tmp_path, tiny, steps, args.seed)
        print(f"setup: {args.rows} sample rows -> clean -> split -> tiny Gemma 3 (hidden 64, 2 layers) "
              f"in {time.perf_counter() - start:.1f}s")
        ratio = None
        if not args.skip_throughput:
            t = cfg.train
            print(f"throughput: {steps} optimiser steps x batch {t.per_device_batch_size} x accum {t.grad_accum}, "
                  f"LoRA r={cfg.lora.r}, gradient checkpointing {t.gradient_checkpointing}, "
                  f"attn {cfg.model.attn_implementation}, fp32, logging every step; timed after step {warmup}")
            with trl_head_on_cpu() as how:
                print(f"  bare loop: TRL SFTTrainer, loss: {how}")
            ratio = throughput(cfg, tmp_path, warmup, reps)
        linear = below = None
        if not args.skip_memory:
            print(f"memory: one step (fwd+bwd), vocab {VOCAB:,}, LoRA, gradient checkpointing, fp32, "
                  f"attn sdpa (eager's seq x seq fp32 scores: {max(lengths) ** 2 * 4 / MIB:,.0f} MiB per head "
                  f"at {max(lengths):,}), chunk {args.chunk_size:,} rows; peak RSS - RSS after load")
            print(f"  {'seq':>6} {'labels':>6} {'full logits':>13} {'seq^2 B':>11}  "
                  f"{'chunked (ours)':20}  {'all-global':>11}    plain loss (full logits)")
            linear, below = memory(tiny, tmp_path, lengths, args.chunk_size, args.seed)
            print("  (seq^2 B: the sliding-window layer's bool attention mask that transformers builds for sdpa "
                  "on CPU;\n   all-global: chunked again with both layers global, i.e. without that mask)")
    if ratio is not None:
        print(f"ratio train.run / bare SFTTrainer tokens/s: {ratio:.3f} (target >= 0.9) "
              f"{'OK' if ratio >= 0.9 else 'OVER'}")
    if linear is not None:
        ok = linear["as trained"] and below
        print(f"memory linear & below full logits: {'OK' if ok else 'OVER'} (below full logits "
              f"{'OK' if below else 'OVER'}; linear as trained {'OK' if linear['as trained'] else 'OVER'}, "
              f"without the sliding-window mask {'OK' if linear['all-global'] else 'OVER'})")
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
