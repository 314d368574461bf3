"""Valid within any budget: random and barely trained tiny Gemma 3 models, budgets from the minimum
up to the shipped one; truncated slots marked and scored wrong; the too-small-budget config error."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor

from scripts.chat import encode_chat, prompt_messages
from scripts.config import REPO_ROOT, UserError, load_config
from scripts.contracts import Candidate, canonical_target
from scripts.dataset.config import DatasetsConfig, TaskSpec
from scripts.evaluation.generation.answer_schema import max_answer_tokens, validate_extraction
from scripts.evaluation.generation.closing import truncated_slots
from scripts.evaluation.generation.closing_cursors import JsonCursor
from scripts.evaluation.generation.config import EvalConfig, SchemaBounds
from scripts.evaluation.generation.decoding import TaskDecoder, make_compiler
from scripts.evaluation.generation.generate import build_task_decoder
from scripts.evaluation.judging.judge import run_judge
from scripts.model.tiny import build_tiny_gemma
from tests.scripts.evaluation import TOKENIZER_TEXTS, records
from tests.scripts.evaluation.judging.test_judge import _candidate, _record, _target, make_inputs

SHIPPED = load_config(REPO_ROOT / "configs/eval.yaml", EvalConfig)
EXTRACTOR, CLASSIFIER = "productpage_extractor", "navpage_classifier"


@pytest.fixture(scope="module")
def tasks():
    return load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig).tasks


def _train_a_little(model, tok, steps: int = 15) -> None:
    """A few AdamW steps on chat-formatted examples: a model that has started to write the format."""
    texts = []
    for r in records(4, 4):
        prompt = encode_chat(tok, prompt_messages(r))
        answer = tok.encode(r.target, add_special_tokens=False) + [tok.convert_tokens_to_ids("<end_of_turn>")]
        texts.append(prompt + answer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        ids = torch.tensor([texts[step % len(texts)]])
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="module", params=[(0, False), (1, False), (2, True)],
                ids=["seed0", "seed1", "seed2-trained"])
def tiny(request, tmp_path_factory):
    seed, trained = request.param
    path = build_tiny_gemma(tmp_path_factory.mktemp(f"tiny{seed}"), TOKENIZER_TEXTS, seed=seed,
                            embedding_scale=10.0)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if trained:
        torch.manual_seed(seed)
        _train_a_little(model, tok)
    return model, tok, seed


def _run(model, tok, decoder: TaskDecoder, kind: str, budget: int, sample: bool = False):
    prompts = [encode_chat(tok, prompt_messages(r)) for r in records(4, 4) if r.kind == kind]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=sample,
                             logits_processor=decoder.processors(budget, greedy=not sample),
                             eos_token_id=decoder.stop_token_ids,
                             pad_token_id=tok.pad_token_id)
    return out[:, width:].tolist()


def _answers(decoder: TaskDecoder, rows: list[list[int]]):
    for row in rows:
        stop = next((i for i, t in enumerate(row) if t in decoder.stop_token_ids), None)
        content = row if stop is None else row[:stop]
        yield stop, content, decoder.decode(content)


def test_every_answer_is_complete_valid_and_within_the_budget(tiny, tasks):
    """Budgets from the minimum up to the shipped 512 (extraction) / 4 (classification), shipped bounds."""
    model, tok, seed = tiny
    compiler = make_compiler(tok, model)
    bounds = SHIPPED.schema_bounds
    for name in (CLASSIFIER, EXTRACTOR):
        spec = tasks[name]
        decoder = TaskDecoder.build(tok, model, spec, bounds, compiler=compiler)
        low, shipped = decoder.min_new_tokens, SHIPPED.decoding.max_new_tokens_for(spec.kind)
        budgets = sorted({low, low + 1, low + 2, low + 5, low + 13, shipped} if spec.kind == "extraction"
                         else set(range(low, shipped + 1)))
        if seed != 0 and spec.kind == "extraction":
            budgets = [b for b in budgets if b < 100]  # the long run once is enough on 2 CPU cores
        assert low <= shipped
        cut_seen = 0
        for budget in budgets:
            for sample in (False, True) if budget == low + 2 else (False,):
                torch.manual_seed(seed)
                rows = _run(model, tok, decoder, spec.kind, budget, sample)
                assert decoder.lost_rows() == 0
                for r, (stop, content, (raw, ends)) in enumerate(_answers(decoder, rows)):
                    where = f"{name} budget {budget} sample {sample}: {raw!r}"
                    assert stop is not None and stop + 1 <= budget, where  # the stop token fits too
                    parsed, valid = decoder.parse(raw)
                    assert valid, where
                    if spec.kind == "classification":
                        assert raw in spec.labels, where
                    else:
                        assert validate_extraction(json.loads(raw), spec.catalog, bounds) == [], where
                        assert list(json.loads(raw)) == spec.slot_order, where  # closed in catalog order
                    cut = decoder.truncated(raw, ends, r)
                    cut_seen += bool(cut)
                    assert set(cut) <= (set(spec.slots) if spec.slots else {"label"}), where
        if spec.kind == "extraction":
            assert cut_seen, "no answer was ever closed early: the budgets did not bite"


def test_minimum_budget_is_the_all_null_answer_and_the_longest_label(tiny, tasks):
    model, tok, _ = tiny
    bounds = SchemaBounds()
    extractor = TaskDecoder.build(tok, model, tasks[EXTRACTOR], bounds)
    all_null = canonical_target(dict.fromkeys(tasks[EXTRACTOR].slots), tasks[EXTRACTOR].slot_order)
    assert all_null.startswith('{"title":null,"brand":null,"price":null,') and all_null.endswith('"image_url":null}')
    assert extractor.closer.skeleton.text == all_null.encode()
    assert extractor.closer.slot_names == tasks[EXTRACTOR].slot_order
    assert extractor.min_new_tokens == len(extractor.closer.tokens.of(all_null.encode())) + 1
    assert extractor.min_new_tokens <= len(all_null.encode()) + 1  # never worse than a token per byte
    classifier = TaskDecoder.build(tok, model, tasks[CLASSIFIER], bounds)
    assert classifier.min_new_tokens == 1 + max(
        len(classifier.closer.tokens.of(label.encode())) for label in tasks[CLASSIFIER].labels)
    # At exactly the minimum the model may still write values where its tokens are cheaper than
    # the nulls' (this tokenizer never saw `null`); whatever it writes fits, and the steps where the
    # closing overrode it mark slots.
    rows = _run(model, tok, extractor, "extraction", extractor.min_new_tokens)
    for r, (stop, content, (raw, ends)) in enumerate(_answers(extractor, rows)):
        assert stop is not None and stop + 1 <= extractor.min_new_tokens and extractor.parse(raw)[1]
        assert bool(extractor.refused_steps(r)) == bool(extractor.truncated(raw, ends, r))


def test_a_budget_below_the_minimum_is_a_one_line_config_error_naming_both_numbers(tiny, tasks):
    model, tok, _ = tiny
    for name, kind in ((EXTRACTOR, "extraction"), (CLASSIFIER, "classification")):
        decoder = TaskDecoder.build(tok, model, tasks[name], SchemaBounds())
        low = decoder.min_new_tokens
        cfg = SHIPPED.model_copy(update={"decoding": SHIPPED.decoding.model_copy(
            update={"max_new_tokens": {kind: low - 1}})})
        with pytest.raises(UserError) as err:
            build_task_decoder(cfg, model, tok, tasks[name], name)
        message = str(err.value)
        assert "\n" not in message and f"max_new_tokens.{kind}={low - 1}" in message and f"below {low}," in message
        cfg = cfg.model_copy(update={"decoding": cfg.decoding.model_copy(update={"max_new_tokens": {kind: low}})})
        assert build_task_decoder(cfg, model, tok, tasks[name], name)[1] == low


def test_truncated_slots_follow_the_refused_tokens():
    text = '{"a":"xy","b":12,"c":null}'
    # tokens: {"a": | "x | y" | ,"b": | 12 | ,"c": | null | }
    ends = [5, 7, 9, 14, 16, 21, 25, 26]
    spans = {"a": (5, 9), "b": (14, 16), "c": (21, 25)}
    assert truncated_slots(text, ends, [], spans, "extraction") == []
    assert truncated_slots(text, ends, [2], spans, "extraction") == ["a"]  # the quote that closed a string
    assert truncated_slots(text, ends, [5], spans, "extraction") == ["b"]  # a comma right after a number
    assert truncated_slots(text, ends, [3], spans, "extraction") == ["b"]  # a key: the value that follows
    assert truncated_slots(text, ends, [6, 7], spans, "extraction") == ["c"]
    assert truncated_slots(text, ends, [0, 6], spans, "extraction") == ["a", "c"]
    assert truncated_slots("YES", [3], [0], None, "classification") == ["label"]
    assert truncated_slots("YES", [3], [5], None, "classification") == []  # the stop token's step


def test_a_truncated_slot_is_scored_wrong_and_counted_per_slot(tmp_path):
    """Equal to the reference or not, a cut slot is wrong; the others are scored as usual."""
    target = _target()
    refs = [_record("prod-cut", EXTRACTOR, json.dumps(target)), _record("prod-ok", EXTRACTOR, json.dumps(target)),
            _record("nav-cut", CLASSIFIER, "YES")]
    cut = _candidate("prod-cut", EXTRACTOR, target) | {"truncated_slots": ["title", "original_price"]}
    nav = _candidate("nav-cut", CLASSIFIER, "YES") | {"truncated_slots": ["label"]}
    cands = [cut, _candidate("prod-ok", EXTRACTOR, target), nav]
    for c in cands:
        Candidate.model_validate(c)
    cfg = make_inputs(tmp_path, refs, cands)
    run_dir, summary = run_judge(cfg, "validation")
    rows = {(r["id"], r["slot"]): r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    for slot in ("title", "original_price"):  # a title equal to the reference, a null equal to a null
        assert rows["prod-cut", slot]["passed"] is False and rows["prod-cut", slot]["method"] == "truncated"
        assert rows["prod-cut", slot]["truncated"] is True
        assert rows["prod-ok", slot]["passed"] is True
    assert rows["prod-cut", "brand"]["passed"] is True and rows["prod-cut", "brand"]["truncated"] is False
    assert rows["nav-cut", "label"]["passed"] is False and rows["nav-cut", "label"]["method"] == "truncated"
    slots = summary.tasks[EXTRACTOR].slots
    assert slots["title"].truncated == 1 and slots["brand"].truncated == 0
    assert summary.tasks[EXTRACTOR].truncated_answers == 1
    assert summary.tasks[CLASSIFIER].classification["accuracy"] == 0.0


# --- slot constraints: never a value outside them, whatever the model writes ------------------------

CONSTRAINED = TaskSpec(kind="extraction", system_prompt="Extract.", slots={
    "availability": {"type": "string", "enum": ["in_stock", "out_of_stock", "preorder", "limited"]},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "image_url": {"type": "string", "pattern": r"^https?://\S+$"},
    "title": {"type": "string", "max_chars": 7},
    "categories": {"type": "string_list", "unique_items": True, "max_items": 4, "max_chars": 3},
    "rating": {"type": "number", "minimum": 0, "maximum": 5},
    "review_count": {"type": "integer", "minimum": 10, "maximum": 99},
})


class _Noise(LogitsProcessor):
    """Before the grammar: scores replaced by seeded noise, so the answer is a random walk over what the
    grammar allows (values opened, strings run on, list items repeated) instead of a tiny model's habits."""

    def __init__(self, seed: int, repeat_bias: float):
        self.generator = torch.Generator().manual_seed(seed)
        self.repeat_bias = repeat_bias

    def __call__(self, input_ids, scores):
        noise = torch.randn(scores.shape, generator=self.generator) * 5
        if self.repeat_bias:  # favour tokens already written: duplicates and long strings
            noise.scatter_add_(1, input_ids[:, -8:], torch.full(input_ids[:, -8:].shape, self.repeat_bias))
        return noise


def test_constrained_answers_never_leave_a_configured_constraint(tiny):
    model, tok, seed = tiny
    bounds = SchemaBounds(max_string_tokens=6)
    decoder = TaskDecoder.build(tok, model, CONSTRAINED, bounds)
    prompts = [encode_chat(tok, prompt_messages(r)) for r in records(4, 4) if r.kind == "extraction"]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    filled = Counter()
    low = decoder.min_new_tokens
    for budget in (low, low + 4, low + 12, 60, max_answer_tokens(CONSTRAINED.catalog, bounds)):
        for trial, bias in enumerate((0.0, 8.0)):
            processors = decoder.processors(budget)
            processors.insert(0, _Noise(seed * 100 + budget * 2 + trial, bias))
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=False,
                                     logits_processor=processors, eos_token_id=decoder.stop_token_ids,
                                     pad_token_id=tok.pad_token_id)
            assert decoder.lost_rows() == 0
            for stop, content, (raw, _) in _answers(decoder, out[:, width:].tolist()):
                where = f"budget {budget} bias {bias}: {raw!r}"
                assert stop is not None, where
                value = json.loads(raw)
                assert validate_extraction(value, CONSTRAINED.catalog, bounds) == [], where
                assert decoder.parse(raw)[1], where
                filled.update(k for k, v in value.items() if v not in (None, []))
                if value["availability"] is not None:
                    assert value["availability"] in ("in_stock", "out_of_stock", "preorder", "limited"), where
                if value["categories"]:
                    assert len(set(value["categories"])) == len(value["categories"]) <= 4, where
                    assert all(len(item) <= 3 for item in value["categories"]), where
                assert value["title"] is None or len(value["title"]) <= 7, where
    # the walk really wrote values into the constrained slots, not only nulls
    assert {"availability", "currency", "title", "categories", "rating", "review_count"} <= set(filled), filled


def test_the_closing_finishes_enum_pattern_and_duplicate_items_validly(tiny):
    model, tok, _ = tiny
    decoder = TaskDecoder.build(tok, model, CONSTRAINED, SchemaBounds())
    spec = decoder.closer

    def closing_text(prefix: bytes) -> bytes:
        cursor = JsonCursor(spec)
        cursor.feed(prefix)
        assert not cursor.lost
        return cursor._value_close()

    assert closing_text(b'{"availability":"pre') == b'order"'
    values = [v.encode() + b'"' for v in CONSTRAINED.catalog["availability"].enum]
    cheapest = min(values, key=lambda v: (len(spec.tokens.of(v)), v))
    assert closing_text(b'{"availability":"') == cheapest  # the cheapest value in tokens, not just a quote
    assert closing_text(b'{"availability":null,"currency":"U') == b'AA"'
    assert closing_text(b'{"availability":null,"currency":null,"image_url":"ht') == b'tps://a"'
    tail = b'{"availability":null,"currency":null,"image_url":null,"title":null,"categories":["ab","a'
    assert closing_text(tail) == b'"]'
    assert closing_text(tail + b'b') == b'a"]'  # "ab" again would repeat an item
    assert spec.number_close(b"4.", 5) == b"0" and spec.number_close(b"1", 6) == b"0"  # 10..99
