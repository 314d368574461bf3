"""The answer closing's per-token tables on Gemma 3's real 262,144-token vocabulary: build time and per-step cost.

    python bench/closing_bench.py                       # real tokenizer + real model (models/gemma-3-270m)
    python bench/closing_bench.py --no-model            # tables and closing steps only, no forward pass
    python bench/closing_bench.py --batch 8 --answers 16 --steps 16

`closing_spec.CloserSpec` (built once per task by `eval.generate` and by the in-process vLLM engine) holds
per-token tables over the whole vocabulary: the greedy closing tokenizer, the surrogate-escape bans,
the "opens a string and writes into it" riders (every constraint that counts characters or items),
the per-state character counts (`max_chars`), the sorted bytes (`unique_items` prefix look-ups).
Some are built with the spec, the rest on first use. This script measures, on the real tokenizer:

1. build: `closer_spec()` for the extraction task, then the lazy tables on the first answers (cold),
   for the shipped constraints (configs/datasets.yaml) and for a variant that adds `max_chars` to
   every string slot and `max_items`/`max_chars` to `categories` (the per-state character tables);
2. per step: `AnswerCloser` driven through the canonical answers of the sample's validation pages
   (batch of --batch rows, the shipped extraction budget), seconds per decode step once warm;
3. the denominator: one unconstrained greedy decode step of the real model at the same batch on the
   same pages (prefill subtracted: generate N+1 tokens minus generate 1), and the ratio of (2) to it.

The xgrammar mask itself is measured by `bench/eval_bench.py` (5). Ratios, not absolute times: the
machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EXTRACTOR = "productpage_extractor"
# the variant: a character bound on every string slot and an item bound on the list (what `fab
# dataset.stats` proposes from the sample), so every table the closing has is built and used
VARIANT = {"title": {"max_chars": 120}, "brand": {"max_chars": 40}, "sku": {"max_chars": 24},
           "categories": {"max_items": 6, "max_chars": 40}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", type=Path, default=REPO / "models/gemma-3-270m",
                   help="the imported real model (tokenizer and weights; default %(default)s)")
    p.add_argument("--no-model", action="store_true", help="skip the forward passes (3)")
    p.add_argument("--batch", type=int, default=8, help="rows per decode step (default: the shipped %(default)s)")
    p.add_argument("--answers", type=int, default=16, help="validation answers driven through (default %(default)s)")
    p.add_argument("--steps", type=int, default=16, help="decode steps timed for the model (default %(default)s)")
    p.add_argument("--rows", type=int, default=400, help="sample rows generated (default %(default)s)")
    return p.parse_args(argv)


def validation_records(tmp: Path, rows: int):
    """The sample's validation extraction records (sample -> clean -> split, as the benches do)."""
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.sample_data.splits import sample_splits

    datasets = sample_splits(tmp, rows, schema_version="bench")
    records = [r for s in ("validation", "test")
               for r in read_jsonl(datasets.data_paths().split_file(s), CleanRecord) if r.task == EXTRACTOR]
    return datasets, records


def variant_spec(spec):
    """``spec`` with VARIANT's constraints added to its slots."""
    catalog = {name: slot.model_copy(update=VARIANT.get(name, {})) for name, slot in (spec.catalog or {}).items()}
    return spec.model_copy(update={"catalog": catalog})


def drive(closer_spec, answers: list[list[int]], batch: int, budget: int, vocab: int) -> tuple[float, int, int]:
    """Seconds inside ``AnswerCloser`` for every answer in batches, the decode steps, the rows refused
    anything (the reference answers obey the constraints: expect none, except a bound the variant sets)."""
    import torch

    from scripts.evaluation.generation.closing import AnswerCloser

    seconds, steps, refused = 0.0, 0, 0
    stop = next(iter(closer_spec.stop_ids))
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(answers), batch):
        rows = answers[start:start + batch]
        closer = AnswerCloser(closer_spec, budget)
        longest = max(map(len, rows))
        previous = torch.zeros((len(rows), 1), dtype=torch.long)
        for step in range(longest):
            scores = torch.randn((len(rows), vocab), generator=generator)
            chosen = [row[step] if step < len(row) else stop for row in rows]
            scores[torch.arange(len(rows)), torch.tensor(chosen)] = 100.0  # the reference is the argmax
            began = time.perf_counter()
            closer(previous, scores)
            seconds += time.perf_counter() - began
            steps += 1
            previous = torch.tensor(chosen).unsqueeze(1)
        refused += sum(bool(r) for r in closer.interventions)
    return seconds, steps, refused


def closing_costs(tokenizer, info, spec, bounds, answers, batch: int, budget: int, vocab: int) -> dict:
    from scripts.evaluation.generation.decoding import closer_spec

    began = time.perf_counter()
    made = closer_spec(tokenizer, info, spec, bounds)
    build = time.perf_counter() - began
    first, first_steps, _ = drive(made, answers[:batch], batch, budget, vocab)  # lazy tables built here
    warm = [drive(made, answers, batch, budget, vocab) for _ in range(2)]
    seconds, steps, refused = min(warm)
    return {"build_s": build, "first_batch_s": first, "first_steps": first_steps,
            "step_s": seconds / steps, "steps": steps, "refused_rows": refused}


def model_step_seconds(model_dir: Path, tokenizer, records, batch: int, steps: int) -> float:
    """One unconstrained greedy decode step at ``batch`` rows: (generate steps+1) - (generate 1), / steps."""
    import torch

    from scripts.chat import encode_chat, prompt_messages
    from scripts.model.loading import load_base

    model = load_base(str(model_dir), dtype="auto").eval()
    prompts = [encode_chat(tokenizer, prompt_messages(r)) for r in records[:batch]]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def run(new: int) -> float:
        began = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=pad)
        return time.perf_counter() - began

    run(2)  # warm-up
    one = min(run(1) for _ in range(2))
    many = min(run(steps + 1) for _ in range(2))
    return max(many - one, 1e-9) / steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.decoding import tokenizer_info
    from scripts.model.loading import load_model_config, load_tokenizer

    if not (args.model / "config.json").is_file():
        print(f"error: no model at {args.model}: run `fab train.import-gguf` first", file=sys.stderr)
        return 1
    tokenizer = load_tokenizer(str(args.model))
    config = load_model_config(str(args.model))
    began = time.perf_counter()
    info = tokenizer_info(tokenizer, config)
    info_s = time.perf_counter() - began
    eval_cfg = load_config(REPO / "configs/eval.yaml", EvalConfig)
    budget = eval_cfg.decoding.max_new_tokens["extraction"]
    with tempfile.TemporaryDirectory() as tmp:
        datasets, records = validation_records(Path(tmp), args.rows)
    records = records[: args.answers]
    stop = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    answers = [tokenizer.encode(r.target, add_special_tokens=False) + [stop] for r in records]
    spec = datasets.tasks[EXTRACTOR]
    print(f"real tokenizer: {len(info.decoded_vocab):,} tokens (xgrammar TokenizerInfo {info_s:.1f} s); "
          f"{len(answers)} validation answers, {statistics.mean(map(len, answers)):.0f} tokens on average; "
          f"batch {args.batch}, budget {budget}")
    results = {}
    for label, task_spec in (("shipped constraints", spec), ("+ max_chars/max_items", variant_spec(spec))):
        c = closing_costs(tokenizer, info, task_spec, eval_cfg.schema_bounds, answers, args.batch, budget,
                          config.vocab_size)
        results[label] = c
        print(f"[{label}] build {c['build_s']:.2f} s; first batch (lazy tables) {c['first_batch_s']:.2f} s over "
              f"{c['first_steps']} steps; warm {1000 * c['step_s']:.2f} ms per decode step of {args.batch} rows "
              f"({c['steps']} steps); rows refused a token: {c['refused_rows']}")
    if not args.no_model:
        step = model_step_seconds(args.model, tokenizer, records, args.batch, args.steps)
        print(f"model: {1000 * step:.1f} ms per unconstrained decode step of {args.batch} rows "
              f"({args.steps} steps, prefill subtracted)")
        for label, c in results.items():
            print(f"  => [{label}] closing per step = {c['step_s'] / step:.1%} of a decode step; "
                  f"build + lazy tables = {(c['build_s'] + c['first_batch_s']) / step:.0f} decode steps")
    print(json.dumps({k: {m: round(v, 4) for m, v in c.items()} for k, c in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
