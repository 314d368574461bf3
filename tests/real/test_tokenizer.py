"""The imported tokenizer against transformers' Gemma converter, built here exactly as google/gemma-3-270m's
published tokenizer.json was: a SentencePiece model proto from the GGUF's pieces, scores and types,
converted by ``GemmaConverter``. Built from the GGUF directly, not through the import's code."""

from __future__ import annotations

import importlib
import random
from types import SimpleNamespace

import gguf
import pytest
import sentencepiece
from sentencepiece import sentencepiece_model_pb2 as pb
from transformers import AutoTokenizer

from scripts.model.gguf_source import GgufSource, packaged_gguf
from scripts.model.gguf_tokenizer import gate_corpus, indent_html
from scripts.sample_data import sample_prompts

SCRIPTS = ["Größe: 42 · Weiß", "Prix : 12,50 € TTC", "価格 ¥3,980（税込）", "Цена: 1 299 ₽", "السعر ٤٩ ريال",
           "ราคา ฿1,290", "मूल्य ₹2,499", "가격 ₩39,000", "Ελληνικά €9,99"]
PIECES = [" ", "  ", "\t", "\n", "\r\n", "<td>", "</td>", "<div class=\"x\">", "</div>", "<table>", "word", "19,99",
          "$", "€", "&nbsp;", "▁", "{\"a\":1}", "<start_of_turn>", "<unused7>", *SCRIPTS]


@pytest.fixture(scope="module")
def vocabulary():
    """The GGUF's pieces, scores and types, read with the gguf library (one parse: 10-30 s)."""
    fields = gguf.GGUFReader(str(packaged_gguf())).fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{name}"] for name in ("tokens", "scores", "token_type"))
    return GgufSource(packaged_gguf(), {}, [bytes(tokens.parts[i]).decode() for i in tokens.data],
                      [float(scores.parts[i][0]) for i in scores.data], [int(types.parts[i][0]) for i in types.data],
                      {})


@pytest.fixture(scope="module")
def converter_reference(vocabulary, tmp_path_factory):
    """transformers' GemmaConverter on a proto of the GGUF's vocabulary (5.17's Gemma extractor reads a
    ``sp`` processor its base class no longer sets: the only change)."""
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.unk_piece = 3, "<unk>"
    proto.normalizer_spec.name, proto.normalizer_spec.add_dummy_prefix = "identity", False
    proto.normalizer_spec.remove_extra_whitespaces, proto.normalizer_spec.escape_whitespaces = False, True
    for index, (text, score, kind) in enumerate(zip(vocabulary.tokens, vocabulary.scores, vocabulary.piece_types)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, 2 if index == 3 else kind  # <unk> is UNKNOWN
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    path.write_bytes(proto.SerializeToString())
    slow = importlib.import_module("transformers.convert_slow_tokenizer")

    class Extractor(slow.GemmaSentencePieceExtractor):
        def __init__(self, model):
            super().__init__(model)
            self.sp = sentencepiece.SentencePieceProcessor(model_file=model)

    class Converter(slow.GemmaConverter):
        SpmExtractor = Extractor

    return Converter(SimpleNamespace(vocab_file=str(path), pad_token="<pad>", eos_token="<eos>",
                                     bos_token="<bos>", unk_token="<unk>")).converted()


def fuzz_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) * rng.choice((1, 1, 2, 3, 7, 33)) for _ in range(rng.randint(1, 30)))
            for _ in range(count)]


def test_imported_ids_equal_the_converter_reference(real_gemma, vocabulary, converter_reference):
    tokenizer = AutoTokenizer.from_pretrained(real_gemma)
    prompts = sample_prompts(150, seed=7)
    texts = gate_corpus(vocabulary, prompts) + fuzz_texts(600) + SCRIPTS
    differ = [text[:80] for text in texts
              if tokenizer(text, add_special_tokens=False).input_ids
              != converter_reference.encode(text, add_special_tokens=False).ids]
    assert differ == [] and len(texts) > 1000


def test_whitespace_runs_are_single_pieces_as_gemma_was_trained(real_gemma):
    tokenizer = AutoTokenizer.from_pretrained(real_gemma)

    def ids(text):
        return tokenizer(text, add_special_tokens=False).input_ids

    assert ids("  two  spaces\n\nnewlines\ttab") == [138, 13498, 138, 35220, 108, 208697, 255968, 4823]
    assert ids("   \n\n\n    x") == [139, 109, 140, 236781]
    for n in range(2, 32):  # runs of 2-31 spaces are ids 138-167: one token each, as in the vocabulary
        assert ids(" " * n) == [136 + n]
    assert ids(" " * 40) == [167, 145]  # longest piece first, then the rest
    assert ids("<td>x</td>") == [175, 236781, 183]
    indented = indent_html(sample_prompts(2)[1])
    assert tokenizer.decode(ids(indented)) == indented and 138 in ids(indented)
