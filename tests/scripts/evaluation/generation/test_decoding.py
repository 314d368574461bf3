"""xgrammar-constrained decoding on a random tiny Gemma 3: valid by construction, and the confidence."""

from __future__ import annotations

import json

import pytest
import torch
import xgrammar as xgr
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripts.chat import encode_chat, prompt_messages
from scripts.config import REPO_ROOT, load_config
from scripts.contracts import canonical_target
from scripts.dataset.config import DatasetsConfig
from scripts.dataset.config import SlotSpec, TaskSpec
from scripts.evaluation.generation.answer_schema import (
    max_answer_tokens, parse_output, slots_json_schema, validate_extraction,
)
from scripts.evaluation.generation.closing import truncated_slots
from scripts.evaluation.generation.closing_cursors import JsonCursor
from scripts.evaluation.generation.config import SchemaBounds
from scripts.evaluation.generation.decoding import TaskDecoder, json_value_spans, make_compiler, slot_logprobs
from tests.scripts.evaluation import SLOTS, records

BOUNDS = SchemaBounds(max_string_tokens=4, max_list_items=2)


@pytest.fixture(scope="module")
def tiny(tiny_gemma):
    tok = AutoTokenizer.from_pretrained(tiny_gemma)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma).eval()
    return model, tok


@pytest.fixture(scope="module")
def tasks():
    return load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig).tasks


def _prompts(tok, kind: str) -> list[list[int]]:
    rows = [r for r in records(4, 4) if r.kind == kind]
    return [encode_chat(tok, prompt_messages(r)) for r in rows]


def _generate(model, tok, decoder: TaskDecoder, prompts: list[list[int]], max_new: int):
    """Batched, left-padded greedy generation; returns (per-row generated ids, logprobs)."""
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
            logits_processor=decoder.processors(max_new), eos_token_id=decoder.stop_token_ids,
            pad_token_id=tok.pad_token_id,
        )
    new = out[:, width:]
    return new, decoder.token_logprobs(new)


def _split_at_stop(row: list[int], stops: list[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(row):
        if t in stops:
            return row[:i], True
    return row, False


# --- schema ----------------------------------------------------------------


def test_registry_slot_order_survives_yaml_and_pydantic_loading(tasks):
    """The catalog order is the `slots:` mapping's order in configs/datasets.yaml, as written."""
    spec = tasks["productpage_extractor"]
    assert spec.slot_order == list(spec.slots) == list(SLOTS) == [
        "title", "brand", "price", "original_price", "currency", "availability", "sku", "categories",
        "rating", "review_count", "image_url"]
    assert TaskSpec.model_validate(spec.model_dump(mode="json")).slot_order == spec.slot_order


def test_schema_has_every_slot_required_nullable_typed_and_closed(tasks):
    slots = tasks["productpage_extractor"].slots
    schema = slots_json_schema(slots, BOUNDS)
    assert list(schema["properties"]) == list(SLOTS) == schema["required"]  # catalog order, not sorted
    assert schema["additionalProperties"] is False
    assert schema["properties"]["price"]["anyOf"] == [
        {"type": "number", "minimum": 0.0, "maximum": 1e9}, {"type": "null"}
    ]
    assert schema["properties"]["categories"]["anyOf"][0] == {
        "type": "array", "items": {"type": "string"}, "maxItems": 2
    }


def test_validation_rejects_wrong_type_bounds_and_keys(tasks):
    slots = tasks["productpage_extractor"].slots
    ok = dict.fromkeys(slots) | {"price": 12.5, "review_count": 3, "categories": ["a", "b"], "title": "x\"y"}
    assert validate_extraction(ok, slots, BOUNDS) == []
    for bad in ({"price": "12"}, {"review_count": 1.5}, {"review_count": True}, {"title": "\ud800"},
                {"categories": ["a", "b", "c"]}, {"price": -1}, {"extra": 1}):
        assert validate_extraction(ok | bad, slots, BOUNDS), bad
    assert validate_extraction({k: v for k, v in ok.items() if k != "sku"}, slots, BOUNDS)
    assert parse_output("NO", tasks["navpage_classifier"], BOUNDS) == ("NO", True)
    assert parse_output("MAYBE", tasks["navpage_classifier"], BOUNDS) == (None, False)
    assert parse_output("{not json", tasks["productpage_extractor"], BOUNDS) == (None, False)


def test_extraction_grammar_accepts_escapes_and_rejects_spaces_and_other_key_orders(tiny, tasks):
    model, tok = tiny
    decoder = TaskDecoder.build(tok, model, tasks["productpage_extractor"], BOUNDS)
    base = dict.fromkeys(tasks["productpage_extractor"].slots)  # catalog order

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(decoder.compiled, terminate_without_stop_token=True)
        return matcher.accept_string(text) and matcher.is_terminated()

    def compact(value: dict, **kw) -> str:
        return json.dumps(value, separators=(",", ":"), **kw)

    canonical = compact(base | {"title": 'a"\\b\u00e9 12\u20ac' + "x" * 600, "price": 99.5, "categories": ["x"]})
    assert accepts(canonical)  # escapes of every kind; no length bound in the grammar itself
    assert accepts(compact(base | {"title": "Größe €"}, ensure_ascii=False))
    assert accepts(canonical_target(base | {"title": "x", "rating": 4.5}, list(base)))  # what clean writes
    assert not accepts(compact(base, sort_keys=True))  # v1's sorted keys: `availability` first
    assert not accepts(compact({"brand": None, "title": None} | base))  # brand before title
    assert not accepts(json.dumps(base))  # ", " / ": " separators
    assert not accepts(compact(base).replace('"availability"', '"zz"'))
    assert not accepts(compact(base | {"categories": ["a", "b", "c"]}))
    assert not accepts(compact(base | {"price": -1}))
    assert not accepts(compact(base).replace("null}", '"a\nb"}'))


# --- constrained generation on the random model -----------------------------


def test_constrained_classification_emits_only_labels_then_stops(tiny, tasks):
    model, tok = tiny
    spec = tasks["navpage_classifier"]
    decoder = TaskDecoder.build(tok, model, spec, BOUNDS)
    new, _ = _generate(model, tok, decoder, _prompts(tok, "classification"), max_new=4)
    for row in new.tolist():
        content, stopped = _split_at_stop(row, decoder.stop_token_ids)
        assert stopped, row
        assert tok.decode(content) in spec.labels


def test_constrained_extraction_is_always_schema_valid_json_then_stops(tiny, tasks):
    model, tok = tiny
    spec = tasks["productpage_extractor"]
    decoder = TaskDecoder.build(tok, model, spec, BOUNDS)
    new, _ = _generate(model, tok, decoder, _prompts(tok, "extraction"), max_new=max_answer_tokens(spec.slots, BOUNDS))
    for row in new.tolist():
        content, stopped = _split_at_stop(row, decoder.stop_token_ids)
        assert stopped, "ran into max_answer_tokens: the bounds did not bound the output"
        raw = tok.decode(content)
        value = json.loads(raw)
        assert validate_extraction(value, spec.slots, BOUNDS) == [], raw
        assert decoder.parse(raw) == (value, True)
        assert list(value) == spec.slot_order, raw  # the keys come in catalog order, as trained
        assert list(json_value_spans(raw)) == spec.slot_order


# A user's task whose catalog lists its slots in another order than the product task's (and than sorted).
CUSTOM = TaskSpec(kind="extraction", system_prompt="Extract.",
                  slots={"sku": "string", "price": "number", "title": "string", "categories": "string_list"})


def test_a_task_with_its_own_slot_order_is_generated_and_closed_in_that_order(tiny):
    model, tok = tiny
    order = ["sku", "price", "title", "categories"]
    schema = slots_json_schema(CUSTOM.slots, BOUNDS)
    assert CUSTOM.slot_order == order == list(schema["properties"]) == schema["required"]
    decoder = TaskDecoder.build(tok, model, CUSTOM, BOUNDS)
    assert decoder.closer.skeleton.text == b'{"sku":null,"price":null,"title":null,"categories":null}'
    assert decoder.closer.slot_names == order and decoder.closer.slot_kinds == ["string", "number", "string",
                                                                                 "string_list"]
    # a roomy budget (the grammar's order) and a tight one (the closing fills the rest in that order)
    for max_new in (max_answer_tokens(CUSTOM.slots, BOUNDS), decoder.min_new_tokens + 3):
        new, _ = _generate(model, tok, decoder, _prompts(tok, "extraction"), max_new=max_new)
        for row in new.tolist():
            content, stopped = _split_at_stop(row, decoder.stop_token_ids)
            raw = tok.decode(content)
            assert stopped and decoder.parse(raw)[1], raw
            assert list(json.loads(raw)) == order, raw


def test_json_cursor_follows_keys_values_escapes_and_counts_string_tokens(tiny, tasks):
    model, tok = tiny
    decoder = TaskDecoder.build(tok, model, tasks["productpage_extractor"], BOUNDS)
    cursor = JsonCursor(decoder.closer)
    skeleton = decoder.closer.skeleton.text
    assert skeleton == canonical_target(dict.fromkeys(SLOTS), list(SLOTS)).encode()  # catalog order
    assert skeleton.startswith(b'{"title":null,"brand":null,') and skeleton.endswith(b'"image_url":null}')
    assert cursor.needed() == decoder.min_new_tokens
    to_categories = b'","brand":null,"price":null,"original_price":null,"currency":null,"availability":null,' \
                    b'"sku":null,"categories":["'
    steps = ((b'{"tit', "path", "", 0), (b'le":"a\\', "str", "escape", 1), (b'u00', "str", "hex", 2),
             (b'e9x', "str", "in", 3), (b'\\"', "str", "in", 4), (to_categories, "list", "in", 1),
             (b'x","', "list", "in", 1), (b'y"]', "path", "", 1))
    for piece, phase, state, spent in steps:
        cursor.feed(piece)
        got_state = cursor.str_sub if cursor.phase == "str" or cursor.sub == "item" else ""
        assert (cursor.phase, got_state, cursor.str_tokens, cursor.lost) == (phase, state, spent, False), piece
    assert cursor.phase == "path" and skeleton[cursor.pos:].startswith(b',"rating":null')
    number = JsonCursor(decoder.closer)
    number.feed(b'{"title":null,"brand":null,"price":12.')
    assert number._value_close() == b"0" and not number.complete()
    number.feed(b'5,')
    assert number.phase == "path" and skeleton[number.pos - 1:number.pos + 16] == b',"original_price"'
    spent = JsonCursor(decoder.closer)
    spent.feed(b'{"title":"ab')
    for _ in range(BOUNDS.max_string_tokens - 1):
        assert not spent.must_close_string()
        spent.feed(b"c")
    assert spent.must_close_string()
    spent.feed(b"\xe2")  # a multi-byte character in progress: the grammar wants it finished first
    assert not spent.must_close_string() and spent._value_close() == b'\x80\x80"'


def _overruns(decoder: TaskDecoder, rows: list[list[int]], max_tokens: int) -> int:
    """Tokens that did NOT close a string value although it had taken ``max_tokens`` tokens already."""
    overruns = 0
    for row in rows:
        cursor = JsonCursor(decoder.closer)
        for token in _split_at_stop(row, decoder.stop_token_ids)[0]:
            overruns += cursor.must_close_string() and not decoder.token_bytes[token].startswith(b'"')
            cursor.feed(decoder.token_bytes[token])
    return overruns


def test_string_budget_closes_every_string_at_max_string_tokens(tiny, tasks):
    """The random model loops inside strings: with a large budget its strings overrun 2 tokens, with 2 never.
    The slot types only: an enum or pattern value is finished by the closing, not cut at the bound."""
    model, tok = tiny
    spec = TaskSpec(kind="extraction", system_prompt="x", slots=tasks["productpage_extractor"].slots)
    prompts = _prompts(tok, "extraction")
    loose_bounds = SchemaBounds(max_string_tokens=40, max_list_items=2)
    loose = TaskDecoder.build(tok, model, spec, loose_bounds)
    new, _ = _generate(model, tok, loose, prompts, max_new=200)
    counted = TaskDecoder.build(tok, model, spec, SchemaBounds(max_string_tokens=2, max_list_items=2))
    assert _overruns(counted, new.tolist(), 2) > 0
    tight_bounds = SchemaBounds(max_string_tokens=2, max_list_items=2)
    tight = TaskDecoder.build(tok, model, spec, tight_bounds)
    new, _ = _generate(model, tok, tight, prompts, max_new=max_answer_tokens(spec.slots, tight_bounds))
    assert _overruns(tight, new.tolist(), 2) == 0
    for row in new.tolist():
        content, stopped = _split_at_stop(row, tight.stop_token_ids)
        assert stopped and tight.parse(tok.decode(content))[1]


def test_schema_bounds_name_the_renamed_string_bound():
    with pytest.raises(ValueError, match="max_string_tokens"):
        SchemaBounds(max_string_length=512)


def test_unconstrained_random_model_fails_validation(tiny, tasks):
    """The same check on the same model without the grammar fails: the tests above can fail."""
    model, tok = tiny
    for name, max_new in (("navpage_classifier", 4), ("productpage_extractor", 40)):
        decoder = TaskDecoder.build(tok, model, tasks[name], BOUNDS, constrained=False)
        kind = tasks[name].kind
        new, _ = _generate(model, tok, decoder, _prompts(tok, kind), max_new=max_new)
        valid = [decoder.parse(tok.decode(_split_at_stop(r, decoder.stop_token_ids)[0]))[1]
                 for r in new.tolist()]
        assert not any(valid), name


# --- confidence ------------------------------------------------------------


def test_label_probs_sum_to_one_and_match_a_manual_forward_pass(tiny, tasks):
    model, tok = tiny
    decoder = TaskDecoder.build(tok, model, tasks["navpage_classifier"], BOUNDS)
    prompts = _prompts(tok, "classification")
    assert len(set(map(len, prompts))) > 1  # left padding is exercised
    _generate(model, tok, decoder, prompts, max_new=4)
    probs = decoder.label_probs()
    first_ids = [tok.encode(label, add_special_tokens=False)[0] for label in ("YES", "NO")]
    for prompt, row in zip(prompts, probs):
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-9)
        with torch.inference_mode():
            logits = model(torch.tensor([prompt])).logits[0, -1]
        manual = torch.softmax(logits[first_ids].double(), dim=-1)
        assert [row["YES"], row["NO"]] == pytest.approx(manual.tolist(), abs=1e-4)


def test_chosen_token_logprobs_are_the_grammar_masked_scores_and_forced_tokens_are_not_inflated(tiny, tasks):
    """Recorded log-probs are the grammar-masked scores, before the closing's restriction: where it
    refused the model's choice (string bound of 4 tokens here) they read the model's own, lower
    probability of the forced token, never the renormalised ~0 of generate's final scores."""
    model, tok = tiny
    decoder = TaskDecoder.build(tok, model, tasks["productpage_extractor"], BOUNDS)
    prompts = _prompts(tok, "extraction")[:2]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=80, do_sample=False,
                         logits_processor=decoder.processors(80), eos_token_id=decoder.stop_token_ids,
                         pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, width:]
    recorded = decoder.token_logprobs(new)
    final = torch.stack(
        [torch.log_softmax(s, -1).gather(1, new[:, i : i + 1]).squeeze(1) for i, s in enumerate(out.scores)],
        1,
    )
    forced = torch.zeros_like(final, dtype=torch.bool)
    for row in range(len(prompts)):
        for step in decoder.refused_steps(row):
            forced[row, step] = True
    live = torch.isfinite(final)
    assert forced.any(), "the random model never ran into the string bound: nothing tested"
    # A restriction only takes mass away, so the final (restricted) score of the picked token is
    # never below the recorded one; equal wherever the closing left the row alone (most steps).
    assert (recorded[live] <= final[live] + 1e-5).all()
    assert torch.isclose(recorded[live], final[live], atol=1e-5).float().mean() > 0.5
    assert (recorded[forced] < final[forced] - 1e-3).all()


def test_slot_logprob_averages_the_tokens_of_each_value():
    text = '{"a":"xy","b":null,"c":12}'
    spans = json_value_spans(text)
    assert {k: text[s:e] for k, (s, e) in spans.items()} == {"a": '"xy"', "b": "null", "c": "12"}
    # Gemma's tokens: {" | a | ":" | xy | "," | b | ": | null | ," | c | ": | 12 | }
    # `":` against `":"` is where the model chose a non-string for b and c: part of their values
    ends = [2, 3, 6, 8, 11, 12, 14, 18, 20, 21, 23, 25, 26]
    logprobs = [0.0, 0.0, -1.0, -3.0, -2.0, 0.0, -4.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0]
    assert slot_logprobs(text, ends, logprobs) == {"a": -2.0, "b": -2.0, "c": -1.0}
    assert json_value_spans('{"a": [1, 2] , "b" : "x"}') is not None
    assert json_value_spans("YES") is None and json_value_spans('{"a":') is None


def test_decode_matches_the_tokenizer_and_keeps_json_around_invalid_utf8(tiny, tasks):
    model, tok = tiny
    decoder = TaskDecoder.build(tok, model, tasks["productpage_extractor"], BOUNDS)
    text = '{"title":"Größe ދ 12 €"}'
    ids = tok.encode(text, add_special_tokens=False)
    decoded, ends = decoder.decode(ids)
    assert decoded == text == tok.decode(ids)
    assert ends[-1] == len(text) and ends == sorted(ends) and len(ends) == len(ids)
    # Byte tokens spelling U+DACC (a UTF-16 surrogate, which xgrammar accepts inside a string),
    # then the closing quote as a byte token too: the quote must survive decoding.
    surrogate = [tok.convert_tokens_to_ids(f"<0x{b:02X}>") for b in (0xED, 0xAB, 0x8C, 0x22)]
    ids = tok.encode('{"a":"x', add_special_tokens=False) + surrogate + tok.encode("}", add_special_tokens=False)
    raw, ends = decoder.decode(ids)
    assert json.loads(raw) == {"a": "x\ufffd\ufffd\ufffd"} and ends[-1] == len(raw)


def test_compiler_uses_the_model_vocab_size(tiny):
    model, tok = tiny
    compiler = make_compiler(tok, model)
    grammar = compiler.compile_grammar(xgr.Grammar.from_ebnf('root ::= "YES"'))
    assert grammar.tokenizer_info.vocab_size == model.config.vocab_size


# --- slot constraints in the schema, the validator and xgrammar -----------------------------------


def _accepts(schema: dict, text: str) -> bool:
    from xgrammar.testing import _is_grammar_accept_string

    grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))
    return _is_grammar_accept_string(grammar, text)


def test_installed_xgrammar_honours_enum_bounds_pattern_max_items_but_not_unique_items():
    """The findings written in decoding.py's docstring, checked against the installed xgrammar."""
    enum = {"type": "string", "enum": ["in_stock", "preorder"]}
    assert _accepts(enum, '"preorder"') and not _accepts(enum, '"currently unavailable"')
    rating = {"type": "number", "minimum": 0, "maximum": 5}
    assert _accepts(rating, "4.5") and _accepts(rating, "5.0")
    assert not any(_accepts(rating, v) for v in ("68", "5.5", "-1", "5e0"))
    code = {"type": "string", "pattern": "[A-Z]{3}"}  # no anchors: still the whole value
    assert _accepts(code, '"USD"') and not _accepts(code, '"xUSDx"') and not _accepts(code, '"usd"')
    url = {"type": "string", "pattern": r"^https?://\S+$"}
    assert not _accepts(url, '"https://a\\"b"')  # characters JSON escapes never match a pattern
    listed = {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert _accepts(listed, '["a","b"]') and not _accepts(listed, '["a","b","c"]')
    assert _accepts({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, '["a","a"]')  # ignored
    assert not _accepts({"type": "string", "maxLength": 3}, '"abcd"')  # honoured, but slow: not used


def test_schema_carries_the_constraints_xgrammar_enforces_and_the_validator_all(tasks):
    spec = tasks["productpage_extractor"]
    props = slots_json_schema(spec.catalog, BOUNDS)["properties"]
    assert props["availability"]["anyOf"][0] == {"type": "string",
                                                 "enum": ["in_stock", "out_of_stock", "preorder", "limited"]}
    assert props["rating"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 5}
    assert props["currency"]["anyOf"][0] == {"type": "string", "pattern": "^[A-Z]{3}$"}
    # uniqueItems stays out: vLLM's xgrammar backend rejects a schema holding it; the closing enforces it
    assert props["categories"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert props["price"]["anyOf"][0]["maximum"] == BOUNDS.number_maximum  # no slot bound: schema_bounds'
    ok = {"title": "T", "brand": None, "price": 9.5, "original_price": None, "currency": "EUR",
          "availability": "in_stock", "sku": None, "categories": ["A", "B"], "rating": 4.5, "review_count": 3,
          "image_url": "https://a.example/x.jpg"}
    assert validate_extraction(ok, spec.catalog, BOUNDS) == []
    bad = {"availability": "currently unavailable", "rating": 68, "currency": "usd",
           "categories": ["Food", "Food"], "image_url": "/img/x.jpg"}
    errors = validate_extraction(ok | bad, spec.catalog, BOUNDS)
    assert [e.split(":")[0] for e in errors] == ["currency", "availability", "categories", "rating", "image_url"]
    assert "'Food' is listed twice (unique_items)" in errors[2] and "outside [0, 5]" in errors[3]
    assert validate_extraction(ok | bad, spec.slots, BOUNDS) == []  # the plain types alone: no constraints
    assert parse_output(json.dumps(ok | {"rating": 98}), spec, BOUNDS) == (None, False)
    titled = {"title": SlotSpec(type="string", max_chars=3)}
    assert validate_extraction({"title": "Roll over image"}, titled, BOUNDS) == [
        "title: 15 characters, more than max_chars 3"]
    assert max_answer_tokens(titled, BOUNDS) < max_answer_tokens({"title": "string"}, SchemaBounds())
