"""Gemma 3's tokenizer rebuilt from a GGUF's own pieces (``build_tokenizer``), the independent
``GemmaReference`` it must agree with, and the gate corpus and checks (``scripts.model.gguf_import``'s
module doc says why).

    from scripts.model.gguf_tokenizer import GemmaReference, build_tokenizer, sentencepiece_proto
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from scripts.config import UserError
from scripts.model.gguf_source import GgufSource

# Gemma 3's special-token ids; every size shares the vocabulary.
SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 105, "<end_of_turn>": 106}
REFERENCE_TEXT = "The capital of France is"
REFERENCE_IDS = [2, 818, 5279, 529, 7001, 563]  # google/gemma-3-270m's own tokenizer (public reference)
ROUNDTRIP_CORPUS = [
    "plain ASCII text, with punctuation: (a) [b] {c}!?",
    "  two leading spaces, trailing two  ",
    "runs    of     spaces\tand\t\ttabs\t\t\t",
    "lines\nand\n\nblank\n\n\nlines\r\nCRLF\r\n",
    "<table><tr><td>Price</td><td>€ 1.299,00</td></tr></table>",
    '<div class="price" data-sku="AB-12">$19.99 <s>$24.99</s></div>',
    "Größe: 42 · Farbe: Weiß · Lieferzeit 2–3 Werktage",
    "Prix : 12,50 € TTC — livraison offerte dès 49 €",
    "価格 ¥3,980（税込）在庫あり",
    "Цена: 1 299 ₽ · В наличии",
    "السعر ٤٩ ريال",
    "ราคา ฿1,290 มีสินค้า",
    "मूल्य ₹2,499 स्टॉक में",
    "가격 ₩39,000 재고 있음",
    "Τιμή 9,99 € σε απόθεμα",
    "emoji 😀🛒 and combining e\u0301 and zero\u200bwidth",
    '{"price":"19.99","currency":"EUR","in_stock":true,"tags":["a","b"]}',
    "&nbsp;&amp;&lt;tag&gt; &#8364; %20 \\u00e9 \\n",
]
UNKNOWN, CONTROL, USER_DEFINED, BYTE = 2, 3, 4, 6  # SentencePiece piece types (GGUF uses the same numbers)
EXTRA_SPECIAL_TOKENS = ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>")


# --- tokenizer ---------------------------------------------------------------


def sentencepiece_proto(source: GgufSource) -> bytes:
    """A SentencePiece BPE model from the GGUF's pieces, scores and types (the types share numbering):
    the same proto google/gemma-3-270m's ``tokenizer.model`` is, from which its ``tokenizer.json`` was made."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    meta = source.metadata
    proto = pb.ModelProto()
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(source.tokens)
    spec.split_digits = spec.allow_whitespace_only_pieces = True
    spec.byte_fallback = source.piece_types.count(BYTE) == 256  # Gemma's vocabulary has all 256
    spec.pad_id = int(meta.get("tokenizer.ggml.padding_token_id", 0))
    spec.eos_id = int(meta.get("tokenizer.ggml.eos_token_id", 1))
    spec.bos_id = int(meta.get("tokenizer.ggml.bos_token_id", 2))
    spec.unk_id = int(meta.get("tokenizer.ggml.unknown_token_id", 3))
    spec.pad_piece, spec.eos_piece, spec.bos_piece, spec.unk_piece = (
        source.tokens[i] for i in (spec.pad_id, spec.eos_id, spec.bos_id, spec.unk_id))
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    for index, (piece, score, kind) in enumerate(zip(source.tokens, source.scores, source.piece_types)):
        entry = proto.pieces.add()
        # SentencePiece needs its unk piece typed UNKNOWN; llama.cpp stores Gemma's <unk> as CONTROL
        entry.piece, entry.score, entry.type = piece, score, UNKNOWN if index == spec.unk_id else kind
    return proto.SerializeToString()


def converted_tokenizer(spm_path: Path):
    """transformers' ``GemmaConverter`` on the proto at ``spm_path``: a ``tokenizers.Tokenizer`` that
    matches control and user-defined pieces literally on the raw text (whitespace runs, ``\\n`` and
    ``\\t`` runs, HTML tags), then rewrites spaces to ``▁`` and runs BPE with byte fallback.

    transformers 5.17's ``GemmaSentencePieceExtractor`` reads a ``sp`` processor its base class no
    longer sets; it gets one here, which changes nothing else in the conversion."""
    import importlib

    import sentencepiece

    slow = importlib.import_module("transformers.convert_slow_tokenizer")

    class Extractor(slow.GemmaSentencePieceExtractor):
        def __init__(self, model: str):
            super().__init__(model)
            self.sp = sentencepiece.SentencePieceProcessor(model_file=model)

    class Converter(slow.GemmaConverter):
        SpmExtractor = Extractor

    from types import SimpleNamespace

    original = SimpleNamespace(vocab_file=str(spm_path), pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                               unk_token="<unk>")
    try:
        return Converter(original).converted()
    except Exception as exc:  # a proto the converter cannot read
        raise UserError(f"the GGUF's vocabulary is not a valid SentencePiece model: {exc}") from None


def build_tokenizer(spm_path: Path, pieces: set[str]):
    """Gemma 3's tokenizer from the proto at ``spm_path``, with the chat template and ``<bos>`` added."""
    from transformers import GemmaTokenizer

    from scripts.chat import GEMMA3_CHAT_TEMPLATE

    return GemmaTokenizer(
        tokenizer_object=converted_tokenizer(spm_path), add_bos_token=True, add_eos_token=False,
        extra_special_tokens=[t for t in EXTRA_SPECIAL_TOKENS if t in pieces], chat_template=GEMMA3_CHAT_TEMPLATE,
    )


class GemmaReference:
    """What Gemma's own tokenizer does, written independently of transformers: control and
    user-defined pieces are matched literally on the raw text, leftmost-longest; every stretch
    between them goes through a SentencePiece processor of the same proto. The import is gated on
    agreeing with it (a plain processor alone never matches the whitespace pieces: it turns spaces
    into ``▁`` first, which is the bug tokenizer version 1 had)."""

    def __init__(self, spm_path: Path, source: GgufSource):
        import re

        import sentencepiece

        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
        except RuntimeError as exc:
            raise UserError(f"the GGUF's vocabulary is not a valid SentencePiece model: {exc}") from None
        self.literal = {piece: index for index, (piece, kind) in enumerate(zip(source.tokens, source.piece_types))
                        if kind in (CONTROL, USER_DEFINED) and piece}
        # longest first: a regex alternation takes the first alternative that matches at a position
        self.pattern = re.compile("|".join(re.escape(p) for p in sorted(self.literal, key=len, reverse=True)))

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        position = 0
        for match in self.pattern.finditer(text):
            if match.start() > position:
                ids += self.processor.encode(text[position:match.start()])
            ids.append(self.literal[match.group()])
            position = match.end()
        if position < len(text):
            ids += self.processor.encode(text[position:])
        return ids

    def plain(self, text: str) -> list[int]:
        """The plain SentencePiece processor (tokenizer version 1's behaviour), for comparison."""
        return self.processor.encode(text)


def whitespace_pieces(source: GgufSource) -> dict[str, int]:
    """The vocabulary's user-defined pieces made of whitespace only: runs of spaces, ``\\n``, ``\\t``."""
    return {piece: index for index, (piece, kind) in enumerate(zip(source.tokens, source.piece_types))
            if kind == USER_DEFINED and piece and not piece.strip()}


def whitespace_corpus(source: GgufSource) -> list[str]:
    """Runs of every whitespace piece's character at every length the vocabulary has and past it,
    between words, at the start and end, and mixed (tabs and newlines, indentation after a newline)."""
    longest = Counter()
    for piece in whitespace_pieces(source):
        longest[piece[0]] = max(longest[piece[0]], len(piece))
    texts = []
    for char, most in sorted(longest.items()):
        texts += [f"a{char * n}b" for n in range(1, most + 3)]
        texts += [char * n for n in (1, 2, most, most + 1, 2 * most + 1)]
    texts += [
        "\t\t  \n \n", " \t \n\t\n  x", "<ul>\n  <li>a</li>\n\t<li>b</li>\n</ul>\n\n\n",
        "x" + " " * 40 + "y", "\n" + "\n".join(" " * depth + f"<div>{depth}</div>" for depth in range(0, 34, 3)),
        "price:   19,99 €\t\t(incl.  VAT)\r\n\r\n  in stock",
    ]
    return texts


def indent_html(text: str, step: str = "  ") -> str:
    """HTML as crawled pages carry it: one tag per line, indented by nesting depth. Sample prompts
    have their whitespace collapsed; real pages do not, and the whitespace pieces matter there."""
    import re

    lines, depth = [], 0
    for part in re.split(r"(?=<)|(?<=>)", text):
        if not part.strip():
            continue
        closing = part.startswith("</")
        depth = max(depth - closing, 0)
        lines.append(step * depth + part.strip())
        if part.startswith("<") and not closing and not part.endswith("/>") and not part.startswith("<!"):
            depth += 1
    return "\n".join(lines)


def gate_corpus(source: GgufSource, prompts: list[str]) -> list[str]:
    """Whitespace runs, mixed tabs and newlines, HTML, 8 scripts, prices, ``prompts`` as they are and
    re-indented: the texts the import's tokenizer must encode exactly as Gemma does."""
    return ROUNDTRIP_CORPUS + whitespace_corpus(source) + prompts + [indent_html(p) for p in prompts]


def tokenizer_checks(tokenizer, reference: GemmaReference, source: GgufSource, texts: list[str]) -> dict[str, Any]:
    """Vocabulary size, special ids, reference ids, round trip, every whitespace piece one token, and
    id equality with Gemma's own rules (``GemmaReference``) over ``texts``."""
    specials = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_IDS}
    vocabulary = {"passed": len(tokenizer) == len(source.tokens), "tokenizer": len(tokenizer), "gguf": len(source.tokens)}
    if specials != SPECIAL_IDS:  # not Gemma 3's vocabulary: encoding may not even work
        return {"vocabulary": vocabulary, "special_ids": {"passed": False, "got": specials}}
    reference_ids = tokenizer(REFERENCE_TEXT).input_ids
    failed_roundtrip = [text[:60] for text in texts
                        if tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) != text]
    split_pieces = [piece for piece, index in whitespace_pieces(source).items()
                    if tokenizer(piece, add_special_tokens=False).input_ids != [index]]
    disagree = [text[:60] for text in texts
                if reference.encode(text) != tokenizer(text, add_special_tokens=False).input_ids]
    return {
        "vocabulary": vocabulary,
        "special_ids": {"passed": True, "got": specials},
        "bos_prepended": {"passed": reference_ids[:1] == [SPECIAL_IDS["<bos>"]]},
        "reference_ids": {"passed": reference_ids == REFERENCE_IDS, "text": REFERENCE_TEXT, "got": reference_ids},
        "roundtrip": {"passed": not failed_roundtrip, "texts": len(texts), "failed": failed_roundtrip[:5]},
        "whitespace_pieces": {"passed": not split_pieces, "pieces": len(whitespace_pieces(source)),
                              "split": [repr(p) for p in split_pieces[:5]]},
        "gemma_reference_agreement": {"passed": not disagree, "share": round(1 - len(disagree) / len(texts), 4),
                                      "texts": len(texts), "differ": disagree[:5]},
    }
