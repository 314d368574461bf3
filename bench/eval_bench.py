"""Evaluation speed and the judge's load, as ratios measured in one run.

    .venv/bin/python bench/eval_bench.py [--quick] [--rows 400] [--seed 0] [--max-new-tokens 128]

Builds sample data (sample -> clean -> split, as `fab demo` does) and a random
tiny Gemma 3 (`build_tiny_gemma`, tokenizer trained on the train split), loads
it through eval.generate's own loader (`model.merged`) and prints, in one run:

1. constrained vs unconstrained generation tokens/s: the same extraction
   prompts, the shipped batch size, the same max_new_tokens; each batch is
   generated both ways back to back in alternating order (noise hits both),
   verdict on the median of the per-batch ratios. A "token" is a decoded
   position (batch rows x decode steps: what the model computed and the grammar
   masked), so answers that stop early do not count as grammar cost; the
   answer tokens eval.generate reports are printed too. Target: cost <= 15%.
2. batched (batch 16) vs one-by-one generation, examples/s, constrained (the
   shipped default), batched runs bracketing the one-by-one run. Target >= 4x.
3. LLMJudge throughput at concurrency 16 vs 1 against the test judge server
   (tests/scripts/evaluation/judging/judge_server.py) with 200 ms latency, through
   LiteLLM's normal `openai/<name>` + api_base path, a fresh cache file per
   measurement (nothing cached), c=16 bracketing c=1. Target >= 10x.
4. the share of slots settled without an LLM call: `run_judge` (no key) with
   the shipped configs/judge_slots.yaml on the sample data's references vs
   candidates that are the references perturbed the way a small model errs
   (casing, spacing, locale price strings, reordered lists, truncated titles,
   brand suffixes, wrong values, omissions, hallucinations). Informational.
5. the grammar's mask cost per row and decode step at Gemma 3's vocabulary
   size: a tokenizer with 262,144 tokens trained here (sample pages plus
   random words, since Gemma's own cannot be downloaded), the shipped
   extraction grammar against the same schema with a 32-character
   ``maxLength`` on strings (xgrammar's bounded-string form), each driven
   through the reference answers of the validation split. Skipped by --quick.

The tiny model's vocabulary (2,048) is far smaller than Gemma's (262,144), so
the grammar's per-token mask is cheaper in (1) than on the real model, while the
model's forward pass is cheaper still; read (1) as the grammar's overhead per
decode step on CPU, not as a GPU serving number, and (5) for the mask at the
real vocabulary size. Ratios, not absolute times, since the machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXTRACTOR, CLASSIFIER = "productpage_extractor", "navpage_classifier"


# --- setup ------------------------------------------------------------------------------------


def build_inputs(tmp: Path, rows: int, seed: int):
    """Sample data through clean + split, a datasets config in tmp, the records of every split."""
    from scripts.contracts import CleanRecord, read_jsonl
    from scripts.sample_data.splits import sample_splits

    datasets_yaml = tmp / "datasets.yaml"
    datasets = sample_splits(tmp, rows, seed, schema_version="bench", config=datasets_yaml,
                             overrides={"stats.tokenizer": str(tmp / "tiny")})
    data = datasets.data_paths()
    records = {s: list(read_jsonl(data.split_file(s), CleanRecord))
               for s in ("train", "validation", "test")}
    return datasets_yaml, datasets, records


def build_model(tmp: Path, records, seed: int, max_new: int):
    """Random tiny Gemma 3 (tokenizer from the train split), loaded by eval.generate's loader."""
    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import load_model, resolve_model
    from scripts.model.tiny import build_tiny_gemma

    texts = [t for r in records["train"] for t in (r.system_prompt, r.prompt, r.target)]
    build_tiny_gemma(tmp / "tiny", texts, seed=seed, embedding_scale=10.0)
    cfg = load_config(REPO / "configs/eval.yaml", EvalConfig, {
        "model.merged": str(tmp / "tiny"),
        "decoding.max_new_tokens": {"classification": 4, "extraction": max_new},
        # As in `fab demo`: a random tiny model loops inside strings; tight bounds keep answers short.
        "schema_bounds.max_string_tokens": 12,
        "schema_bounds.max_list_items": 3,
        "output_dir": str(tmp / "model_outputs"),
    })
    model, tokenizer = load_model(cfg, resolve_model(cfg))
    return cfg, model, tokenizer


def with_decoding(cfg, **changes):
    return cfg.model_copy(update={"decoding": cfg.decoding.model_copy(update=changes)})


@contextlib.contextmanager
def method_timer(cls, name: str):
    """Wall seconds spent inside ``cls.name`` while the block runs (a list of one float)."""
    original = getattr(cls, name)
    spent = [0.0]

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(cls, name, timed)
    try:
        yield spent
    finally:
        setattr(cls, name, original)


def xgrammar_timer():
    """Time inside xgrammar's HF logits processor (accept token + fill mask + apply mask)."""
    import xgrammar as xgr

    return method_timer(xgr.contrib.hf.LogitsProcessor, "__call__")


class Generator:
    """One task's decoders (constrained + not) built once; times one generate call per batch."""

    def __init__(self, cfg, model, tokenizer, datasets, task: str):
        from scripts.evaluation.generation.decoding import make_compiler
        from scripts.evaluation.generation.generate import build_task_decoder

        self.cfg, self.model, self.tokenizer, self.task = cfg, model, tokenizer, task
        self.spec = datasets.tasks[task]
        compiler = make_compiler(tokenizer, model)
        self.decoders = {
            flag: build_task_decoder(with_decoding(cfg, constrained=flag), model, tokenizer, self.spec, task,
                                     compiler if flag else None)
            for flag in (True, False)
        }

    def run(self, items, constrained: bool, batch_size: int, max_new: int | None = None) -> dict:
        """Generate ``items``: wall seconds, seconds inside xgrammar, answer tokens, decoded positions."""
        from scripts.evaluation.generation.generate import generate_outputs

        cfg = with_decoding(self.cfg, constrained=constrained, batch_size=batch_size)
        decoder, default_max = self.decoders[constrained]
        if max_new is not None and decoder.min_new_tokens:  # warm-ups: the shortest budget allowed
            max_new = max(max_new, decoder.min_new_tokens)
        from scripts.evaluation.generation.closing import AnswerCloser
        from scripts.serving.runners import HfRunner

        out = {"seconds": 0.0, "xgrammar_s": 0.0, "budget_s": 0.0, "tokens": 0, "positions": 0, "valid": 0, "n": 0}
        with xgrammar_timer() as spent, method_timer(AnswerCloser, "__call__") as budget:
            start = time.perf_counter()
            for batch in generate_outputs(cfg, HfRunner(self.model, self.tokenizer), self.tokenizer, decoder,
                                          self.spec, self.task,
                                          items, max_new or default_max, "bench"):
                lengths = [c.output_tokens for c, _ in batch]
                out["tokens"] += sum(lengths)
                out["positions"] += max(lengths) * len(lengths)  # generate runs until its longest row stops
                out["valid"] += sum(c.valid for c, _ in batch)
                out["n"] += len(batch)
            out["seconds"] = time.perf_counter() - start
        out["xgrammar_s"] = spent[0]
        out["budget_s"] = budget[0]
        return out


def fastest(runs: list[dict]) -> dict:
    """The quickest of repeated runs of the same work: noise on a shared machine only ever adds time."""
    return min(runs, key=lambda run: run["seconds"])


def total(runs: list[dict]) -> Counter:
    out: Counter = Counter()
    for run in runs:
        out.update(run)
    return out


def by_length(tokenizer, items):
    from scripts.chat import encode_chat, prompt_messages

    return sorted(items, key=lambda r: len(encode_chat(tokenizer, prompt_messages(r))), reverse=True)


# --- 1. constrained vs unconstrained ---------------------------------------------------------


def bench_constrained(gen: Generator, prompts, rounds: int) -> None:
    """Each batch both ways, back to back, order alternating; per (batch, mode) the fastest round counts."""
    size = gen.cfg.decoding.batch_size
    batches = [prompts[i : i + size] for i in range(0, len(prompts), size)]
    for flag in (True, False):  # warm-up at the measured shape: first-call costs (kernels, allocator)
        gen.run(batches[0], flag, size, max_new=4)
    runs: dict[tuple[int, bool], list[dict]] = {}
    pair_costs = []
    for r in range(rounds):
        for k, batch in enumerate(batches):
            got = {}
            for flag in ((False, True) if (r + k) % 2 == 0 else (True, False)):
                got[flag] = gen.run(batch, flag, size)
                runs.setdefault((k, flag), []).append(got[flag])
            rate = {f: got[f]["positions"] / got[f]["seconds"] for f in got}
            pair_costs.append(1 - rate[True] / rate[False])
    best = {flag: total([fastest(runs[k, flag]) for k in range(len(batches))]) for flag in (True, False)}
    c, u = best[True], best[False]
    print(f"[1] constrained vs unconstrained, {EXTRACTOR}: {len(prompts)} prompts, batch {size}, "
          f"max_new_tokens {gen.decoders[True][1]}, {rounds} rounds (fastest per batch counts)")
    for name, t in (("unconstrained", u), ("constrained", c)):
        print(f"    {name:<13} {t['positions'] / t['seconds']:6.1f} tok/s ({t['tokens'] / t['seconds']:6.1f} "
              f"answer tok/s; {t['tokens']} answer of {t['positions']} decoded tokens "
              f"in {t['seconds']:.1f}s; "
              f"valid {t['valid']}/{t['n']})")
    cost = 1 - (c["positions"] / c["seconds"]) / (u["positions"] / u["seconds"])
    answer_cost = 1 - (c["tokens"] / c["seconds"]) / (u["tokens"] / u["seconds"])
    share = c["xgrammar_s"] / c["seconds"]
    print(f"    xgrammar processor: {c['xgrammar_s']:.2f}s = {share:.0%}, AnswerCloser (string bound, budget "
          f"closing): {c['budget_s']:.2f}s = "
          f"{c['budget_s'] / c['seconds']:.0%} of constrained "
          f"time; back-to-back pairs: median {statistics.median(pair_costs):+.1%} "
          f"(min {min(pair_costs):+.1%}, max {max(pair_costs):+.1%}; the noise)")
    print(f"    => constrained cost per decoded token {cost:+.1%} (per answer token {answer_cost:+.1%}) "
          f"(target <= 15%) {'OK' if cost <= 0.15 else 'OVER'}")


# --- 2. batched vs one-by-one -----------------------------------------------------------------


def bench_batching(gen: Generator, prompts, batch: int, label: str, passes: int,
                   verdict: bool = True) -> None:
    """Batched runs bracket each one-by-one pass (B S B S B); fastest batched run, fastest pass per prompt."""
    gen.run(prompts[:batch], True, batch, max_new=2)  # warm-up at both shapes
    gen.run(prompts[:1], True, 1, max_new=2)
    batched = [gen.run(prompts, True, batch)]
    singles: list[list[dict]] = [[] for _ in prompts]
    for p in range(passes):
        order = range(len(prompts)) if p % 2 == 0 else reversed(range(len(prompts)))
        for i in order:
            singles[i].append(gen.run([prompts[i]], True, 1))
        batched.append(gen.run(prompts, True, batch))
    n = len(prompts)
    b = fastest(batched)
    s = total([fastest(runs) for runs in singles])
    ratio = s["seconds"] / b["seconds"]
    print(f"[2] batched vs one-by-one, {label}: {n} prompts, constrained, "
          f"max_new_tokens {gen.decoders[True][1]}")
    print(f"    batch {batch}: {n / b['seconds']:.2f} examples/s (runs: "
          + ", ".join(f"{run['seconds']:.1f}s" for run in batched) + f"; {b['tokens']} answer tokens); "
          f"one-by-one: {n / s['seconds']:.2f} examples/s (fastest of {passes} passes per prompt, "
          f"{s['tokens']} answer tokens)")
    if verdict:
        print(f"    => batched/one-by-one {ratio:.1f}x (target >= 4x) {'OK' if ratio >= 4 else 'OVER'}")
    else:
        print(f"    batched/one-by-one {ratio:.1f}x "
              "(no target: 1-2 answer tokens, the prompt prefill dominates)")


# --- 3. judge concurrency -----------------------------------------------------------------------


def bench_judge(tmp: Path, n_fast: int, n_slow: int, latency: float) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no download
    from scripts.config import load_config
    from scripts.evaluation.judging.config import JudgeConfig
    from scripts.evaluation.judging.llm_judge import JudgeCache, JudgeItem, LLMJudge
    from tests.scripts.evaluation.judging.judge_server import JudgeServer

    settings = load_config(REPO / "configs/judge_slots.yaml", JudgeConfig).judge
    items = [  # distinct (no two share a cache key); a third of them differ
        JudgeItem("title", f"Trail Runner {i} Blue", f"trail runner {i} blue" if i % 3 else f"Runner {i}")
        for i in range(max(n_fast, n_slow) + 4)
    ]
    runs = []

    def measure(server, concurrency: int, batch) -> dict:
        cache = JudgeCache(tmp / f"judge-cache-{len(runs)}.sqlite")  # fresh: nothing cached
        try:
            judge = LLMJudge(settings.model_copy(update={"concurrency": concurrency}), cache,
                             model="openai/bench-judge", api_base=server.api_base, api_key="sk-bench-judge")
            server.max_in_flight = 0
            before = len(server.requests)
            start = time.perf_counter()
            with method_timer(JudgeCache, "put") as cache_s:  # sqlite writes, on the event loop
                results = asyncio.run(judge.judge_many(batch))
            seconds = time.perf_counter() - start
        finally:
            cache.close()
        judged = sum(r.status == "judged" for r in results.values())
        run = {"c": concurrency, "n": len(batch), "seconds": seconds, "judged": judged,
               "received": len(server.requests) - before, "cache_s": cache_s[0],
               "max_in_flight": server.max_in_flight,
               "errors": judge.stats.errors, "errors_seen": judge.stats.error_examples[:1]}
        runs.append(run)
        return run

    with JudgeServer(latency_s=latency) as server:
        measure(server, 2, items[-4:])  # warm-up: litellm import, client set-up
        for _ in range(2):  # alternating; per concurrency the fastest run counts
            measure(server, 16, items[:n_fast])
            measure(server, 1, items[:n_slow])
    print(f"[3] LLM judge against the local server ({latency * 1000:.0f} ms latency), LiteLLM openai/ path, "
          f"fresh cache per run")
    runs = runs[1:]
    for run in runs:
        print(f"    concurrency {run['c']:>2}: {run['n']:>3} items in {run['seconds']:.2f}s = "
              f"{run['n'] / run['seconds']:5.1f} verdicts/s, {run['cache_s']:.2f}s of it in sqlite "
              f"cache writes "
              f"(server received {run['received']}, judged {run['judged']}, max in flight "
              f"{run['max_in_flight']}, errors {run['errors']}"
              f"{' ' + str(run['errors_seen']) if run['errors'] else ''})")
    fast, slow = (fastest([r for r in runs if r["c"] == c]) for c in (16, 1))
    ratio = (fast["n"] / fast["seconds"]) / (slow["n"] / slow["seconds"])
    clean = all(r["judged"] == r["n"] == r["received"] for r in runs)
    print(f"    => concurrency 16 / 1: {ratio:.1f}x (ideal 16x; target >= 10x) "
          f"{'OK' if ratio >= 10 and clean else 'OVER'}"
          f"{'' if clean else ' (not every item was sent once and judged: see above)'}")


# --- 4. share settled without an LLM call -------------------------------------------------------

_PRICE_STYLE = {  # locale -> (thousands sep, decimal sep, symbol first)
    "en": (",", ".", True), "de": (".", ",", False), "fr": ("\u202f", ",", False), "es": (".", ",", False),
    "it": (".", ",", False), "nl": (".", ",", True), "pl": ("\u00a0", ",", False),
}
_SYMBOL = {"EUR": "€", "USD": "$", "GBP": "£", "PLN": "zł"}
_AVAILABILITY = ["in_stock", "out_of_stock", "preorder", "limited"]


def price_text(value: float, currency: str | None, locale: str | None, rng: random.Random) -> str:
    """A price as a page shows it: `$1,299.00`, `1.299,00 €`, `1 299,00 EUR`."""
    thousands, decimal, first = _PRICE_STYLE.get(locale or "en", _PRICE_STYLE["en"])
    whole, cents = f"{value:,.2f}".split(".")
    number = whole.replace(",", thousands) + decimal + cents
    mark = _SYMBOL.get(currency or "", currency or "") if rng.random() < 0.7 else (currency or "")
    return f"{mark}{number}" if first else f"{number} {mark}".strip()


def perturb(slot: str, value, target: dict, locale: str | None, others: list[dict], rng: random.Random,
            rate: float):
    """The slot value as a small model might return it (unchanged with probability 1 - rate)."""
    other = rng.choice(others).get(slot)
    if value is None:  # hallucinations are rarer than other errors
        return other if rng.random() < rate / 4 and other is not None else None
    if rng.random() >= rate:
        return value
    roll = rng.random()
    if roll < 0.12:
        return None  # omission
    if roll < 0.25:
        return other if other != value else None  # a wrong value (another page's)
    if slot == "title":
        words = value.split()
        return rng.choice([value.lower(), value.upper(), f"  {value} ", value.rstrip(".") + ".",
                           " ".join(words[:-1]) or value, " ".join(words[1:] + words[:1]),
                           value.replace(",", ""), value.replace(" ", "  ", 1)])
    if slot == "brand":
        return rng.choice([value.lower(), value.upper(), f"{value} Inc.", f"{value} GmbH", f" {value}"])
    if slot in ("price", "original_price"):
        return rng.choice([price_text(value, target.get("currency"), locale, rng), round(value),
                           round(value * 1.005, 2), round(value * 1.2, 2), target.get("original_price")])
    if slot == "rating":
        return rng.choice([round(value, 1), round(value + 0.1, 1), str(value), round(value * 0.8, 1)])
    if slot == "review_count":
        return rng.choice([value + 1, str(value), value * 10, max(value - 1, 0)])
    if slot == "categories":
        return rng.choice([list(reversed(value)), value[:-1], [v.lower() for v in value], value + ["Sale"]])
    if slot == "currency":
        return rng.choice([value.lower(), _SYMBOL.get(value, value), "USD" if value != "USD" else "EUR"])
    if slot == "availability":
        return rng.choice([a for a in _AVAILABILITY if a != value] + [value.replace("_", " ")])
    if isinstance(value, str):  # sku, image_url
        return rng.choice([value.lower(), value.upper(), value + "/", value.split("?")[0] + "?size=large"])
    return other


def bench_settled(tmp: Path, datasets_yaml: Path, datasets, records, rate: float, seed: int) -> None:
    from scripts.config import load_config
    from scripts.contracts import Candidate
    from scripts.evaluation.judging.config import JudgeConfig
    from scripts.evaluation.judging.judge import run_judge

    rng = random.Random(seed)
    refs = [r for split in ("train", "validation", "test") for r in records[split]]
    targets = [json.loads(r.target) for r in refs if r.task == EXTRACTOR]
    datasets.data_paths().split_file("benchall").write_text("".join(r.model_dump_json() + "\n" for r in refs))
    lines = []
    for r in refs:
        if r.kind == "classification":
            wrong = rng.random() < rate / 3
            parsed = {"YES": "NO", "NO": "YES"}.get(r.target, r.target) if wrong else r.target
        else:
            target = json.loads(r.target)
            locale = (r.metadata or {}).get("locale")
            parsed = {k: perturb(k, v, target, locale, targets, rng, rate) for k, v in target.items()}
        raw = parsed if isinstance(parsed, str) else json.dumps(parsed, ensure_ascii=False)
        lines.append(Candidate(id=r.id, task=r.task, kind=r.kind, prompt_sha256="0" * 64, model="perturbed",
                               constrained=True, raw=raw, parsed=parsed, valid=True, latency_s=0.1,
                               prompt_tokens=1, output_tokens=1).model_dump_json() + "\n")
    (tmp / "candidates").mkdir()
    (tmp / "candidates" / "benchall_candidates.jsonl").write_text("".join(lines))
    cfg = load_config(REPO / "configs/judge_slots.yaml", JudgeConfig, {
        "datasets_config": str(datasets_yaml), "candidates_dir": str(tmp / "candidates"),
        "output_dir": str(tmp / "judge"), "cache_path": str(tmp / "judge" / "cache.sqlite"),
        "bootstrap_resamples": 0,
    })
    saved = {k: os.environ.pop(k) for k in ("LITELLM_API_KEY", "JUDGE_MODEL") if k in os.environ}
    try:
        run_dir, judged = run_judge(cfg, "benchall")  # no key: deterministic scoring only
        summary = judged.model_dump(mode="json")
    finally:
        os.environ.update(saved)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    ext = [row for row in rows if row["task"] == EXTRACTOR]
    llm = [row for row in ext if row["method"] == "llm"]
    per_slot = Counter(row["slot"] for row in llm)
    slot_n = Counter(row["slot"] for row in ext)
    changed = sum(row["candidate"] != row["reference"] for row in ext)
    examples = {row["id"] for row in ext}
    print(f"[4] slots settled without an LLM call: run_judge (no key) with configs/judge_slots.yaml on "
          f"{len(refs)} sample references ({len(examples)} product pages), candidates = references "
          f"perturbed at rate {rate:.0%} ({changed}/{len(ext)} extraction slots differ)")
    print(f"    {EXTRACTOR}: {len(ext) - len(llm)}/{len(ext)} slots settled deterministically = "
          f"{1 - len(llm) / len(ext):.1%}; to the LLM {len(llm)} ({len(llm) / len(ext):.1%}): "
          + ", ".join(f"{slot} {per_slot[slot]}/{slot_n[slot]}" for slot in sorted(per_slot)))
    llm_pages = {row["id"] for row in llm}
    print(f"    pages needing at least one judge call: {len(llm_pages)}/{len(examples)} "
          f"({len(llm_pages) / len(examples):.1%}); all slots incl. {CLASSIFIER} labels: "
          f"{len(rows) - len(llm)}/{len(rows)} = {1 - len(llm) / len(rows):.1%} settled "
          f"(judge summary: needed {summary['judge']['needed']}, "
          f"not judged {summary['judge']['not_judged']})")


# --- 5. mask cost at Gemma's vocabulary size ---------------------------------------------------


def big_vocab_tokenizer(records, size: int, seed: int):
    """A Gemma-style tokenizer with ``size`` tokens: the sample pages plus random words to reach the size."""
    from scripts.model.tiny import build_tokenizer

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzäöüßéèàçñ"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) for _ in range(200_000)]
    texts = [t for r in records["train"] for t in (r.system_prompt, r.prompt, r.target)]
    texts += [" ".join(rng.choice(words) for _ in range(50)) for _ in range(40_000)]
    return build_tokenizer(texts, vocab_size=size)


def mask_costs(compiled, tokenizer, answers: list[str], max_steps: int) -> dict:
    """Mean and worst seconds of ``fill_next_token_bitmask`` per step, driving the matcher through ``answers``."""
    import xgrammar as xgr

    bitmask = xgr.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
    fills, rejected = [], 0
    for answer in answers:
        matcher = xgr.GrammarMatcher(compiled)
        for token in tokenizer.encode(answer, add_special_tokens=False):
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask, 0)
            fills.append(time.perf_counter() - start)
            if not matcher.accept_token(token):
                rejected += 1  # longer than the bound: the rest of this answer is not allowed
                break
        if len(fills) >= max_steps:
            break
    return {"mean": statistics.mean(fills), "max": max(fills), "steps": len(fills), "rejected": rejected}


def bench_big_vocab(datasets, records, size: int, seed: int) -> None:
    import xgrammar as xgr

    from scripts.evaluation.generation.answer_schema import slots_json_schema
    from scripts.evaluation.generation.config import SchemaBounds
    from scripts.evaluation.generation.decoding import extraction_grammar
    from scripts.model.gemma3 import end_of_turn_eos_ids

    started = time.perf_counter()
    tokenizer = big_vocab_tokenizer(records, size, seed)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=size,
                                              stop_token_ids=end_of_turn_eos_ids(tokenizer))
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    slots = datasets.tasks[EXTRACTOR].slots
    bounds = SchemaBounds()
    bounded_schema = slots_json_schema(slots, bounds)
    for prop in bounded_schema["properties"].values():
        typed = prop["anyOf"][0]
        for string in (typed, typed.get("items", {})):
            if string.get("type") == "string":
                string["maxLength"] = 32
    grammars = {
        "shipped (strings unbounded + AnswerCloser)": extraction_grammar(slots, bounds),
        "maxLength 32 on strings": xgr.Grammar.from_json_schema(
            json.dumps(bounded_schema), any_whitespace=False, separators=(",", ":")),
    }
    answers = [r.target for r in records["validation"] if r.task == EXTRACTOR]
    print(f"[5] grammar mask per row and decode step, vocabulary {len(tokenizer):,} (tokenizer trained here "
          f"in {time.perf_counter() - started:.0f}s), reference answers of the validation split")
    costs = {}
    for name, grammar in grammars.items():
        start = time.perf_counter()
        compiled = compiler.compile_grammar(grammar)
        compile_s = time.perf_counter() - start
        costs[name] = mask_costs(compiled, tokenizer, answers, max_steps=600 if name.startswith("shipped") else 60)
        c = costs[name]
        print(f"    {name:<44} compile {compile_s * 1000:7.0f} ms; mask {c['mean'] * 1e3:8.3f} ms mean, "
              f"{c['max'] * 1e3:8.2f} ms worst over {c['steps']} steps"
              + (f" ({c['rejected']} answers longer than the bound)" if c["rejected"] else ""))
    shipped, bounded = costs.values()
    print(f"    => a character bound in the grammar costs {bounded['mean'] / shipped['mean']:,.0f}x the shipped "
          f"grammar's mask; shipped: {shipped['mean'] * 1e3:.2f} ms per row and step")


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts, shorter answers, one round")
    parser.add_argument("--rows", type=int, default=400, help="sample rows (clean + split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="extraction max_new_tokens for (1) and (2) (default 128, --quick 48)")
    parser.add_argument("--perturb-rate", type=float, default=0.3,
                        help="(4): share of filled slots a candidate gets wrong or differently written")
    args = parser.parse_args()
    max_new = args.max_new_tokens or (48 if args.quick else 128)
    rounds, passes = (2, 1) if args.quick else (3, 2)
    n_prompts = 16
    sys.path.insert(0, str(REPO))
    import torch  # noqa: F401  (imported before the clock: not part of any measurement)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp_name:
        tmp = Path(tmp_name)
        datasets_yaml, datasets, records = build_inputs(tmp, args.rows, args.seed)
        cfg, model, tokenizer = build_model(tmp, records, args.seed, max_new)
        held_out = records["validation"] + records["test"] + records["train"]
        products = by_length(tokenizer, [r for r in held_out if r.task == EXTRACTOR][:n_prompts])
        navs = by_length(tokenizer, [r for r in held_out if r.task == CLASSIFIER][:n_prompts])
        print(f"setup: {args.rows} sample rows, tiny Gemma 3 (vocab {model.config.vocab_size}, hidden "
              f"{model.config.hidden_size}, {model.config.num_hidden_layers} layers, random), "
              f"{torch.get_num_threads()} torch threads, in {time.perf_counter() - started:.1f}s")
        extractor = Generator(cfg, model, tokenizer, datasets, EXTRACTOR)
        bench_constrained(extractor, products, rounds)
        bench_batching(extractor, products, 16, EXTRACTOR, passes)
        classifier = Generator(cfg, model, tokenizer, datasets, CLASSIFIER)
        bench_batching(classifier, navs, 16, CLASSIFIER, passes, verdict=False)
        bench_judge(tmp, 96 if args.quick else 160, 12 if args.quick else 24, 0.2)
        bench_settled(tmp, datasets_yaml, datasets, records, args.perturb_rate, args.seed)
        if not args.quick:
            bench_big_vocab(datasets, records, 262_144, args.seed)
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
