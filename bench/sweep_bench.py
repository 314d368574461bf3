"""Training sweeps on the real Gemma 3 270M, scored cheaply enough for a CPU: one point per call.

    python bench/sweep_bench.py --name lora16_lr3e-4 --lr 3e-4 --lora-r 16 --steps 120 --score-at 30,60,120
    python bench/sweep_bench.py --name catalog --key-order catalog          # same, targets in catalog order
    python bench/sweep_bench.py --name full_lr5e-5 --method full --lr 5e-5
    python bench/sweep_bench.py --table                                     # every point so far, one table

Every point trains on the same sample data (generated once under --work) and scores the base model
(step 0) and its checkpoints **teacher-forced**: one forward pass per page instead of a generation.

- nav accuracy: the label whose first token has the highest logit, which is exactly what constrained
  greedy decoding answers when the labels' first tokens differ;
- extraction exact match: every answer token is the argmax given the reference prefix. That holds
  if and only if greedy decoding writes the reference, so it is a lower bound of the constrained
  greedy exact match (the grammar can only remove wrong tokens) and of the judge's, which also
  accepts near values (numeric tolerance, fuzzy title);
- slot accuracy: every token of the slot's value (and the `,`/`}` that ends it, and the token that
  ends where it starts) is the argmax given the reference prefix; hallucination: the same on slots
  whose reference is null. The token before the value counts because Gemma decides there: `":"`
  opens a string, `":` leaves room for `null` (rows before 2026-12-07 left it out, and measured a
  null as right whenever `null` followed `":`, which it nearly always does);
- answer NLL: mean cross-entropy per answer token.

Scored sets: the first --val-per-task validation pages of each task (sites never seen in training)
and the longest --long-frac of each task's test pages (by tokens; the table shows how much longer
they are than anything trained on). Checkpoints in the middle of a cosine schedule have not
annealed yet, so the examples-seen curve is a lower bound of what a run of that length reaches.
Results are appended to <work>/results.jsonl; `--table` prints them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/sweep"), help="scratch folder (default %(default)s)")
    p.add_argument("--base", default="models/gemma-3-270m", help="base model dir or hub id")
    p.add_argument("--name", help="the point's name in the results")
    p.add_argument("--table", action="store_true", help="print every result in --work and exit")
    point = p.add_argument_group("the point")
    point.add_argument("--method", choices=["lora", "full"], default="lora")
    point.add_argument("--lr", type=float, default=3e-4)
    point.add_argument("--lora-r", type=int, default=16, help="alpha = 2r")
    point.add_argument("--key-order", choices=["sorted", "catalog"], default="sorted",
                       help="extraction targets with sorted keys or in the catalog's order")
    point.add_argument("--steps", type=int, default=120, help="optimiser steps at batch 1")
    point.add_argument("--warmup", type=float, default=0.05)
    point.add_argument("--score-at", default="", help="steps whose checkpoints are scored (default: --steps)")
    scoring = p.add_argument_group("scoring")
    scoring.add_argument("--rows", type=int, default=2000, help="sample rows generated (default %(default)s)")
    scoring.add_argument("--val-per-task", type=int, default=40)
    scoring.add_argument("--long-frac", type=float, default=0.1, help="longest share of test pages per task")
    scoring.add_argument("--stretch", type=int, default=0,
                         help="also score the first 10 validation product pages padded with page boilerplate "
                              "(scripts, styles, icon sprites: no product data) to at least this many tokens, "
                              "at the last step only; 0 = off")
    scoring.add_argument("--no-base", action="store_true", help="skip the step-0 (zero-shot) scoring")
    return p.parse_args(argv)


# --- data ------------------------------------------------------------------------


def key_ordered(source: Path, work: Path, order: str) -> Path:
    """A copy of the sample's processed data whose extraction targets list keys in ``order``
    (``catalog``: the task's slot order, the prompt catalog's; ``sorted``: alphabetical)."""
    from scripts.config import load_config
    from scripts.contracts import sha256_file
    from scripts.dataset.config import DatasetsConfig
    from quality_bench import datasets_config

    datasets = load_config(source, DatasetsConfig)
    name = f"sample_{order}"
    config = datasets_config(work, name)
    src, dst = datasets.data_paths().splits_dir, load_config(config, DatasetsConfig).data_paths().splits_dir
    if (dst / "manifest.json").is_file():
        return config
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.jsonl"):
        lines = []
        for line in path.read_text().splitlines():
            row = json.loads(line)
            slots = datasets.tasks[row["task"]].slots
            if slots:
                target = json.loads(row["target"])
                keys = list(slots) if order == "catalog" else sorted(slots)
                row["target"] = json.dumps({k: target[k] for k in keys}, ensure_ascii=False, separators=(",", ":"))
            lines.append(json.dumps(row, ensure_ascii=False))
        (dst / path.name).write_text("\n".join(lines) + "\n")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["schema_version"] = manifest["config"]["schema_version"] = name
    for file_name, entry in manifest["files"].items():
        entry.update(sha256=sha256_file(dst / file_name), bytes=(dst / file_name).stat().st_size)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return config


# --- teacher-forced scoring ---------------------------------------------------------


def value_spans(target: str) -> dict[str, tuple[int, int]] | None:
    """Character span of each value in a compact JSON object, or None if it is not compact."""
    obj = json.loads(target)
    spans, pos, out = {}, 1, "{"
    for i, (key, value) in enumerate(obj.items()):
        head = ("," if i else "") + json.dumps(key, ensure_ascii=False) + ":"
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        spans[key] = (pos + len(head), pos + len(head) + len(body))
        out += head + body
        pos = len(out)
    return spans if out + "}" == target else None


def token_ends(tokenizer, ids: list[int]) -> list[int]:
    return [len(tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False))
            for i in range(len(ids))]


def score(model, tokenizer, records, tasks) -> dict[str, Any]:
    import torch

    from scripts.evaluation.generation.decoding import value_tokens
    from scripts.training.data import IGNORE_INDEX, encode_example

    first_token = {}
    nav = {"n": 0, "correct": 0}
    ext = {"n": 0, "exact": 0, "slots": {}, "null_n": 0, "null_wrong": 0, "nll": 0.0, "tokens": 0,
           "token_ok": 0, "not_compact": 0}
    longest = 0
    for record in records:
        input_ids, labels, _, _ = encode_example(tokenizer, record)
        longest = max(longest, len(input_ids))
        answer = [t for t in labels if t != IGNORE_INDEX]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([input_ids]), logits_to_keep=len(answer) + 1).logits[0, :-1]
        logits = logits.float()
        spec = tasks[record.task]
        if spec.kind == "classification":
            if record.task not in first_token:
                first_token[record.task] = {
                    label: [t for t in encode_example(tokenizer, record.model_copy(update={"target": label}))[1]
                            if t != IGNORE_INDEX][0] for label in spec.labels}
            firsts = first_token[record.task]
            predicted = max(firsts, key=lambda label: logits[0, firsts[label]].item())
            nav["n"] += 1
            nav["correct"] += predicted == record.target
            continue
        gold = torch.tensor(answer)
        ok = (logits.argmax(-1) == gold).tolist()
        ext["n"] += 1
        ext["exact"] += all(ok)
        ext["nll"] += torch.nn.functional.cross_entropy(logits, gold, reduction="sum").item()
        ext["tokens"] += len(answer)
        ext["token_ok"] += sum(ok)
        spans = value_spans(record.target)
        ends = token_ends(tokenizer, answer[:-1])
        if spans is None or not ends or ends[-1] != len(record.target):
            ext["not_compact"] += 1
            continue
        reference = json.loads(record.target)
        for key, covering in value_tokens(spans, ends, through_end=True).items():
            right = all(ok[i] for i in covering)
            slot = ext["slots"].setdefault(key, [0, 0])
            slot[0] += 1
            slot[1] += right
            if reference[key] is None:
                ext["null_n"] += 1
                ext["null_wrong"] += not right
    slots_n = sum(v[0] for v in ext["slots"].values())
    return {
        "nav_n": nav["n"], "nav_acc": nav["correct"] / nav["n"] if nav["n"] else None,
        "ext_n": ext["n"], "exact": ext["exact"] / ext["n"] if ext["n"] else None,
        "slot_acc": sum(v[1] for v in ext["slots"].values()) / slots_n if slots_n else None,
        "per_slot": {k: v[1] / v[0] for k, v in ext["slots"].items()},
        "halluc": ext["null_wrong"] / ext["null_n"] if ext["null_n"] else None,
        "answer_nll": ext["nll"] / ext["tokens"] if ext["tokens"] else None,
        "token_acc": ext["token_ok"] / ext["tokens"] if ext["tokens"] else None,
        "not_compact": ext["not_compact"], "longest_tokens": longest,
    }


def scored_sets(datasets_path: Path, tokenizer, val_per_task: int, long_frac: float, stretch: int = 0):
    from scripts.config import load_config
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.dataset.config import DatasetsConfig
    from scripts.training.data import encode_example

    datasets = load_config(datasets_path, DatasetsConfig)
    data = datasets.data_paths()
    validation = list(read_jsonl(data.split_file("validation"), CleanRecord))
    test = list(read_jsonl(data.split_file("test"), CleanRecord))
    sets = {"validation": [], "test_longest": []}
    for task in datasets.tasks:
        sets["validation"] += [r for r in validation if r.task == task][:val_per_task]
        rows = sorted((r for r in test if r.task == task), key=lambda r: -len(encode_example(tokenizer, r)[0]))
        sets["test_longest"] += rows[: max(1, math.ceil(long_frac * len(rows)))]
    if stretch:
        sets["validation_stretched"] = stretched(validation, tokenizer, stretch)
    return datasets.tasks, sets


def boilerplate(rng) -> str:
    """One block of the markup real pages are padded with: tag-manager scripts, CSS, an SVG sprite."""
    ident = f"{rng.randrange(16**8):08X}"
    rules = "".join(f".c{rng.randrange(10**5)}{{margin:{rng.randrange(40)}px;color:#{rng.randrange(16**6):06x}}}"
                     for _ in range(12))
    paths = "".join(f'<symbol id="i{rng.randrange(10**4)}" viewBox="0 0 24 24"><path d="M{rng.randrange(24)} '
                    f'{rng.randrange(24)}l{rng.randrange(9)} {rng.randrange(9)}h-{rng.randrange(9)}z"/></symbol>'
                    for _ in range(4))
    return (f"<script>window.__cfg_{ident}={{\"consent\":{{\"ads\":false,\"stats\":true}},\"ab\":\"v{rng.randrange(9)}\","
            f"\"ts\":{rng.randrange(10**12)}}};(function(w,d){{var s=d.createElement('script');s.async=1;"
            f"s.src='/static/js/chunk.{ident.lower()}.js';d.head.appendChild(s)}})(window,document);</script>\n"
            f"<style>{rules}</style>\n<svg style=\"display:none\">{paths}</svg>\n")


def stretched(records, tokenizer, tokens: int, per_task: int = 10):
    """The first ``per_task`` pages of each task with boilerplate after ``HTML:`` until ``tokens`` long."""
    import random

    from scripts.training.data import encode_example

    out, seen = [], {}
    for record in records:
        if seen.setdefault(record.task, 0) >= per_task or "\nHTML:\n" not in record.prompt:
            continue
        seen[record.task] += 1
        rng = random.Random(record.id)
        head, tail = record.prompt.split("\nHTML:\n", 1)
        pad = ""
        while True:
            longer = record.model_copy(update={"prompt": f"{head}\nHTML:\n{pad}{tail}"})
            if len(encode_example(tokenizer, longer)[0]) >= tokens:
                break
            pad += "".join(boilerplate(rng) for _ in range(2))
        out.append(longer)
    return out


def longest_train_tokens(run_dir: Path) -> int | None:
    prepare = run_dir / "prepare.json"
    if prepare.is_file():
        return json.loads(prepare.read_text())["splits"]["train"]["longest_tokens"]
    return None


# --- one point ----------------------------------------------------------------------


def load_for_scoring(args, run_dir: Path | None, checkpoint: Path | None):
    from scripts.model.loading import load_base, load_tokenizer, training_rope

    rope = training_rope(run_dir)
    rope = rope if rope and rope[0] > 1 else None
    if checkpoint is not None and not (checkpoint / "adapter_config.json").is_file():
        model = load_base(str(checkpoint), dtype="auto")  # a full fine-tune's checkpoint: its config has the rope
    else:
        model = load_base(args.base, dtype="auto", rope=rope if checkpoint is not None else None)
        if checkpoint is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(checkpoint))
    return model.eval(), load_tokenizer(args.base)


def record(work: Path, row: dict) -> None:
    with (work / "results.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "per_slot"}))


def done(work: Path, name: str, key_order: str, step: int, split: str) -> bool:
    return any(r["name"] == name and r["key_order"] == key_order and r["step"] == step and r["split"] == split
               for r in read_results(work))


def score_missing(args, datasets: Path, info: dict, run_dir: Path | None, step: int, extra: dict) -> None:
    """Score the sets this (point, step) has no result for yet: reruns add sets, never repeat them."""
    last = step in (0, args.steps)
    wanted = ["validation"] + (["test_longest"] + (["validation_stretched"] if args.stretch else []) if last else [])
    missing = [split for split in wanted if not done(args.work, info["name"], info["key_order"], step, split)]
    if not missing:
        return
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{step}" if run_dir else None
    model, tokenizer = load_for_scoring(args, run_dir, checkpoint)
    tasks, sets = scored_sets(datasets, tokenizer, args.val_per_task, args.long_frac,
                              args.stretch if "validation_stretched" in missing else 0)
    for split in missing:
        started = time.perf_counter()
        scores = score(model, tokenizer, sets[split], tasks)
        record(args.work, {**info, **extra, "step": step, "split": split,
                           "score_s": time.perf_counter() - started, **scores})


def run_point(args) -> None:
    from quality_bench import cpu_training_config, sample_splits
    from scripts.contracts import RunResult
    from scripts.paths import RUN_RESULT as RESULT
    from scripts.training.config import TrainingConfig
    from scripts.training.run import run_training

    sample = sample_splits(args.work, args.rows)
    datasets = key_ordered(sample, args.work, args.key_order)
    steps_to_score = sorted({int(s) for s in args.score_at.split(",") if s} | {args.steps})
    runs = args.work / "runs"
    info = {"name": args.name, "method": args.method, "lr": args.lr, "lora_r": args.lora_r,
            "key_order": args.key_order, "steps": args.steps, "warmup": args.warmup}
    if not args.no_base:
        score_missing(args, datasets, {**info, "name": "zero-shot", "method": "none"}, None, 0, {})
    run_dir = runs / args.name
    if (run_dir / RESULT).is_file() and (run_dir / "checkpoints" / f"checkpoint-{args.steps}").is_dir():
        result = RunResult.model_validate_json((run_dir / RESULT).read_text())
        print(f"  {run_dir} has trained {result.global_step} steps: scoring what is missing")
    else:
        started = time.perf_counter()
        config = cpu_training_config(args, datasets, args.name, math.gcd(*steps_to_score), save_total_limit=None)
        result = run_training(TrainingConfig.model_validate(config), say=lambda s: print(f"  {s}"))
        (run_dir / "train_s").write_text(f"{time.perf_counter() - started:.1f}\n")
    train_s = float((run_dir / "train_s").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tokens = max((m.get("tokens") or 0) for m in metrics)
    extra = {"train_s": train_s, "train_tokens_per_s": tokens / train_s,
             "trained_longest_tokens": longest_train_tokens(run_dir), "final_loss": result.final_loss}
    for step in steps_to_score:
        score_missing(args, datasets, info, run_dir, step, extra)
        if step != args.steps:
            for heavy in (run_dir / "checkpoints" / f"checkpoint-{step}").glob("optimizer.pt"):
                heavy.unlink()  # a full fine-tune's optimizer state is 2 GB per checkpoint


def read_results(work: Path) -> list[dict]:
    path = work / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def print_table(work: Path) -> None:
    from quality_bench import pct, print_table as show

    rows = read_results(work)
    header = ["point", "method", "r", "lr", "keys", "step", "set", "nav n", "nav acc", "ext n", "exact",
              "slot acc", "halluc.", "ans NLL", "longest", "min/train"]
    body = []
    for r in rows:
        body.append([r["name"], r["method"], str(r["lora_r"]) if r["method"] == "lora" else "-", f"{r['lr']:g}",
                     r["key_order"], str(r["step"]), r["split"], str(r["nav_n"]), pct(r["nav_acc"]),
                     str(r["ext_n"]), pct(r["exact"]), pct(r["slot_acc"]), pct(r["halluc"]),
                     f"{r['answer_nll']:.3f}" if r.get("answer_nll") is not None else "n/a",
                     str(r.get("longest_tokens", "")),
                     f"{r['train_s'] / 60:.1f}" if r.get("train_s") else "-"])
    show(f"== {work}/results.jsonl: teacher-forced scores (see --help)", header, body)
    slots = sorted({k for r in rows for k in r.get("per_slot", {})})
    if slots:
        show("per-slot accuracy (validation)", ["point", "step", *slots],
             [[r["name"], str(r["step"]), *(pct(r["per_slot"].get(k)) for k in slots)]
              for r in rows if r["split"] == "validation"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from scripts.config import UserError, load_env

    load_env()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.table:
        print_table(args.work)
        return 0
    if not args.name:
        print("error: --name is required for a sweep point", file=sys.stderr)
        return 1
    try:
        run_point(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_table(args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
