"""The offline vLLM engine behind ``--engine vllm`` (eval.generate, ops.backfill, export's check).

    engine = VllmEngine(model_dir, EngineSettings(name="vllm"), max_model_len=4096)
    answers = engine.generate(prompt_ids, spec, bounds, max_new=256, greedy=True)

The prompts arrive as token ids rendered by the tokenizer's chat template (``scripts.chat``), so
vLLM sees exactly the tokens HF ``generate`` sees. The grammar is vLLM's structured outputs on the
xgrammar backend with the same JSON schema (``answer_schema.slots_json_schema``, whitespace disabled at
engine level: a per-request ``disable_any_whitespace`` is not read) or the label choice; the
answer closing runs as a logits processor after the grammar (``vllm_closing``). The engine runs
in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), which is how each request's refused
steps (``truncated_slots``) come back.

Confidence comes from vLLM's processed log-probs: after the grammar mask (as on the HF path) but
also after the closing, so a token the closing forced reads as likely (HF reads it before the
closing and shows it unlikely); label probabilities are the renormalised first-step log-probs of
the labels' first tokens, the same quantity as on the HF path.

vLLM starts worker processes with spawn: build a ``VllmEngine`` inside a function, never at a
module's import time.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field

from scripts.serving.engines import EngineSettings, vllm_version

LABEL_LOGPROBS = 20  # first-step candidates returned for classification (the labels' first tokens among them)
# Lines vLLM's start prints that no logger or warnings filter reaches: the CPU worker's memory binding is a
# C++ TORCH_WARN written straight to stderr on every start ("NUMA binding: Using MEMBIND policy ..."), a notice
# about this process, never actionable here.
START_NOISE = re.compile(r"Warning: NUMA binding: ")


@contextlib.contextmanager
def quiet_vllm_start():
    """vLLM's import and engine start without its chatter, for this call only: its FutureWarnings (torch
    deprecations its kernel registry trips over) are ignored, and stderr is read back at the file-descriptor
    level (C++ writes bypass sys.stderr) with START_NOISE lines dropped; everything else, errors included, is
    written back, also when the start fails. Its loggers are set to ERROR by VLLM_LOGGING_LEVEL and its
    weight-loading bar is off (use_tqdm_on_load)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm(\.|$)")
        with tempfile.TemporaryFile(mode="w+b") as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                kept = [line for line in sink.read().decode(errors="replace").splitlines(keepends=True)
                        if not START_NOISE.search(line)]
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@dataclass
class EngineAnswer:
    token_ids: list[int]  # generated, stop token included when one was generated
    logprobs: list[float]  # per generated token (processed: after the grammar and the closing)
    first_step: dict[int, float] = field(default_factory=dict)  # token id -> log-prob at step 0
    interventions: list[int] = field(default_factory=list)
    limits: set[str] = field(default_factory=set)
    lost: bool = False
    finish_reason: str | None = None


def vllm_dtype(choice: str) -> str:
    from scripts.model.loading import torch_dtype

    import torch

    return "bfloat16" if torch_dtype(choice) == torch.bfloat16 else "float32"


class VllmEngine:
    def __init__(self, model_dir: str, settings: EngineSettings, *, max_model_len: int,
                 tokenizer_dir: str | None = None):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the closing's results are read in-process
        # In-process, vLLM's CPU worker would bind this process's OpenMP threads to the cores it picks
        # (on 2 cores: 1, the other reserved) and turn torch.set_num_threads into a no-op, for the rest of
        # the process: a test session or a chain that trains after evaluating would run on one core.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(settings.cpu_kv_cache_gib)))  # per engine
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its CPU warnings (LD_PRELOAD, threads) are noise here
        with quiet_vllm_start():
            from vllm import LLM

            from scripts.serving.vllm_closing import CLOSING_PROCESSOR

        self.version = vllm_version()
        self.max_model_len = max_model_len
        started = time.perf_counter()
        import torch

        set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
        try:
            with quiet_vllm_start():
                self.llm = self._start(LLM, model_dir, tokenizer_dir, settings, max_model_len, CLOSING_PROCESSOR)
        except (ValueError, RuntimeError) as exc:  # vLLM's own start-up errors (KV cache, memory, config)
            from scripts.config import UserError

            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            raise UserError(f"vLLM could not start on {model_dir} (max_model_len {max_model_len}): {reason}; "
                            "on CPU raise engine.cpu_kv_cache_gib or lower engine.max_model_len") from exc
        finally:
            torch.set_num_threads = set_num_threads  # the worker replaced it for the whole process
            torch.set_num_threads(threads)
        self.load_s = time.perf_counter() - started

    def close(self) -> None:
        """Free the engine (weights, KV cache) now: in-process, it lives as long as a reference does."""
        import gc

        llm, self.llm = self.llm, None
        del llm
        gc.collect()

    @staticmethod
    def _start(LLM, model_dir, tokenizer_dir, settings, max_model_len, processor):
        return LLM(
            model=model_dir, tokenizer=tokenizer_dir or model_dir, dtype=vllm_dtype(settings.dtype), seed=0,
            max_model_len=max_model_len, enforce_eager=settings.enforce_eager,
            enable_prefix_caching=settings.enable_prefix_caching,
            tensor_parallel_size=settings.tensor_parallel_size, data_parallel_size=settings.data_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            logits_processors=[processor], logprobs_mode="processed_logprobs",
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
            use_tqdm_on_load=False,  # a per-start progress bar over one weights file
        )

    def generate(self, prompts: list[list[int]], spec, bounds, *, max_new: int, greedy: bool = True,
                 constrained: bool = True, stop_ids: list[int], closer=None) -> list[EngineAnswer]:
        """``closer``: the task's CloserSpec when the caller built one from the same tokenizer (reused
        by the in-process logits processor instead of rebuilding it)."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        from scripts.evaluation.generation.answer_schema import slots_json_schema
        from scripts.serving.engines import closing_args
        from scripts.serving.vllm_closing import FOLLOWED, PREBUILT

        structured, keys = None, []
        if constrained:
            structured = (StructuredOutputsParams(choice=list(spec.labels or []))
                          if spec.kind == "classification" else
                          StructuredOutputsParams(json=slots_json_schema(spec.catalog or {}, bounds)))
        task = closing_args(spec, bounds)
        if closer is not None:
            PREBUILT[task] = closer
        params = []
        for _ in prompts:
            key = uuid.uuid4().hex
            keys.append(key)
            params.append(SamplingParams(
                temperature=0.0 if greedy else 1.0, max_tokens=max_new, stop_token_ids=stop_ids,
                logprobs=LABEL_LOGPROBS if spec.kind == "classification" else 0, structured_outputs=structured,
                extra_args={"closing": task, "closing_key": key} if constrained else None,
                skip_special_tokens=False, detokenize=False, seed=0,
            ))
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        answers = []
        for output, key in zip(outputs, keys):
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [step[token].logprob if step and token in step else float("nan")
                        for token, step in zip(ids, completion.logprobs or [])]
            first = {token: entry.logprob for token, entry in (completion.logprobs or [{}])[0].items()} \
                if completion.logprobs else {}
            row = FOLLOWED.pop(key, None)
            answers.append(EngineAnswer(
                token_ids=ids, logprobs=logprobs, first_step=first,
                interventions=list(row.interventions) if row else [], limits=set(row.limits) if row else set(),
                lost=bool(row and row.lost),
                finish_reason=completion.finish_reason,
            ))
        return answers
