"""train.run throughput vs a bare TRL SFTTrainer, and one training step's peak memory vs sequence length.

    .venv/bin/python bench/train_bench.py [--quick] [--rows 400] [--steps 20] [--warmup 4] [--reps 2]
                                          [--lengths 1024,8192,32768] [--chunk-size 1024] [--seed 0]
    .venv/bin/python bench/train_bench.py --model real [--quick] [--threads N] [--real-dir models/gemma-3-270m]
                                          [--real-examples 24] [--real-max-tokens 512]

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
   ``seq`` rows of logits. Attention is windowed_sdpa, what ``auto`` gives on
   CPU (``scripts.model.attention``): sdpa would build a ``seq x seq`` bool mask for
   the sliding-window layer (1 GiB at 32k; refused at max_seq_length 131072 on
   this machine) and eager ``seq x seq`` fp32 scores per head. A control column
   repeats the chunked step with both layers global (no sliding window). Targets: grows ~linearly with length, below the full
   logits.

Default run: about 2.5 minutes on 2 idle cores (the 32k steps take most);
``--quick``: about a minute (two lengths: the linearity check needs three).

3. ``--model real``: part 1 on the real Gemma 3 270M instead of the tiny model (part 2 is
   about the tiny architecture and is not run). The base is the ``fab train.import-gguf``
   folder (``--real-dir``, imported first with ``import_gguf`` when it is missing: needs
   ``./scripts/setup_env.sh --base-model``). Short examples keep it to minutes on a CPU: from
   2000 sample rows, the ``--real-examples`` (24) shortest training examples of at most
   ``--real-max-tokens`` (512), written back as the train split (manifest updated) so both loops
   read the same file: at the defaults all classifier pages of 206-284 tokens with a
   2-token answer (the shortest extractor examples are ~750 tokens with a ~115-token answer;
   ``--real-max-tokens 1024 --real-examples 1200`` mixes them in, at several times the cost).
   Training settings are ``fab demo --real``'s CPU budget (batch 1, no gradient accumulation, no gradient
   checkpointing, windowed_sdpa, chunk 1024), logging every step. Each run is a fresh child process,
   ABBA as above, so each has its own peak RSS (``VmHWM``: load, data and training, the whole
   process). Targets: tokens/s ours / bare >= 0.95; peak RSS ours / bare <= 1.10.
   Default (12 steps, timed after 4, two pairs): about 3 minutes on 2 cores;
   ``--quick`` (8 steps, timed after 2, one pair): about 1.5. ``--threads 1`` when another job
   holds a core: two torch threads on one free core thrash (measured 4-17 tokens/s instead of
   ~145). On these short examples the LM head dominates the loss: our chunked loss recomputes
   its tile in backward (``torch.utils.checkpoint``, a second read of the 671 MB fp32
   embedding matrix per step), about 60 ms a step more than TRL's head, which is where the
   remaining gap to bare is (measured: with that recompute off, the two heads time the same).

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
sys.path.insert(0, str(REPO))

from scripts.host import available_bytes, proc_status_kib  # noqa: E402  (after the sys.path line)

VOCAB = 262_144
MIB = 2**20

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
seq, mode, chunk, answer, model_dir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import torch
from scripts.config import load_config
from scripts.training.backends import load_model
from scripts.training.config import TrainingConfig
from scripts.training.loss import forward_loss
from scripts.training.prepare import load_checked_tokenizer

def rss_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

cfg = load_config({config!r}, TrainingConfig, {{
    "backend": "hf", "model.name_or_path": model_dir, "model.dtype": "fp32",
    "model.attn_implementation": "windowed_sdpa", "loss.chunk_size": chunk}})
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
batch = {{"input_ids": ids, "attention_mask": mask, "labels": labels}}
loss = (forward_loss(model, batch, cfg.loss.chunk_size) if mode == "chunked"
        else model(**batch, use_cache=False).loss)
loss.backward()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"base_kib": base, "peak_kib": peak, "seconds": seconds, "loss": loss.item()}}))
"""


def build_setup(tmp: Path, rows: int, seed: int, tiny: bool = True):
    """Sample -> clean -> split -> tiny model; returns (datasets config, tiny model dir or None)."""
    from scripts.model.tiny import build_tiny_gemma
    from scripts.sample_data.splits import sample_splits, texts_for_tokenizer

    datasets = sample_splits(tmp, rows, seed)
    if not tiny:
        return datasets, None
    texts, _ = texts_for_tokenizer(datasets.data_paths().splits_dir)
    tiny = build_tiny_gemma(tmp / "tiny-gemma3", texts, hidden_size=64, num_layers=2, seed=seed,
                            embedding_scale=10.0)
    return datasets, tiny


def training_overrides(tmp: Path, model_dir: Path, steps: int, seed: int, extra: dict | None = None) -> dict:
    from scripts.paths import SCHEMA_VERSION

    return {
        "backend": "hf",
        "model.name_or_path": str(model_dir),
        "model.dtype": "fp32",
        "data.datasets_config": str(REPO / "configs/datasets.yaml"),  # children run in other dirs
        "data.schema_version": SCHEMA_VERSION,
        "data.processed_dir": str(tmp / "processed"),
        "output.runs_dir": str(tmp / "runs"),
        "train.max_steps": steps,
        "train.logging_steps": 1,  # every step: worst case for our callbacks, and exact token counts
        "train.save_steps": 100_000,  # no checkpoint inside the measured window
        "train.seed": seed,
        # one example per micro-batch, as the bare loop's SFTTrainer batches them (packing: packing_bench.py)
        "packing.enabled": False,
        **(extra or {}),
    }


def training_config(overrides: dict):
    from scripts.config import load_config
    from scripts.training.config import TrainingConfig

    return load_config(REPO / "configs/training.yaml", TrainingConfig, overrides)


def real_model(model_dir: Path) -> str:
    """The imported Gemma 3 270M at ``model_dir`` (imported now when missing); returns its label."""
    from scripts.model.gguf_import import import_gguf
    from scripts.model.identity import base_model_label

    if not (model_dir / "config.json").is_file():
        print(f"importing the packaged google/gemma-3-270m GGUF into {model_dir} (once)", flush=True)
        import_gguf(None, model_dir, say=lambda s: print(f"  {s}", flush=True))
    return base_model_label(str(model_dir))


def real_overrides() -> dict:
    """The real model's CPU training settings, as ``fab demo --real`` trains it (scripts/demo.py)."""
    return {
        "model.attn_implementation": "windowed_sdpa",
        "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.0,
        "train.lr": 3.0e-4,
        "train.warmup_ratio": 0.05,
        "train.per_device_batch_size": 1, "train.grad_accum": 1,  # many cheap steps on 2 cores
        "train.gradient_checkpointing": False,  # short examples: recomputation would only cost time
        "loss.chunk_size": 1024,
    }


def keep_short(datasets, model_dir: Path, examples: int, max_tokens: int) -> dict[str, list[int]]:
    """Rewrite the train split as its ``examples`` shortest examples (at most ``max_tokens`` with the
    real chat template), and its manifest entry to match; returns the token counts kept per task."""
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.model.loading import load_tokenizer
    from scripts.training.data import encode_example

    data = datasets.data_paths()
    path = data.split_file("train")
    tokenizer = load_tokenizer(str(model_dir))
    sized = sorted(((len(encode_example(tokenizer, record)[0]), record.id, record)
                    for record in read_jsonl(path, CleanRecord)), key=lambda row: row[:2])
    kept = [(n, record) for n, _, record in sized if n <= max_tokens][:examples]
    if len(kept) < examples:
        raise SystemExit(f"only {len(kept)} training examples within {max_tokens} tokens (shortest "
                         f"{sized[0][0] if sized else None}); raise --real-max-tokens or --rows")
    kept.sort(key=lambda row: row[1].id)  # not by length: the trainer shuffles anyway
    return rewrite_train_split(datasets, kept)


def rewrite_train_split(datasets, kept: list) -> dict[str, list[int]]:
    """Write ``kept`` (``(tokens, CleanRecord)`` pairs) as the train split and its manifest entry to match;
    returns the token counts per task."""
    from scripts.contracts import SplitManifest, file_entry, write_model_json
    from scripts.paths import split_file_name

    data = datasets.data_paths()
    path = data.split_file("train")
    path.write_text("".join(record.model_dump_json() + "\n" for _, record in kept))
    by_task: dict[str, list[int]] = {}
    for n, record in kept:
        by_task.setdefault(record.task, []).append(n)
    manifest_path = data.split_manifest
    manifest = SplitManifest.model_validate_json(manifest_path.read_bytes())
    manifest.files[split_file_name("train")] = file_entry(path, len(kept))
    manifest.counts["train"] = len(kept)
    manifest.counts_by_task["train"] = {task: len(n) for task, n in sorted(by_task.items())}
    write_model_json(manifest_path, manifest)
    return by_task


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

    from scripts.model.gemma3 import resolve_attn_implementation
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
        attn_implementation=resolve_attn_implementation(cfg.model.attn_implementation))  # as train.run resolves it
    model = get_peft_model(model, LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none", task_type="CAUSAL_LM"))
    trainer = SFTTrainer(model=model, args=sft_args(cfg, out_dir, torch.float32, "hf"), train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # disable_tqdm makes HF print every log dict; not a cost to time
    with trl_head_on_cpu():
        trainer.train()
    return time.perf_counter() - start


def run_once(cfg, tmp: Path, warmup: int, kind: str, i: int) -> dict:
    """One training run of ``kind`` (ours | bare) in this process: its timed steps, wall time, losses."""
    timer = step_timer()
    gc.collect()
    if kind == "ours":
        wall = run_ours(cfg, f"bench-{i}", timer)
    else:
        wall = run_bare(cfg, tmp / f"bare-{i}", timer)
    return {"steps": timer.steps(warmup), "wall": wall, "loss_first": timer.losses[1],
            "loss_last": timer.losses[max(timer.losses)]}


def run_child(overrides_file: Path, tmp: Path, warmup: int, threads: int, kind: str, i: int) -> dict:
    """``run_once`` in a fresh process (this script, ``--child``), plus that process's peak RSS."""
    cmd = [sys.executable, __file__, "--child", kind, "--child-run", str(i), "--overrides", str(overrides_file),
           "--warmup", str(warmup), "--tmp", str(tmp), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{kind} run {i} failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(cfg, warmup: int, reps: int, run) -> tuple[float, dict[str, int] | None]:
    """ABBA-alternated runs (``run(kind, i)``: ``run_once`` here or ``run_child``); returns ours/bare
    steady-state tokens/s, and each kind's highest peak RSS (KiB) when the runs report one.

    Both see the same batches in the same order, so step k costs the same work in every run. Noise
    on a shared machine only ever adds time, so each step's time is its minimum over the runs of one
    kind, and the ratio is total tokens over summed step minima, ours against bare.
    """
    per_step = {"ours": [], "bare": []}
    rss: dict[str, int] = {}
    order = []
    for rep in range(reps):
        order += ["ours", "bare"] if rep % 2 == 0 else ["bare", "ours"]
    for i, kind in enumerate(order):
        result = run(kind, i)
        steps = [tuple(step) for step in result["steps"]]
        per_step[kind].append(steps)
        tokens, seconds = sum(t for t, _ in steps), sum(d for _, d in steps)
        memory = ""
        if "peak_rss_kib" in result:
            rss[kind] = max(rss.get(kind, 0), result["peak_rss_kib"])
            memory = f"; peak RSS {result['peak_rss_kib'] / 1024:,.0f} MiB"
        print(f"  {i + 1}. {kind:4}  {tokens / seconds:8,.0f} tokens/s  (steps {warmup + 1}-{cfg.train.max_steps}: "
              f"{tokens:,.0f} tokens in {seconds:.1f}s; whole call {result['wall']:.1f}s{memory}; "
              f"loss step 1 {result['loss_first']:.4f}, last {result['loss_last']:.4f})", flush=True)
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
    return ours / bare, (rss if len(rss) == 2 else None)


def build_big_vocab_model(tiny: Path, out: Path, seed: int, global_only: bool = False) -> Path:
    """The tiny architecture with Gemma 3's 262,144-token vocabulary (the tiny tokenizer is kept).
    ``global_only``: both layers full attention, the control without a sliding-window mask."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    from scripts.model.tiny import tiny_gemma_config

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


def child_main(args) -> None:
    """``--child KIND``: one ``run_once`` with the parent's overrides; prints its result + peak RSS as JSON."""
    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = training_config(json.loads(args.overrides.read_text()))
    result = run_once(cfg, args.tmp, args.warmup, args.child, args.child_run)
    print(json.dumps({**result, "peak_rss_kib": proc_status_kib("VmHWM")}))


def print_throughput_header(cfg, steps: int, warmup: int) -> None:
    t = cfg.train
    print(f"throughput: {steps} optimiser steps x batch {t.per_device_batch_size} x accum {t.grad_accum}, "
          f"LoRA r={cfg.lora.r}, gradient checkpointing {t.gradient_checkpointing}, "
          f"attn {cfg.model.attn_implementation}, fp32, logging every step; timed after step {warmup}")
    with trl_head_on_cpu() as how:
        print(f"  bare loop: TRL SFTTrainer, loss: {how}")


def real_section(args, tmp_path: Path, steps: int, warmup: int, reps: int) -> tuple[float, dict[str, int]]:
    """Part 3: ours vs bare on the imported Gemma 3 270M, each run in a child process."""
    start = time.perf_counter()
    label = real_model(args.real_dir)
    datasets, _ = build_setup(tmp_path, args.rows, args.seed, tiny=False)
    kept = keep_short(datasets, args.real_dir, args.real_examples, args.real_max_tokens)
    overrides = training_overrides(tmp_path, args.real_dir, steps, args.seed, real_overrides())
    cfg = training_config(overrides)
    overrides_file = tmp_path / "overrides.json"
    overrides_file.write_text(json.dumps(overrides))
    sizes = ", ".join(f"{task} {len(n)} x {min(n)}-{max(n)} tokens" for task, n in kept.items())
    print(f"setup: {label} at {args.real_dir}; {args.rows} sample rows -> clean -> split -> train split cut to "
          f"the shortest examples ({sizes}) in {time.perf_counter() - start:.1f}s")
    print_throughput_header(cfg, steps, warmup)
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(f"  each run in a fresh process, {threads}; peak RSS = its VmHWM (load + data + training)")
    return throughput(cfg, warmup, reps,
                      lambda kind, i: run_child(overrides_file, tmp_path, warmup, args.threads, kind, i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "real"], default="tiny",
                        help="tiny: parts 1 and 2 on a tiny random Gemma 3 (default); real: part 3, ours vs bare "
                             "on the imported Gemma 3 270M (tokens/s and peak RSS)")
    parser.add_argument("--quick", action="store_true",
                        help="8 steps, one ours/bare pair, lengths 1k and 8k (about a minute; --model real: two)")
    parser.add_argument("--rows", type=int, default=None, help="sample rows (about 80%% land in train; "
                                                               "default 400, --model real 2000)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per training run "
                                                                "(default 20, --model real 12)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before the timed window (default 4)")
    parser.add_argument("--reps", type=int, default=None, help="ours/bare pairs, ABBA order (default 2)")
    parser.add_argument("--lengths", default=None, help="comma-separated (default 1024,8192,32768)")
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="chunked-loss tile rows for the memory part (configs/training.yaml: 4096)")
    parser.add_argument("--real-dir", type=Path, default=REPO / "models/gemma-3-270m",
                        help="--model real: the train.import-gguf folder (imported there when missing)")
    parser.add_argument("--real-examples", type=int, default=24,
                        help="--model real: training examples kept, the shortest of the train split")
    parser.add_argument("--real-max-tokens", type=int, default=512,
                        help="--model real: longest example kept (prompt + answer, chat template)")
    parser.add_argument("--threads", type=int, default=0,
                        help="--model real: torch threads per run (0: torch's default; 1 keeps a core that "
                             "another job shares from thrashing both loops)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--child-run", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    real = args.model == "real"
    rows = args.rows or (2000 if real else 400)
    args.rows = rows
    steps = args.steps or (8 if args.quick else 12 if real else 20)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 4)
    reps = args.reps or (1 if args.quick else 2)
    lengths = [int(x) for x in (args.lengths or ("1024,8192" if args.quick else "1024,8192,32768")).split(",")]
    if not 0 < warmup < steps:
        parser.error("need 0 < --warmup < --steps")

    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    began = time.perf_counter()
    ratio = linear = below = rss = None
    target = 0.95 if real else 0.9
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        tmp_path = Path(tmp)
        if real:
            ratio, rss = real_section(args, tmp_path, steps, warmup, reps)
        else:
            start = time.perf_counter()
            _, tiny = build_setup(tmp_path, rows, args.seed)
            cfg = training_config(training_overrides(tmp_path, tiny, steps, args.seed))
            print(f"setup: {rows} sample rows -> clean -> split -> tiny Gemma 3 (hidden 64, 2 layers) "
                  f"in {time.perf_counter() - start:.1f}s")
            if not args.skip_throughput:
                print_throughput_header(cfg, steps, warmup)
                ratio, _ = throughput(cfg, warmup, reps,
                                      lambda kind, i: run_once(cfg, tmp_path, warmup, kind, i))
            if not args.skip_memory:
                print(f"memory: one step (fwd+bwd), vocab {VOCAB:,}, LoRA, gradient checkpointing, fp32, "
                      f"attn windowed_sdpa (eager's seq x seq fp32 scores: {max(lengths) ** 2 * 4 / MIB:,.0f} MiB per head "
                      f"at {max(lengths):,}), chunk {args.chunk_size:,} rows; peak RSS - RSS after load")
                print(f"  {'seq':>6} {'labels':>6} {'full logits':>13} {'seq^2 B':>11}  "
                      f"{'chunked (ours)':20}  {'all-global':>11}    plain loss (full logits)")
                linear, below = memory(tiny, tmp_path, lengths, args.chunk_size, args.seed)
                print("  (seq^2 B: the sliding-window layer's bool attention mask that transformers would build for "
                      "sdpa, not built here;\n   all-global: chunked again with both layers global)")
    which = " (real Gemma 3 270M)" if real else ""
    if ratio is not None:
        print(f"ratio train.run / bare SFTTrainer tokens/s{which}: {ratio:.3f} (target >= {target}) "
              f"{'OK' if ratio >= target else 'OVER'}")
    if rss is not None:
        rss_ratio = rss["ours"] / rss["bare"]
        print(f"ratio train.run / bare SFTTrainer peak RSS{which}: {rss_ratio:.3f} (target <= 1.1; "
              f"{rss['ours'] / 1024:,.0f} / {rss['bare'] / 1024:,.0f} MiB) {'OK' if rss_ratio <= 1.1 else 'OVER'}")
    if linear is not None:
        ok = linear["as trained"] and below
        print(f"memory linear & below full logits: {'OK' if ok else 'OVER'} (below full logits "
              f"{'OK' if below else 'OVER'}; linear as trained {'OK' if linear['as trained'] else 'OVER'}, "
              f"without the sliding-window mask {'OK' if linear['all-global'] else 'OVER'})")
    print(f"total {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
