"""One batch of prompts -> raw outputs, per engine; eval.generate and ops.backfill build candidates
from them the same way whichever engine ran.

    with open_runner("vllm", resolved, cfg, max_model_len=4096) as (runner, tokenizer):
        rows, seconds = runner.run(decoder, spec, prompt_ids, max_new=256, greedy=True)

A LoRA run is served by vLLM as the merged model (merged here into a temporary folder, in the
dtype the engine computes in): the same weights ``package.export`` bundles and users deploy,
with the run's rope scaling in its config.json (vLLM reads it there), and no LoRA kernels in the
decode loop. A full fine-tune's ``model/``, a merged bundle and a zero-shot base load as they are.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from scripts.model.loading import ResolvedModel, load_resolved, load_tokenizer


@dataclass
class RowOutput:
    generated: list[int]  # new tokens, the stop token included when one was generated
    logprobs: list[float]  # per generated token
    label_probs: dict[str, float] | None
    refused: list[int]  # decode steps where the closing refused the model's choice
    limits: set[str] = field(default_factory=set)  # which limits refused them (closing.STRING_BOUND, BUDGET)
    lost: bool = False


class HfRunner:
    name = "hf"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.vocab = model  # what decoding.tokenizer_info reads the vocabulary size from
        self.context_length = model.config.get_text_config().max_position_embeddings

    def run(self, decoder, spec, prompts: list[list[int]], *, max_new: int, greedy: bool):
        import torch

        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new,
                logits_processor=decoder.processors(max_new, greedy), eos_token_id=decoder.stop_token_ids,
                pad_token_id=pad, do_sample=not greedy,
            )
        elapsed = time.perf_counter() - started
        new_tokens = sequences[:, width:].cpu()
        logprobs = decoder.token_logprobs(new_tokens)
        label_probs = decoder.label_probs()
        rows = [RowOutput(new_tokens[row].tolist(), logprobs[row].tolist(), label_probs[row] if label_probs else None,
                          decoder.refused_steps(row), decoder.closing_limits(row)) for row in range(len(prompts))]
        return rows, elapsed


class VllmRunner:
    name = "vllm"

    def __init__(self, engine, config):
        self.engine = engine
        self.vocab = config
        self.context_length = engine.max_model_len  # what the engine was started to hold per sequence

    def run(self, decoder, spec, prompts: list[list[int]], *, max_new: int, greedy: bool):
        import math

        started = time.perf_counter()
        answers = self.engine.generate(prompts, spec, decoder.bounds, max_new=max_new, greedy=greedy,
                                       constrained=decoder.compiled is not None or decoder.closer is not None,
                                       stop_ids=decoder.stop_token_ids, closer=decoder.closer)
        elapsed = time.perf_counter() - started
        rows = []
        for answer in answers:
            probs = None
            if decoder.label_first_ids:
                first = [answer.first_step.get(token, -math.inf) for token in decoder.label_first_ids.values()]
                top = max(first)
                weights = [math.exp(v - top) if v > -math.inf else 0.0 for v in first]
                probs = {label: w / sum(weights) for label, w in zip(decoder.label_first_ids, weights)}
            rows.append(RowOutput(answer.token_ids, answer.logprobs, probs, answer.interventions, answer.limits,
                                  answer.lost))
        return rows, elapsed


@contextmanager
def open_runner(engine: str, resolved: ResolvedModel, *, dtype: str, attn_implementation: str, settings,
                max_model_len: int, tokenizer=None) -> Iterator[tuple[HfRunner | VllmRunner, object]]:
    """(runner, tokenizer) for ``resolved`` on ``engine``; temporary files are removed on exit.
    ``tokenizer``: ``resolved``'s, when the caller has loaded it already (vLLM only)."""
    if engine == "hf":
        model, tokenizer = load_resolved(resolved, dtype, attn_implementation)
        yield HfRunner(model, tokenizer), tokenizer
        return
    from scripts.model.loading import load_model_config
    from scripts.serving.vllm_engine import VllmEngine

    merged = None
    try:
        folder = resolved.base
        if resolved.adapter_dir is not None:
            merged = tempfile.mkdtemp(prefix="vllm-merged-")
            _merge_into(resolved, merged, settings.dtype)
            folder = merged
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(resolved.tokenizer_dir)
        if merged:
            tokenizer.save_pretrained(merged)
        engine = VllmEngine(folder, settings, max_model_len=max_model_len)
        try:
            yield VllmRunner(engine, load_model_config(folder)), tokenizer
        finally:
            engine.close()
    finally:
        if merged:
            shutil.rmtree(merged, ignore_errors=True)


def _merge_into(resolved: ResolvedModel, folder: str, dtype: str) -> None:
    """The LoRA run merged as ``package.export`` merges it (rope in the config, <end_of_turn> stops)."""
    import torch

    model, _ = load_resolved(resolved, dtype)
    merged = model.merge_and_unload()
    merged.to(torch.float32 if next(merged.parameters()).dtype == torch.float32 else torch.bfloat16)
    merged.save_pretrained(folder)
    del model, merged
