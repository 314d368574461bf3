"""Peak memory of one LoRA training step against sequence length, per attention implementation.

    .venv/bin/python bench/long_context_bench.py [--attns sdpa,eager] [--lengths 2048,4096,8192,16384]
        [--no-gradient-checkpointing] [--report rows.jsonl]
        [--model models/gemma-3-270m] [--config configs/training.yaml] [--answer 512] [--threads N]
        [--extrapolate 131072] [--calibrate-below 16384] [--out reports/long_context_bench.json]

One training step as ``train.run`` takes it on this machine (CPU here): the model loaded by
``scripts.training.backends.load_model`` (rope scaling, the chunked cross-entropy, LoRA as
``configs/training.yaml`` sets it), gradient checkpointing as the Trainer enables it, the optimizer
the Trainer builds from ``train.optimizer``; forward, backward and ``optimizer.step()`` on one
sequence of random token ids with labels on its last ``--answer`` tokens (an answer after a long
prompt). Each (attention, length) runs in a fresh child process and reports:

* peak RSS of the whole process (``VmHWM``): the ``peak MiB at L tokens: M`` line;
* RSS after the model is loaded (weights + Python + libraries) and the step's own peak of live
  tensor bytes, by torch's CPU allocator accounting (the profiler's memory events,
  ``profile_memory=True``), so the step is measured apart from the load;
* the terms, each measured where torch exposes it: the attention masks the model built (hooks on
  every attention module: unique mask storages and, for eager, the attention weights one layer
  returns), the checkpointed layer inputs (sizes of the tensors the checkpoints hold), the LoRA
  weights + gradients + optimizer state (after the step), and the loss tile;
* what ``scripts.training.memory_plan`` projects for the same step, term by term.

Then, per attention implementation, the fit ``peak = a + b L + c L^2`` over the lengths measured
and each term extrapolated to ``--extrapolate`` tokens, and the plan's error against every
measurement. ``--calibrate-below N`` refits the plan's calibration (``memory_plan.CPU_CALIBRATION``)
on the lengths under N only and reports its error on the rest: the honest extrapolation check.

A length is skipped (and said so) when the plan projects more than half the memory available now:
the machine is shared. Each length waits until the memory it needs is free (``free`` is read
before each child); never run two of these at once.

Measured on 2 CPU cores, 24 GiB, 2026-12-07 (docs/benchmarks.md "Long context memory"):
``--attns windowed_sdpa --lengths 2048,4096,8192`` and ``--no-gradient-checkpointing --lengths
1024,2048,3072``; the plan's CPU calibration is these rows' fit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.host import available_bytes, proc_status_kib  # noqa: E402  (after the sys.path line)

MIB = 2**20
GIB = 2**30


# --- child: one step ----------------------------------------------------------------------------


PRETRAINED_CONTEXT = 32768  # gemma-3-270m's (and the tiny model's) context before rope scaling


def bench_config(args):
    from scripts.config import load_config
    from scripts.model.config import QUADRATIC_ATTENTION
    from scripts.training.config import TrainingConfig

    overrides = {"backend": "hf", "model.name_or_path": str(args.model), "model.attn_implementation": args.attn}
    if args.gradient_checkpointing is not None:
        overrides["train.gradient_checkpointing"] = args.gradient_checkpointing
    if args.attn in QUADRATIC_ATTENTION and args.length:
        # train.run refuses sdpa/eager when their seq x seq mask at max_seq_length (131072) cannot fit this
        # host; measured here at a shorter length, they get the smallest rope factor whose context covers it.
        # Rope scaling only changes inv_freq: the step's memory is the same.
        factor = float(max(1, -(-args.length // PRETRAINED_CONTEXT)))
        overrides.update({"model.rope.factor": factor, "model.max_seq_length": int(factor) * PRETRAINED_CONTEXT})
    return load_config(args.config, TrainingConfig, overrides)


class AttentionProbe:
    """Forward hooks on every attention module: the masks it was given (unique storages) and the
    attention weights it returned (eager only; sdpa and the linear kernels return none)."""

    def __init__(self, model):
        self.masks: dict[int, int] = {}
        self.weights_bytes = 0
        for module in model.modules():
            if type(module).__name__.endswith("Attention") and hasattr(module, "q_proj"):
                module.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):
        import torch

        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            storage = mask.untyped_storage()
            self.masks[storage.data_ptr()] = storage.nbytes()
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if isinstance(weights, torch.Tensor):
            self.weights_bytes = max(self.weights_bytes, weights.untyped_storage().nbytes())


def live_peak(prof) -> int:
    """The step's peak of live tensor bytes allocated while profiling (CPU allocator events)."""
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def child_step(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import Trainer

    from scripts.model.loading import torch_dtype
    from scripts.training.backends import load_model
    from scripts.training.loss import forward_loss
    from scripts.training.prepare import load_checked_tokenizer
    from scripts.training.run import sft_args

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = bench_config(args)
    rss_start = proc_status_kib("VmRSS")
    dtype = torch_dtype(cfg.model.dtype)
    model = load_model(cfg, "hf", load_checked_tokenizer(cfg), dtype)  # rope, chunked loss, LoRA: as train.run
    if cfg.train.gradient_checkpointing:  # what Trainer does with gradient_checkpointing=True
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    training_args = sft_args(cfg, Path(args.work), dtype, "hf")
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_cls(trainable, **optimizer_kwargs)
    probe = AttentionProbe(model)
    attn_used = model.config._attn_implementation

    length, answer = args.length, min(args.answer, args.length - 1)
    torch.manual_seed(0)
    ids = torch.randint(10, model.config.vocab_size, (1, length))
    labels = ids.clone()
    labels[:, : length - answer] = -100
    rss_loaded = proc_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the high-water mark: VmHWM from here on is the step's
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = forward_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels},
                            cfg.loss.chunk_size)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    rss_peak = proc_status_kib("VmHWM")
    grads = sum(p.grad.nbytes for p in trainable if p.grad is not None)
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor))
    return {
        "attn": args.attn, "attn_used": attn_used, "length": length, "answer": answer,
        "gradient_checkpointing": cfg.train.gradient_checkpointing,
        "dtype": str(dtype).removeprefix("torch."), "seconds": round(seconds, 2), "loss": round(loss.item(), 4),
        "rss_start_mib": rss_start / 1024, "rss_loaded_mib": rss_loaded / 1024, "rss_peak_mib": rss_peak / 1024,
        "step_live_peak_mib": live_peak(prof) / MIB,
        "trainable_mib": sum(p.nbytes for p in trainable) / MIB, "grads_mib": grads / MIB,
        "optimizer_state_mib": state / MIB,
        "masks_mib": sum(probe.masks.values()) / MIB, "masks": len(probe.masks),
        "attn_weights_mib": probe.weights_bytes / MIB,
    }


# --- parent -------------------------------------------------------------------------------------


def run_child(args, attn: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--attn", attn, "--length", str(length), "--model", str(args.model),
           "--config", str(args.config), "--answer", str(args.answer), "--work", str(args.work)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.gradient_checkpointing is not None:
        cmd.append("--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"attn": attn, "length": length, "error": f"exit {done.returncode}: {tail[0][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_context(args):
    """(config, model shape) the plan reads: the bench's config and the model's own config.json."""
    from scripts.training.backends import load_model_config
    from scripts.training.memory_plan import ModelShape

    cfg = bench_config(args)
    return cfg, ModelShape.from_config(load_model_config(cfg))


def plan_row(cfg, shape, attn: str, length: int, answer: int, calibration=None, checkpointing: bool | None = None):
    from scripts.training.memory_plan import plan_step

    if checkpointing is not None and checkpointing != cfg.train.gradient_checkpointing:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"gradient_checkpointing": checkpointing})})
    return plan_step(shape, cfg, length, device="cpu", attn=attn, label_tokens=answer, calibration=calibration)


def measured_plan(cfg, shape, row: dict, calibration=None):
    """The plan of the step ``row`` measured (rows before the checkpointing switch had it on)."""
    return plan_row(cfg, shape, row["attn"], row["length"], row["answer"], calibration,
                    row.get("gradient_checkpointing", True))


def step_live(plan, trainable_bytes: float) -> float:
    """The plan's share of what the profiler sees: tensors allocated during the step (not the weights,
    the LoRA weights or the runtime, all there before it)."""
    return plan.peak - plan.terms["weights"] - plan.terms["runtime"] - trainable_bytes


def measured(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "rss_peak_mib" in r]


def fit_calibration(rows: list[dict], cfg, shape):
    """The plan's CPU factors refitted to ``rows``: the runtime from RSS after load and the RSS the
    profiler does not see (allocator slack, linear in tokens), the loss tile and layer copies from the
    steps whose peak is in that phase, eager's score copies and sdpa's per-element kernel bytes from
    what is left of their steps' peaks."""
    import dataclasses

    import numpy as np

    from scripts.training.memory_plan import CPU_CALIBRATION, FP32

    rows = measured(rows)
    if not rows:
        return CPU_CALIBRATION
    cal = CPU_CALIBRATION
    weights = measured_plan(cfg, shape, rows[0]).terms["weights"]
    base = float(np.mean([r["rss_loaded_mib"] * MIB - weights for r in rows]))
    # glibc's heap slack: the most per token any step showed, capped at the most any step showed (it
    # stops growing once the activations outgrow malloc's largest dynamic mmap threshold, 32 MiB)
    slack = [max((r["rss_peak_mib"] - r["rss_loaded_mib"] - r["step_live_peak_mib"]) * MIB, 0.0) for r in rows]
    per_token = max(s / r["length"] for s, r in zip(slack, rows))
    # the shortest measured length from which on no step showed slack (< 64 MiB)
    lengths = sorted({r["length"] for r in rows})
    none_from = [n for n in lengths if all(s < 64 * MIB for s, r in zip(slack, rows) if r["length"] >= n)]
    cal = dataclasses.replace(cal, runtime_bytes=base, runtime_per_token=round(per_token),
                              runtime_slack_cap=round(max(slack)), runtime_slack_until=none_from[0] if none_from else 0)

    def residual(r, plan, without: tuple[str, ...]) -> float:
        """Measured live peak minus the plan's live terms other than ``without``."""
        live = r["step_live_peak_mib"] * MIB
        persistent = plan.terms["optimizer"] - r["trainable_mib"] * MIB + plan.terms["checkpoints"]
        persistent += plan.terms["attention masks"]
        rest = {"layer recompute": plan.terms["layer recompute"], "attention kernel": plan.terms["attention kernel"]}
        return live - persistent - sum(v for k, v in rest.items() if k not in without)

    kept = [r for r in rows if not r.get("gradient_checkpointing", True)]
    rows = [r for r in rows if r.get("gradient_checkpointing", True)]
    if kept:  # without checkpointing: what autograd saves of every layer, on top of the loss or the gradients
        copies = []
        for r in kept:
            plan = measured_plan(cfg, shape, r, cal)
            unit = plan.terms["checkpoints"] / cal.saved_copies
            top = max(plan.terms["layer recompute"] + plan.terms["attention kernel"], plan.terms["loss tile"])
            live = r["step_live_peak_mib"] * MIB - (plan.terms["optimizer"] - r["trainable_mib"] * MIB)
            copies.append((live - plan.terms["attention masks"] - top) / unit)
        cal = dataclasses.replace(cal, saved_copies=round(float(np.mean(copies)), 3))
    loss_rows, layer_rows = [], []
    for r in rows:
        plan = measured_plan(cfg, shape, r, cal)
        in_layer = plan.terms["layer recompute"] + plan.terms["attention kernel"] > plan.terms["loss tile"]
        (layer_rows if in_layer else loss_rows).append((r, plan))
    if loss_rows:
        copies = [residual(r, p, ("layer recompute", "attention kernel")) / (p.terms["loss tile"]
                  / cal.loss_tile_copies) for r, p in loss_rows]
        cal = dataclasses.replace(cal, loss_tile_copies=round(float(np.mean(copies)), 3))
    linear = [(r, p) for r, p in layer_rows if r["attn"] not in ("eager",)]
    if linear:  # sdpa (and the linear kernels): layer copies, the kernel's bytes per seq^2 element apart
        sdpa = [(r, p) for r, p in linear if r["attn"] == "sdpa"]
        unit = [p.terms["layer recompute"] / cal.layer_copies for _, p in linear]
        left = [residual(r, p, ("layer recompute", "attention kernel")) for r, p in linear]
        if len(sdpa) >= 3:
            design = np.array([[u, (r["length"] ** 2 if r["attn"] == "sdpa" else 0.0)]
                               for u, (r, _) in zip(unit, linear)])
            (copies, bias), *_ = np.linalg.lstsq(design, np.array(left), rcond=None)
            cal = dataclasses.replace(cal, layer_copies=round(float(copies), 3),
                                      sdpa_bias_bytes=round(max(float(bias), 0.0), 3))
        else:
            cal = dataclasses.replace(cal, layer_copies=round(float(np.dot(unit, left) / np.dot(unit, unit)), 3))
    eager = [(r, measured_plan(cfg, shape, r, cal)) for r, _ in layer_rows
             if r["attn"] == "eager"]
    if eager:
        copies = [residual(r, p, ("attention kernel",)) / (shape.heads * r["length"] ** 2 * FP32) for r, p in eager]
        cal = dataclasses.replace(cal, eager_score_copies=round(float(np.mean(copies)), 3))
    return cal


def plan_error(rows: list[dict], cfg, shape, cal) -> list[tuple[dict, float]]:
    """(row, plan / measured peak RSS - 1) per measured row."""
    return [(r, measured_plan(cfg, shape, r, cal).peak / (r["rss_peak_mib"] * MIB) - 1)
            for r in measured(rows)]


def label(attn: str, checkpointing: bool) -> str:
    return attn if checkpointing else f"{attn} (no checkpointing)"


def row_label(row: dict) -> str:
    return f"{label(row['attn'], row.get('gradient_checkpointing', True))} {row['length']}"


def report(args, rows: list[dict]) -> None:
    """Per attention implementation: the fitted polynomial, each term extrapolated, the plan's error."""
    import numpy as np

    from scripts.training.memory_plan import CPU_CALIBRATION, TERM_ORDER

    cfg, shape = plan_context(args)
    rows = measured(rows)
    if not rows:
        print("nothing measured")
        return
    fitted = fit_calibration(rows, cfg, shape)
    print(f"\nfitted CPU calibration (all lengths): {fitted}")
    print(f"module's CPU_CALIBRATION:             {CPU_CALIBRATION}")
    for name, cal in (("module", CPU_CALIBRATION), ("fitted", fitted)):
        errors = plan_error(rows, cfg, shape, cal)
        worst = max(abs(e) for _, e in errors)
        print(f"plan ({name} calibration) vs measured peak RSS: "
              + ", ".join(f"{row_label(r)}: {e:+.1%}" for r, e in errors) + f"; worst {worst:.1%}")
    if args.calibrate_below:
        train = [r for r in rows if r["length"] < args.calibrate_below]
        held = [r for r in rows if r["length"] >= args.calibrate_below]
        if train and held:
            cal = fit_calibration(train, cfg, shape)
            errors = plan_error(held, cfg, shape, cal)
            print(f"calibrated below {args.calibrate_below} tokens only, error at the longer ones: "
                  + ", ".join(f"{row_label(r)}: {e:+.1%}" for r, e in errors))
    for attn, checkpointing in dict.fromkeys((r["attn"], r.get("gradient_checkpointing", True)) for r in rows):
        points = sorted((r["length"], r["rss_peak_mib"]) for r in rows
                        if (r["attn"], r.get("gradient_checkpointing", True)) == (attn, checkpointing))
        x, y = np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points])
        degree = 2 if len(points) >= 3 else 1 if len(points) == 2 else 0
        coef = np.polyfit(x, y, degree)[::-1] if degree else [y[0]]
        fit = " + ".join(f"{c:.4g} L^{i}" if i else f"{c:.4g}" for i, c in enumerate(coef)).replace(" L^1", " L")
        answer = rows[0]["answer"]
        plan = plan_row(cfg, shape, attn, args.extrapolate, answer, fitted, checkpointing)
        terms = ", ".join(f"{t} {plan.gib(t):.1f}" for t in TERM_ORDER)
        poly = sum(c * args.extrapolate**i for i, c in enumerate(coef)) / 1024
        print(f"{label(attn, checkpointing)}: peak RSS MiB = {fit} over {len(points)} lengths; at {args.extrapolate} tokens: "
              f"polynomial {poly:,.0f} GiB, plan {plan.peak / GIB:,.1f} GiB ({terms} GiB)")


def projected_need(args, rows: list[dict], attn: str, length: int) -> float:
    """Bytes the next child will need: the memory plan (calibrated on the rows so far) + 10%."""
    cfg, shape = plan_context(args)
    return 1.1 * plan_row(cfg, shape, attn, length, min(args.answer, length - 1),
                           fit_calibration(rows, cfg, shape)).peak


def wait_for_memory(need: float, wait_s: int) -> bool:
    """True once ``need`` bytes are available (the machine is shared: wait up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while available_bytes() < need:
        if time.monotonic() > deadline:
            return False
        time.sleep(15)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--attns", default="sdpa,eager",
                        help="attention implementations to measure, comma-separated (default sdpa,eager; "
                             "any name transformers has registered, e.g. windowed_sdpa)")
    parser.add_argument("--lengths", default="2048,4096,8192,16384", help="sequence lengths in tokens")
    parser.add_argument("--model", type=Path, default=REPO / "models/gemma-3-270m",
                        help="base model folder (default: the `fab train.import-gguf` import)")
    parser.add_argument("--config", type=Path, default=REPO / "configs/training.yaml",
                        help="training config whose LoRA, loss and optimizer settings the step uses")
    parser.add_argument("--answer", type=int, default=512, help="label tokens at the end of the sequence")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="override the config's train.gradient_checkpointing (default: the config's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--extrapolate", type=int, default=131072, help="length the fit projects to")
    parser.add_argument("--work", type=Path, default=Path("/tmp/long-context-bench"))
    parser.add_argument("--out", type=Path, default=None, help="also append the rows here as JSON lines")
    parser.add_argument("--wait", type=int, default=600,
                        help="seconds to wait for the memory a length needs before skipping it (default 600)")
    parser.add_argument("--calibrate-below", type=int, default=0,
                        help="also fit the plan on the lengths under this only and report its error on the rest")
    parser.add_argument("--report", type=Path, default=None,
                        help="measure nothing: report the rows of an earlier --out file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--attn", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from scripts.quiet import quiet_third_party_output

    quiet_third_party_output(libraries=True)
    if args.child:
        print(json.dumps(child_step(args)))
        return 0
    if args.report:
        report(args, [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()])
        return 0
    rows: list[dict] = []
    # rows an earlier run appended to --out calibrate the projections that decide whether a length fits
    earlier = ([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
               if args.out and args.out.is_file() else [])
    for attn in args.attns.split(","):
        for length in map(int, args.lengths.split(",")):
            need = projected_need(args, earlier + rows, attn, length)
            if wait_for_memory(need, args.wait):
                row = run_child(args, attn, length)
            else:
                row = {"attn": attn, "length": length,
                       "skipped": f"needs ~{need / GIB:.1f} GiB, {available_bytes() / GIB:.1f} GiB available"}
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            rows.append(row)
            print(json.dumps(row), flush=True)
            if "rss_peak_mib" in row:
                print(f"peak MiB at {length} tokens: {row['rss_peak_mib']:.0f}", flush=True)
    report(args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
