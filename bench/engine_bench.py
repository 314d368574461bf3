"""vLLM vs HF generate on the same pages: pages/s, output tokens/s, and whether the answers agree.

    python bench/engine_bench.py                                     # zero-shot real Gemma 3 270M, 16 + 16 pages
    python bench/engine_bench.py --adapter /tmp/quality-bench/runs/quality   # a fine-tuned run
    python bench/engine_bench.py --pages 32 --max-new-tokens 256 --work /tmp/engine-bench

Both engines answer the same validation pages of the sample (sites never seen in training), per task,
with eval.generate's decoding (configs/eval.yaml: chat template, xgrammar grammar, closing within
the budget, greedy) in the same precision (the model layer's rule: fp32 on CPU), all pages of a task
handed over at once (HF: `--batch` per generate call; vLLM schedules them itself). vLLM runs with
configs/eval.yaml's engine settings (compiled, prefix caching on), then with `enforce_eager` (not
compiled) and without prefix caching (every product prompt starts with the same instruction and
catalog). Timing excludes loading, and each engine first answers `--warmup` other pages untimed.
Prints per task `vllm/hf pages/s: X` and the answers that differ (exact string), with both answers.

Needs `./scripts/setup_env.sh --serve --base-model`. Targets (CPU): vLLM >= 4x HF pages/s on
product pages, agreement >= 95%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/engine-bench"), help="scratch folder (default %(default)s)")
    p.add_argument("--base", default="models/gemma-3-270m", help="base model dir (imported from the packaged GGUF "
                                                                  "when missing)")
    p.add_argument("--adapter", default="", help="a run or adapter dir; default: the base alone (zero-shot)")
    p.add_argument("--pages", type=int, default=16, help="validation pages per task (default %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="HF prompts per generate call (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="extraction budget (default %(default)s)")
    p.add_argument("--no-cache-row", action="store_true", help="skip the vLLM run without prefix caching")
    p.add_argument("--no-eager-row", action="store_true",
                   help="skip the vLLM run with enforce_eager (not compiled: the tests' and the demo's setting)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed pages per task each engine answers first, pages not among the timed ones: "
                        "grammar compilation and first-call costs are paid once per process, as in a crawl's "
                        "backfill (default %(default)s; 0 = time them too)")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="both engines' precision (default auto: the model layer's rule, fp32 on CPU)")
    return p.parse_args(argv)


def pages(datasets: Path, count: int) -> dict[str, list]:
    """The first ``count`` validation pages of each task."""
    from scripts.config import load_config
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.dataset.config import DatasetsConfig

    config = load_config(datasets, DatasetsConfig)
    by_task: dict[str, list] = {}
    for record in read_jsonl(config.data_paths().split_file("validation"), CleanRecord):
        if len(by_task.setdefault(record.task, [])) < count:
            by_task[record.task].append(record)
    return by_task


def run_engine(args, datasets: Path, engine: str, by_task: dict, warmup: dict, **engine_settings) -> dict:
    """Per task: seconds, output tokens, answers and valid count of ``engine`` on ``by_task``, with
    configs/eval.yaml's engine settings (``engine_settings`` overrides some)."""
    from scripts.config import load_config
    from scripts.dataset.config import DatasetsConfig
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import build_task_decoder, generate_outputs, resolve_model
    from scripts.serving.runners import open_runner

    cfg = load_config(REPO / "configs/eval.yaml", EvalConfig, {
        "model.adapter": args.adapter or "latest", "model.zero_shot": not args.adapter,
        "model.base": None if args.adapter else args.base, "data.datasets_config": str(datasets),
        "model.dtype": args.dtype, "engine.dtype": args.dtype,
        "engine.name": engine, **{f"engine.{key}": value for key, value in engine_settings.items()},
        "engine.requests_per_call": max(len(v) for v in by_task.values()),
        "decoding.batch_size": args.batch,
        "decoding.max_new_tokens": {"classification": 4, "extraction": args.max_new_tokens}})
    tasks = load_config(datasets, DatasetsConfig).tasks
    resolved = resolve_model(cfg)
    out = {}
    with open_runner(engine, resolved, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
                     settings=cfg.engine, max_model_len=8192) as (runner, tokenizer):
        for task, records in by_task.items():
            decoder, max_new = build_task_decoder(cfg, runner.vocab, tokenizer, tasks[task], task)
            for _ in generate_outputs(cfg, runner, tokenizer, decoder, tasks[task], task, warmup[task], max_new,
                                      "bench"):
                pass  # untimed: the engine's grammar compilation and first prefill
            started = time.perf_counter()
            answers = [c for batch in generate_outputs(cfg, runner, tokenizer, decoder, tasks[task], task, records,
                                                       max_new, "bench") for c, _ in batch]
            seconds = time.perf_counter() - started
            out[task] = {"seconds": seconds, "tokens": sum(c.output_tokens for c in answers),
                         "answers": {c.id: c.raw for c in answers}, "valid": sum(c.valid for c in answers)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from scripts.serving.engines import vllm_version

    if not vllm_version():
        print("error: vLLM is not installed: ./scripts/setup_env.sh --serve", file=sys.stderr)
        return 1
    if not Path(args.base).is_dir():
        from scripts.model.gguf_import import import_gguf

        import_gguf(None, Path(args.base), say=lambda s: print(f"  {s}"))
    from quality_bench import sample_splits

    datasets = sample_splits(args.work, 2000)
    both = pages(datasets, args.pages + args.warmup)
    by_task = {task: records[: args.pages] for task, records in both.items()}
    warmup = {task: records[args.pages :] for task, records in both.items()}
    runs = {"hf": run_engine(args, datasets, "hf", by_task, warmup),
            "vllm": run_engine(args, datasets, "vllm", by_task, warmup)}
    if not args.no_eager_row:
        runs["vllm, enforce_eager"] = run_engine(args, datasets, "vllm", by_task, warmup, enforce_eager=True)
    if not args.no_cache_row:
        runs["vllm, no prefix cache"] = run_engine(args, datasets, "vllm", by_task, warmup,
                                                   enable_prefix_caching=False)
    what = f"{'adapter ' + args.adapter if args.adapter else 'zero-shot ' + args.base}, vLLM {vllm_version()}"
    print(f"\n== {what}; {args.pages} validation pages per task after {args.warmup} untimed, budget "
          f"{args.max_new_tokens}, dtype {args.dtype}")
    for task in by_task:
        hf = runs["hf"][task]
        for name, run in runs.items():
            r = run[task]
            print(f"{task} {name}: {len(r['answers']) / r['seconds']:.2f} pages/s, {r['tokens'] / r['seconds']:.1f} "
                  f"output tokens/s, {r['valid']}/{len(r['answers'])} valid, {r['seconds']:.1f} s")
        ratio = hf["seconds"] / runs["vllm"][task]["seconds"]
        others = ", ".join(f"{name}: {hf['seconds'] / run[task]['seconds']:.2f}"
                           for name, run in runs.items() if name not in ("hf", "vllm"))
        print(f"{task} vllm/hf pages/s: {ratio:.2f}" + (f" ({others})" if others else ""))
        for name, run in runs.items():
            if name == "hf":
                continue
            differ = [key for key, raw in run[task]["answers"].items() if raw != hf["answers"][key]]
            label = "" if name == "vllm" else f" ({name})"
            print(f"{task} agreement{label}: {len(by_task[task]) - len(differ)}/{len(by_task[task])}")
            if name == "vllm":  # the other variants' differences: their count only
                for key in differ:
                    print(f"  {key}\n    hf:   {hf['answers'][key][:300]}\n    vllm: {run[task]['answers'][key][:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
