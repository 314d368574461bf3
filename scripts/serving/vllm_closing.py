"""The answer closing (``scripts.evaluation.generation.closing``) as a vLLM v1 logits processor.

    LLM(model=..., logits_processors=[CLOSING_PROCESSOR])                       # offline
    python -m vllm.entrypoints.openai.api_server --model BUNDLE \\
        --logits-processors scripts.serving.vllm_closing:ClosingLogitsProcessor  # served

A request opts in with ``extra_args`` (``vllm_xargs`` in an OpenAI-compatible request body; the
bundle's ``structured_outputs.json`` writes it per task): ``{"closing": TASK_JSON}`` where
TASK_JSON is ``engines.closing_args``' JSON string (task kind, labels or slots in catalog order,
schema bounds). Per request the processor follows the answer with a ``RowCloser`` and, after
vLLM's grammar bitmask (applied before custom processors), closes a string value after
``max_string_tokens`` tokens, bans surrogate escapes and keeps the answer completable within
the request's ``max_tokens``: a served answer is complete and valid within its budget, never
cut inside a string. The spec is built once per task from the engine's own tokenizer, exactly
as eval.generate builds it.

Offline, ``VllmEngine`` runs the engine in its own process (no engine-core subprocess) and
reads each request's refused steps from ``FOLLOWED`` under the key it set
(``closing_key``): those mark ``truncated_slots``, as on the HF path.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

CLOSING_PROCESSOR = "scripts.serving.vllm_closing:ClosingLogitsProcessor"
FOLLOWED: dict[str, Any] = {}  # closing_key -> RowCloser, for an in-process engine to read back
# task JSON -> the CloserSpec eval.generate already built from the same tokenizer: an in-process engine
# skips loading a second 262k-piece tokenizer and rebuilding the tables (seconds per task)
PREBUILT: dict[str, Any] = {}


class ClosingLogitsProcessor(AdapterLogitsProcessor):
    """One ``RowCloser`` per request that carries ``extra_args["closing"]``; others pass untouched."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        model_config = vllm_config.model_config
        self.tokenizer_path = model_config.tokenizer
        self.vocab_size = model_config.get_vocab_size()
        self._tokenizer = None
        self._info = None
        self._specs: dict[str, Any] = {}  # task JSON -> (CloserSpec, banned tensors, closing mask)

    def is_argmax_invariant(self) -> bool:
        return False  # it refuses argmax tokens near the budget and at the string bound

    @classmethod
    def validate_params(cls, params) -> None:
        raw = (params.extra_args or {}).get("closing")
        if raw is None:
            return
        try:
            task = json.loads(raw)
            assert task["kind"] in ("classification", "extraction")
        except (TypeError, ValueError, KeyError, AssertionError):
            raise ValueError("extra_args.closing must be the JSON of a task (kind, labels|slots, bounds)") from None

    def _spec(self, raw: str, device: torch.device):
        if raw not in self._specs and raw in PREBUILT:
            closer = PREBUILT[raw]
            self._specs[raw] = (closer, {k: v.to(device) for k, v in closer.banned.items()},
                                closer.closing_mask.to(device) if closer.closing_mask is not None else None)
        if raw not in self._specs:
            from scripts.dataset.config import TaskSpec
            from scripts.evaluation.generation.config import SchemaBounds
            from scripts.evaluation.generation.decoding import closer_spec, tokenizer_info

            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
                self._info = tokenizer_info(self._tokenizer, _Vocab(self.vocab_size))
            task = json.loads(raw)
            spec = TaskSpec(kind=task["kind"], labels=task.get("labels"), slots=task.get("slots"), system_prompt="")
            closer = closer_spec(self._tokenizer, self._info, spec, SchemaBounds(**task["bounds"]))
            banned = {k: v.to(device) for k, v in closer.banned.items()}
            mask = closer.closing_mask.to(device) if closer.closing_mask is not None else None
            self._specs[raw] = (closer, banned, mask)
        return self._specs[raw]

    def new_req_logits_processor(self, params):
        from scripts.evaluation.generation.closing import RowCloser

        args = params.extra_args or {}
        raw = args.get("closing")
        if raw is None:
            return None
        holder: dict[str, Any] = {}

        def close(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            if not holder:  # built at the first step, on the device the logits live on
                closer, banned, mask = self._spec(raw, logits.device)
                row = RowCloser(closer, params.max_tokens, greedy=params.temperature < 1e-5)
                holder.update(row=row, banned=banned, mask=mask, fed=0)
                if args.get("closing_key"):
                    FOLLOWED[args["closing_key"]] = row
            row = holder["row"]
            for token in output_ids[holder["fed"]:]:
                row.feed(token)
            holder["fed"] = len(output_ids)
            return row.restrict(logits, len(output_ids), holder["banned"], holder["mask"])

        return close


class _Vocab:
    """A model config stand-in for ``tokenizer_info``: only the vocabulary size is read."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
