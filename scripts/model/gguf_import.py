"""A Gemma 3 GGUF -> a plain Hugging Face model folder that loads like a hub download.

    fab train.import-gguf                                   # the packaged google/gemma-3-270m (Q4_K_M)
    fab train.import-gguf --gguf my-gemma-3-1b-it.gguf --output models/gemma-3-1b-it --dtype fp32

    from scripts.model.gguf_import import import_gguf
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

Here: the import and its record (``ImportReport``, ``import.json``); the parts it gates live beside it:
``gguf_source`` (reading the file), ``gguf_tokenizer`` (the rebuilt tokenizer, ``GemmaReference`` and the
tokenizer gates), ``gguf_weights`` (dequantised weights and the model gates).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts.config import UserError
from scripts.model.gguf_source import GGUF_PACKAGE, file_sha256, packaged_gguf, read_gguf, require_gguf_file
from scripts.model.gguf_tokenizer import (
    SPECIAL_IDS,
    GemmaReference,
    build_tokenizer,
    gate_corpus,
    indent_html,
    sentencepiece_proto,
    tokenizer_checks,
)
from scripts.model.gguf_weights import load_dequantised, model_checks
from scripts.model.identity import IMPORT_FILE, TOKENIZER_VERSION, existing_import, stale_tokenizer

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
