"""The tiny Gemma 3 stand-in: real classes, Gemma tokenizer behaviour, chat template."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, GemmaTokenizer

from scripts.chat import GEMMA3_CHAT_TEMPLATE, GEMMA3_CHAT_TEMPLATE_ORIGINAL
from scripts.model.tiny import (
    GEMMA_SPECIAL_TOKENS,
    build_tiny_gemma,
    build_tokenizer,
    gemma3_270m_config,
)

TEXTS = [
    "Is this page a product page? Answer YES or NO.",
    '<div class="price">Preis: 12,50 €</div><p>Größe: XL, Farbe: grün</p>',
    '{"name": "Kaffeemühle", "price": 49.99, "currency": "EUR"}',
    "YES",
    "NO",
] * 40
SYSTEM = {"role": "system", "content": "Extract the price."}
USER = {"role": "user", "content": "<p>Preis: 12,50 €</p>"}
ANSWER = {"role": "assistant", "content": '{"price": 12.5}'}


@pytest.fixture(scope="module")
def tiny_dir(tiny_gemma):
    return tiny_gemma  # the session's shared tiny Gemma 3 (tests/conftest.py); only read here


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def test_tokenizer_loads_as_gemma_and_prepends_one_bos(tok):
    assert isinstance(tok, GemmaTokenizer)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<bos>", "<eos>", "<pad>")
    ids = tok("hello")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.eos_token_id not in ids


def test_special_tokens_are_single_ids(tok):
    ids = [tok.convert_tokens_to_ids(t) for t in GEMMA_SPECIAL_TOKENS]
    assert ids[:4] == [0, 1, 2, 3]  # <pad> <eos> <bos> <unk>, as in Gemma 3
    assert len(set(ids)) == len(ids)
    for token, token_id in zip(GEMMA_SPECIAL_TOKENS, ids):
        assert tok(token, add_special_tokens=False)["input_ids"] == [token_id], token
    text_ids = tok("a<end_of_turn>b", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<end_of_turn>") in text_ids


@pytest.mark.parametrize(
    "text",
    [
        '<div class="x">Größe: 12,50 € – Übersicht</div>\n\t<br/>',
        "日本語のテキスト 🙂 ẞ",  # never seen in training: byte fallback
        "  two  spaces, trailing space ",
    ],
)
def test_any_text_round_trips(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_unseen_characters_fall_back_to_bytes(tok):
    pieces = tok.tokenize("日")
    assert pieces == ["<0xE6>", "<0x97>", "<0xA5>"]


def test_generation_prompt_folds_system_into_first_user_turn(tok):
    text = tok.apply_chat_template([SYSTEM, USER], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<bos><start_of_turn>user\nExtract the price.\n\n<p>Preis: 12,50 €</p><end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_chat_ids_have_one_bos_but_rendered_text_retokenised_has_two(tok):
    out = tok.apply_chat_template([SYSTEM, USER], add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = out["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    text = tok.apply_chat_template([SYSTEM, USER], add_generation_prompt=True, tokenize=False)
    assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # the classic double-<bos> bug
    assert tok(text, add_special_tokens=False)["input_ids"] == ids


def test_assistant_turn_ends_with_end_of_turn(tok):
    text = tok.apply_chat_template([SYSTEM, USER, ANSWER], tokenize=False)
    assert text.endswith('<start_of_turn>model\n{"price": 12.5}<end_of_turn>\n')


@pytest.mark.parametrize(
    "messages",
    [
        [USER],
        [SYSTEM, USER],
        [SYSTEM, USER, ANSWER],
        [USER, ANSWER, {"role": "user", "content": "  again  "}, {"role": "assistant", "content": " NO "}],
        [{"role": "user", "content": [{"type": "text", "text": "list content"}]}, ANSWER],
    ],
)
def test_generation_markers_do_not_change_rendered_text(tok, messages):
    for add_generation_prompt in (False, True):
        ours = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        google = tok.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=GEMMA3_CHAT_TEMPLATE_ORIGINAL,
        )
        assert ours == google


def test_assistant_mask_covers_answer_and_end_of_turn_only(tok):
    out = tok.apply_chat_template([SYSTEM, USER, ANSWER], return_assistant_tokens_mask=True, return_dict=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == '{"price": 12.5}<end_of_turn>'
    assert tok.chat_template == GEMMA3_CHAT_TEMPLATE
    # Why the markers exist: Google's template yields no assistant tokens at all.
    plain = tok.apply_chat_template(
        [SYSTEM, USER, ANSWER],
        return_assistant_tokens_mask=True,
        return_dict=True,
        chat_template=GEMMA3_CHAT_TEMPLATE_ORIGINAL,
    )
    assert not any(plain["assistant_masks"])


def test_model_is_a_real_gemma3_with_sliding_and_global_layers(tiny_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert isinstance(model, Gemma3ForCausalLM)
    cfg = model.config
    assert cfg.model_type == "gemma3_text"
    assert cfg.layer_types == ["sliding_attention", "full_attention"]
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (64, 2, 1, 32)
    assert cfg.vocab_size >= len(tok)
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    assert model.generation_config.eos_token_id == [tok.eos_token_id, end_of_turn]
    assert model.generation_config.pad_token_id == tok.pad_token_id == 0
    # Longer than the sliding window, so the local layer really masks.
    ids = torch.randint(10, len(tok), (1, cfg.sliding_window + 36))
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], cfg.vocab_size) and torch.isfinite(logits).all()
    assert (tiny_dir / "model.safetensors").is_file()


# The tests below build their own models on purpose: they test build_tiny_gemma / build_tokenizer themselves
# (determinism per seed, vocab_size, embedding_scale), which one shared model cannot show.


def test_build_is_deterministic_and_fast(tmp_path):
    texts = [f'<li data-id="{i}">Artikel {i}: {i % 97},99 € – Größe {i % 7}</li>' for i in range(3000)]
    start = time.perf_counter()
    a = build_tiny_gemma(tmp_path / "a", texts, seed=1)
    assert time.perf_counter() - start < 10
    b = build_tiny_gemma(tmp_path / "b", texts, seed=1)
    c = build_tiny_gemma(tmp_path / "c", texts, seed=2)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    wa, wb, wc = (load_file(d / "model.safetensors") for d in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["model.embed_tokens.weight"], wc["model.embed_tokens.weight"])


def test_build_tokenizer_respects_vocab_size():
    tok = build_tokenizer(TEXTS, vocab_size=400)
    assert len(tok) <= 400
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    assert merges, "BPE learned no merges"
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(TEXTS, vocab_size=100)


def test_embedding_scale_multiplies_the_tied_embedding_only(tmp_path):
    plain = build_tiny_gemma(tmp_path / "plain", TEXTS, vocab_size=400)
    scaled = build_tiny_gemma(tmp_path / "scaled", TEXTS, vocab_size=400, embedding_scale=10.0)
    wp, ws = load_file(plain / "model.safetensors"), load_file(scaled / "model.safetensors")
    assert wp.keys() == ws.keys()
    for key in wp:
        expected = wp[key] * 10.0 if key == "model.embed_tokens.weight" else wp[key]
        assert torch.equal(ws[key], expected), key
    model = AutoModelForCausalLM.from_pretrained(scaled)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert model.lm_head.weight.std().item() == pytest.approx(0.2, rel=0.1)


def test_270m_config_has_the_published_shape(tok):
    """268M parameters (as google/gemma-3-270m), a global layer every sixth, Gemma's vocabulary."""
    config = gemma3_270m_config(tok)
    with torch.device("meta"):  # shapes only: nothing allocated
        model = Gemma3ForCausalLM(config)
    assert 265e6 < model.num_parameters() < 271e6
    assert [i + 1 for i, t in enumerate(config.layer_types) if t == "full_attention"] == [6, 12, 18]
    assert config.vocab_size == 262_144 and config.sliding_window == 512 and config.head_dim == 256
