"""Projected peak memory of one training step, term by term, before any GPU time is spent.

    fab train.prepare --config configs/training.yaml                       # this host's device
    fab train.prepare --config configs/training.yaml --device-memory 80GiB  # a GPU on another host

    from scripts.training.memory_plan import ModelShape, plan_step, parse_memory_size
    shape = ModelShape.from_config(model_config)           # layers, hidden, heads, window, vocab
    step = plan_step(shape, cfg, 131072, device="gpu", attn="windowed_sdpa", label_tokens=256)
    step.peak, step.terms                                  # bytes; {"weights": ..., "loss tile": ...}

One step is forward + backward + ``optimizer.step()`` of ``train.per_device_batch_size`` sequences of
``seq_len`` tokens, as ``train.run`` takes it: the base in the compute dtype (bf16 on a GPU, fp32 on
CPU; a full fine-tune keeps fp32 weights), LoRA weights in fp32 (PEFT's adapter dtype), gradient
checkpointing per decoder layer, the chunked cross-entropy (``scripts.training.loss``). Terms:

* ``weights``: every base parameter (embeddings tied to the LM head), counted from the config;
* ``optimizer``: the trainable weights (LoRA: their fp32 copy; full: in ``weights``), their gradients
  and AdamW's two moments;
* ``checkpoints``: what the forward keeps for the backward. With gradient checkpointing each decoder
  layer's input, the final hidden states and the rope tables, ``tokens x hidden`` apiece; without
  it, every layer's saved activations (``saved_copies`` layer widths per token and layer);
* ``attention masks``: what the attention implementation's mask costs for the whole step (built once
  per forward, held until the backward is done): sdpa a ``seq x seq`` bool mask for the sliding
  layers (and for the global ones when a batch is padded), eager a float one per layer type;
  flash_attention_2 and windowed_sdpa none;
* ``layer recompute``: one decoder layer's activations, recomputed in the backward with their
  gradients (projections, MLP, norms, LoRA inputs and outputs), ``tokens x width`` where the width
  is counted from the config (``layer_width``) and scaled by a calibrated factor; without
  checkpointing nothing is recomputed and this is that layer's gradients only;
* ``attention kernel``: what attention allocates inside that layer's forward and backward: eager
  ``heads x seq x seq`` fp32 scores (several copies), sdpa the kernel's copy of the mask on a GPU
  (a float bias), windowed_sdpa ``heads x seq x (block + window)`` scores, flash_attention_2 its
  per-row statistics;
* ``loss tile``: the chunked cross-entropy's fp32 logits of at most ``loss.chunk_size`` label rows
  (and their softmax and gradient);
* ``runtime``: what the process or device holds besides tensors (CPU: Python, torch and the
  libraries, plus the allocator's slack; GPU: the CUDA/HIP context and caching-allocator slack).

The loss tile and the layer recompute are never alive together (the loss's backward is over before
the last layer is recomputed), so the peak counts the larger of the two phases:

    peak = weights + optimizer + checkpoints + attention masks + runtime
           + max(layer recompute + attention kernel, loss tile)

The counted terms come from the model config; the few factors that depend on the kernels
(``Calibration``) were fitted to one real-model step per length on CPU
(``bench/long_context_bench.py``, README "Long context memory"), where that bench reports the
plan's error per measurement. The GPU factors are the same counts in bf16 plus the assumptions
written beside them; ``bench/gpu_check.py --stages longctx`` prints plan vs measured on a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel

from scripts.config import UserError
from scripts.host import Device, this_host
from scripts.model.config import QUADRATIC_ATTENTION
from scripts.training.config import TrainingConfig

GIB = 2**30
LINEAR_ATTENTION = ("flash_attention_2", "windowed_sdpa")  # no seq x seq buffer anywhere
ATTENTION_IMPLEMENTATIONS = QUADRATIC_ATTENTION + LINEAR_ATTENTION  # model.attn_implementation's, but auto
FP32 = 4
ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, fp32 each
# A plan must leave this share of the device free: the caching allocator's fragmentation on a GPU,
# other processes on a CPU host. Within it, a step that fits on paper fits in practice.
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class Calibration:
    """The kernel-dependent factors of the plan (everything else is counted from the config)."""

    layer_copies: float  # layer recompute = layer_copies x tokens x layer_width x dtype bytes
    loss_tile_copies: float  # loss tile = copies x rows x vocab x 4 B (logits, log-softmax, gradient)
    eager_score_copies: float  # eager kernel = copies x heads x seq^2 x 4 B (scores, softmax, grads)
    sdpa_bias_bytes: float  # sdpa kernel: bytes per seq^2 element of the mask's per-call float copy
    runtime_bytes: float  # process / device overhead that is not tensors
    runtime_per_token: float  # allocator slack that grows with the step (bytes per token) ...
    runtime_slack_cap: float = 0.0  # ... up to this many bytes (0: no cap) ...
    runtime_slack_until: int = 0  # ... and none from this many tokens on (0: no such length)
    windowed_copies: float = 3.0  # windowed_sdpa: score, probability and gradient blocks
    # without gradient checkpointing: what autograd saves per layer for the backward, in layer widths
    # (inputs of the projections, the MLP's, the norms'; attention's saved blocks folded in)
    saved_copies: float = 0.908


# Fitted by bench/long_context_bench.py on the imported Gemma 3 270M, windowed_sdpa, LoRA as
# configs/training.yaml, fp32, 2 CPU cores, 2026-12-07 (docs/benchmarks.md "Long context memory"):
# with gradient checkpointing 2k / 4k / 8k / 16k / 32k tokens (2k and 4k peak in the loss phase:
# loss_tile_copies; 8k-32k in the layer recompute: layer_copies), without it 1k / 2k / 3k
# (saved_copies). The plan is within +0.2% to +37.5% of all nine peaks, never under them (the
# spread is the slack below).
# runtime_*: RSS that torch's allocator accounting never sees. It is glibc's heap: a freed
# allocation under malloc's dynamic mmap threshold (which rises to at most 32 MiB) stays in the
# process. It grows ~0.9 MiB per token while the activations are small (1.8 GiB at 2k, 3.6 at 4k,
# 4.5 at 8k), shrinks once they outgrow the threshold (2.6 GiB at 16k) and is gone at 32k (2 MiB);
# it varies run to run (3.0 GiB was seen at 2k). So the plan counts the most seen per token (1.5
# MiB), capped at the most seen, and none from 32k on. MALLOC_MMAP_THRESHOLD_=131072 in the
# environment removes it at any length (a 2k step: 6.5 -> 3.4 GiB with checkpointing, 8.9 -> 7.4
# without, each 9-17% slower); the plan then counts none.
CPU_CALIBRATION = Calibration(
    layer_copies=1.019,
    loss_tile_copies=2.918,
    eager_score_copies=4.0,
    sdpa_bias_bytes=0.0,
    runtime_bytes=843_260_985,  # RSS after load minus the weights: Python, torch, tokenizer
    runtime_per_token=1_574_778,
    runtime_slack_cap=4_676_303_549,
    runtime_slack_until=32_768,
    saved_copies=0.908,
)
# GPU: the same counts in bf16. PyTorch's memory-efficient sdpa kernel turns a bool mask into an
# additive bias of the query's dtype on every call (2 B per element in bf16); the CUDA/HIP context
# and the caching allocator's slack take about 1 GiB besides tensors. gpu_check's longctx stage
# prints plan vs measured (torch.cuda.max_memory_allocated) when a GPU is lent.
GPU_CALIBRATION = Calibration(
    layer_copies=CPU_CALIBRATION.layer_copies,
    loss_tile_copies=CPU_CALIBRATION.loss_tile_copies,
    eager_score_copies=CPU_CALIBRATION.eager_score_copies,
    sdpa_bias_bytes=2.0,
    runtime_bytes=1.0 * GIB,
    runtime_per_token=0.0,
)
CALIBRATION: dict[Device, Calibration] = {"cpu": CPU_CALIBRATION, "gpu": GPU_CALIBRATION}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a Gemma 3 text config."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    window: int
    sliding_layers: int

    @classmethod
    def from_config(cls, config) -> ModelShape:
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        types = list(getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers)
        return cls(layers=config.num_hidden_layers, hidden=config.hidden_size, heads=config.num_attention_heads,
                   kv_heads=config.num_key_value_heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
                   intermediate=config.intermediate_size, vocab=config.vocab_size,
                   window=getattr(config, "sliding_window", None) or 0,
                   sliding_layers=types.count("sliding_attention"))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of a decoder layer, by the names LoRA targets."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def parameters(self) -> int:
        """Every weight: embeddings (tied LM head), per layer its linears, 4 norms + q/k norms, final norm."""
        per_layer = sum(a * b for a, b in self.linear_shapes().values()) + 4 * self.hidden + 2 * self.head_dim
        return self.vocab * self.hidden + self.layers * per_layer + self.hidden

    def lora_parameters(self, r: int, targets: list[str]) -> int:
        """LoRA A (r x in) + B (out x r) for each targeted linear of every layer."""
        shapes = self.linear_shapes()
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise UserError(f"lora.target_modules: {unknown[0]} is not a linear layer of Gemma 3 "
                            f"(its linears: {', '.join(shapes)})")
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)

    def layer_width(self, r: int, targets: list[str], lora_dropout: bool) -> int:
        """Values per token one decoder layer computes in its forward (and recomputes in the backward):
        q, k and v before and after their norm and rope, the attention output, the hidden-size
        tensors (4 norms, o_proj, down_proj, 2 residual sums), the MLP's gate, up, activation and
        product, and per LoRA target its dropped-out input (dropout > 0), its rank-r middle and output."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        width = 3 * (q + 2 * kv) + q + 8 * self.hidden + 4 * self.intermediate
        shapes = self.linear_shapes()
        for target in targets:
            n_in, n_out = shapes[target]
            width += (n_in if lora_dropout else 0) + r + n_out
        return width


class StepPlan(BaseModel):
    """The projected peak of one training step at ``tokens`` tokens per sequence (bytes)."""

    tokens: int
    batch: int
    label_tokens: int
    attn_implementation: str
    device: str
    dtype: str
    terms: dict[str, int]
    peak: int

    def gib(self, term: str) -> float:
        return self.terms[term] / GIB


PERSISTENT = ("weights", "optimizer", "checkpoints", "attention masks", "runtime")


def dtype_bytes(cfg: TrainingConfig, device: Device) -> int:
    """The compute dtype's size by the one dtype rule (``scripts.model.loading.torch_dtype``) on that device."""
    from scripts.model.loading import torch_dtype

    return torch_dtype(cfg.model.dtype, gpu=device == "gpu").itemsize


def plan_step(shape: ModelShape, cfg: TrainingConfig, seq_len: int, *, device: Device, attn: str,
              label_tokens: int, calibration: Calibration | None = None) -> StepPlan:
    """Each term of one step's peak for ``per_device_batch_size`` sequences of ``seq_len`` tokens with
    ``label_tokens`` answer tokens each (see the module docstring for what each term holds)."""
    if attn not in ATTENTION_IMPLEMENTATIONS:
        raise UserError(f"no memory plan for attention {attn!r} (known: {', '.join(ATTENTION_IMPLEMENTATIONS)})")
    cal = calibration or CALIBRATION[device]
    act = dtype_bytes(cfg, device)
    batch = cfg.train.per_device_batch_size
    tokens = batch * seq_len
    full = cfg.train.method == "full"
    params = shape.parameters()
    if full:
        # fp32 master weights; on a GPU bf16 autocast also caches a bf16 copy of each weight it casts
        weights = params * FP32 + (params * act if act < FP32 else 0)
        optimizer = params * FP32 * (1 + ADAMW_MOMENTS)  # gradients + moments
        targets, r, dropout = [], 0, False
    else:
        weights = params * act
        lora = shape.lora_parameters(cfg.lora.r, list(cfg.lora.target_modules))
        optimizer = lora * FP32 * (2 + ADAMW_MOMENTS)  # fp32 adapter weights, gradients, moments
        targets, r, dropout = list(cfg.lora.target_modules), cfg.lora.r, cfg.lora.dropout > 0
    width = shape.layer_width(r, targets, dropout) if not full else shape.layer_width(0, [], False)
    if cfg.train.gradient_checkpointing:
        # each layer's input, the final hidden states, cos + sin for both rope types; the backward
        # recomputes one layer at a time: its activations and their gradients
        checkpoints = tokens * act * ((shape.layers + 1) * shape.hidden + 4 * shape.head_dim)
        layer = round(cal.layer_copies * tokens * width * act)
        kept_layers = 1
    else:
        # autograd keeps what every layer's backward reads from the forward until that backward runs,
        # so the loss and the last layer's gradients come on top of all of it
        checkpoints = round(cal.saved_copies * shape.layers * tokens * width * act)
        layer = round(max(cal.layer_copies - cal.saved_copies, 0.0) * tokens * width * act)
        kept_layers = shape.layers
    masks, kernel = attention_bytes(shape, attn, seq_len, batch, act, cal, kept_layers)
    rows = min(cfg.loss.chunk_size, batch * label_tokens)
    loss_tile = round(cal.loss_tile_copies * rows * shape.vocab * FP32)
    runtime = round(cal.runtime_bytes + heap_slack(cal, tokens, device))
    terms = {"weights": weights, "optimizer": optimizer, "checkpoints": checkpoints, "attention masks": masks,
             "layer recompute": layer, "attention kernel": kernel, "loss tile": loss_tile, "runtime": runtime}
    peak = sum(terms[t] for t in PERSISTENT) + max(layer + kernel, loss_tile)
    return StepPlan(tokens=seq_len, batch=batch, label_tokens=label_tokens, attn_implementation=attn,
                    device=device, dtype={2: "bf16", 4: "fp32"}[act], terms=terms, peak=peak)


def heap_slack(cal: Calibration, tokens: int, device: Device) -> float:
    """CPU: freed activations glibc keeps in its heap (see CPU_CALIBRATION); none where the process
    fixed malloc's mmap threshold (then every large tensor is unmapped when freed)."""
    import os

    if device == "cpu" and os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return 0.0
    if cal.runtime_slack_until and tokens >= cal.runtime_slack_until:
        return 0.0  # every activation is over the threshold: unmapped when freed
    slack = cal.runtime_per_token * tokens
    return min(slack, cal.runtime_slack_cap) if cal.runtime_slack_cap else slack


def attention_bytes(shape: ModelShape, attn: str, seq_len: int, batch: int, act: int, cal: Calibration,
                    layers: int = 1) -> tuple[int, int]:
    """``(masks, kernel)``: the step-long masks and one layer's attention buffers, in bytes; eager's
    softmax probabilities, quadratic, are kept by ``layers`` layers (all of them without gradient
    checkpointing), the linear kernels' saved blocks are in ``Calibration.saved_copies``.

    transformers 5.17 (``masking_utils``): sdpa builds a bool ``batch x 1 x seq x seq`` mask for the
    sliding layers whenever ``seq >= window`` and skips the global layers' mask (``is_causal``) unless
    a batch is padded; eager builds both as float masks in the model dtype; flash_attention_2 builds
    none. windowed_sdpa (queries in blocks of ``window`` against ``block + window`` keys) none either.
    """
    square = batch * seq_len * seq_len
    padded = batch > 1  # sequences of one batch differ in length: padding
    if attn == "eager":
        masks = 2 * square * act
        kernel = cal.eager_score_copies * batch * shape.heads * seq_len * seq_len * FP32 * layers
    elif attn == "sdpa":
        sliding = shape.sliding_layers > 0 and (seq_len >= shape.window or padded)
        global_ = shape.sliding_layers < shape.layers and padded
        n_masks = int(sliding) + int(global_)
        masks = n_masks * square
        kernel = cal.sdpa_bias_bytes * square * (1 if n_masks else 0)  # a per-call copy, freed after it
    elif attn == "windowed_sdpa":
        block = shape.window or seq_len
        masks = 0
        kernel = cal.windowed_copies * batch * shape.heads * seq_len * (block + shape.window) * act
    else:  # flash_attention_2: the softmax's log-sum-exp per query row and head
        masks = 0
        kernel = batch * shape.heads * seq_len * FP32
    return round(masks), round(kernel)


# --- devices and sizes --------------------------------------------------------------------------------

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def parse_memory_size(text: str) -> int:
    """``80GB`` (10^9 bytes each), ``80GiB`` (2^30), ``512MB``, ``1.5TiB`` -> bytes; UserError otherwise."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise UserError(f"--device-memory {text!r}: expected a size with a unit, e.g. 80GB, 80GiB or 512MB "
                        "(GB = 10^9 bytes, GiB = 2^30)")
    return int(float(match.group(1)) * _UNITS[unit])


def planned_attention(choice: str, device: Device, here: bool) -> str:
    """The attention implementation the run will use: this host's resolution of ``choice``; for
    another host, ``auto`` as it resolves without flash-attn (no ROCm wheel; the linear path)."""
    from scripts.model.gemma3 import resolve_attn_implementation

    if here:
        return resolve_attn_implementation(choice)
    return resolve_attn_implementation(choice, flash=False) if choice == "auto" else choice


def available_attention(device: Device) -> list[str]:
    """The implementations a run could pick there: flash_attention_2 only on a GPU; windowed_sdpa
    (``scripts.model.attention``) everywhere."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    import scripts.model.attention  # noqa: F401  (registers windowed_sdpa with transformers)

    names = ["eager", "sdpa"] + (["flash_attention_2"] if device == "gpu" else [])
    return names + [name for name in ("windowed_sdpa",) if name in ALL_ATTENTION_FUNCTIONS]


class MemoryPlan(BaseModel):
    """What ``train.prepare`` plans and records in ``prepare.json``."""

    device: str  # cpu | gpu
    device_name: str
    device_memory: int  # bytes
    usable_share: float = USABLE_SHARE
    attn_implementation: str
    steps: dict[str, StepPlan]  # "longest example" and "max_seq_length"
    alternatives: dict[str, int] = {}  # peak at max_seq_length of each other implementation available there
    checked: list[str] = []  # the steps that must fit (train.prepare fails otherwise)

    def fits(self, step: StepPlan) -> bool:
        return step.peak <= self.usable_share * self.device_memory


def make_plan(cfg: TrainingConfig, model_config, *, longest_tokens: int, longest_answer: int,
              device_memory: int | None = None, device: Device | None = None) -> MemoryPlan:
    """Plan the longest training example and ``max_seq_length`` against the device's memory: this
    host's (GPU memory, else RAM) or ``device_memory`` bytes of a ``device`` elsewhere (default gpu)."""
    here_kind, here_bytes, here_name = this_host()
    here = device_memory is None and device in (None, here_kind)
    kind: Device = here_kind if here else (device or "gpu")
    memory = here_bytes if device_memory is None else device_memory
    name = here_name if here else f"{kind} given by --device-memory"
    attn = planned_attention(cfg.model.attn_implementation, kind, here)
    shape = ModelShape.from_config(model_config)
    answer = max(longest_answer, 1)
    steps = {
        "longest example": plan_step(shape, cfg, longest_tokens, device=kind, attn=attn, label_tokens=answer),
        "max_seq_length": plan_step(shape, cfg, cfg.model.max_seq_length, device=kind, attn=attn,
                                    label_tokens=answer),
    }
    alternatives = {other: plan_step(shape, cfg, cfg.model.max_seq_length, device=kind, attn=other,
                                     label_tokens=answer).peak
                    for other in available_attention(kind) if other != attn}
    # This run trains only the examples prepare kept, so they must fit; planning for another host
    # (--device-memory) asks whether the config itself fits there, max_seq_length included.
    checked = ["longest example"] + (["max_seq_length"] if device_memory is not None else [])
    return MemoryPlan(device=kind, device_name=name, device_memory=memory, attn_implementation=attn,
                      steps=steps, alternatives=alternatives, checked=checked)


TERM_ORDER = ("weights", "optimizer", "checkpoints", "attention masks", "layer recompute", "attention kernel",
              "loss tile", "runtime")


def plan_lines(plan: MemoryPlan) -> list[str]:
    """What ``fab train.prepare`` prints: per planned length the terms, then the peak line."""
    lines = []
    for what, step in plan.steps.items():
        terms = ", ".join(f"{t} {step.gib(t):.2f}" for t in TERM_ORDER)
        lines.append(f"  {what} ({step.tokens:,} tokens x batch {step.batch}, {step.label_tokens} answer tokens, "
                     f"{step.dtype}, {step.attn_implementation}): {terms} GiB")
        lines.append(f"memory plan: peak {step.peak / GIB:.1f} GiB at {step.tokens} tokens "
                     f"(device {plan.device_memory / GIB:.1f} GiB)")
    others = ", ".join(f"{name} {peak / GIB:.1f} GiB" for name, peak in plan.alternatives.items())
    if others:
        lines.append(f"  other attention implementations at {plan.steps['max_seq_length'].tokens} tokens: {others}")
    for what, step in plan.steps.items():
        if what not in plan.checked and not plan.fits(step):
            term = max(TERM_ORDER, key=lambda t: step.terms[t])
            lines.append(f"  warning: {what} ({step.tokens} tokens) does not fit {plan.usable_share:.0%} of this "
                         f"device (largest term: {term} {step.gib(term):.1f} GiB); this run's examples do; "
                         f"{remedy(plan, step, term)}")
    return lines


def check_fits(plan: MemoryPlan, steps: tuple[str, ...] = ("longest example",)) -> None:
    """UserError (one line) naming the length, the peak, the device and the largest term when one of
    ``steps`` exceeds ``usable_share`` of the device."""
    for what in steps:
        step = plan.steps[what]
        if plan.fits(step):
            continue
        term = max(TERM_ORDER, key=lambda t: step.terms[t])
        raise UserError(f"memory plan: peak {step.peak / GIB:.1f} GiB at {step.tokens} tokens ({what}, "
                        f"{step.attn_implementation}) exceeds {plan.usable_share:.0%} of the device's "
                        f"{plan.device_memory / GIB:.1f} GiB; largest term: {term} {step.gib(term):.1f} GiB; "
                        f"{remedy(plan, step, term)}")


def remedy(plan: MemoryPlan, step: StepPlan, term: str) -> str:
    """What to change: a linear attention that fits when attention is the largest term, else the length."""
    if term.startswith("attention") and step.tokens == plan.steps["max_seq_length"].tokens:
        linear = [f"{name} ({peak / GIB:.1f} GiB)" for name, peak in plan.alternatives.items()
                  if name in LINEAR_ATTENTION and peak <= plan.usable_share * plan.device_memory]
        if linear:
            return f"model.attn_implementation {' or '.join(linear)} would fit"
    return "lower model.max_seq_length (or train.per_device_batch_size), or plan for a larger device"
