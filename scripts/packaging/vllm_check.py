"""The bundle as vLLM serves it: loaded as the model card says, answering validation pages.

    check = check_bundle(Path("models/export/.run.tmp"), package_cfg, records)
    check.checked, check.valid, check.agree, check.disagreements

``package.export`` runs it on the saved bundle before renaming it into place, when vLLM is
installed: the engine starts with the card's dtype, ``max_model_len`` (131072: vLLM must read the
rope scaling to accept it), xgrammar with whitespace disabled and the closing logits processor;
each task's request is the one ``structured_outputs.json`` describes. Every answer must be valid
and complete (a failed check writes nothing). Agreement with eval.generate's HF path on the same
pages (the bundle in fp32 on CPU, as eval.generate computes there) is recorded with every
disagreement; vLLM on CPU serves bf16, so a near tie can go the other way. Without vLLM the
manifest says "not checked on vLLM", never nothing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from scripts.config import UserError, load_config
from scripts.contracts import CleanRecord

NOT_INSTALLED = "not checked on vLLM: vLLM is not installed here (./scripts/setup_env.sh --serve)"


class VllmCheck(BaseModel):
    checked: bool
    summary: str
    version: str | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    load_s: float | None = None
    pages: int = 0
    valid: int = 0
    agree: int = 0
    disagreements: list[dict] = Field(default_factory=list, description="id, task, hf and vllm answers")
    answers: dict[str, str] = Field(default_factory=dict, description="page id -> vLLM's answer")


def check_bundle(bundle: Path, cfg, records: list[CleanRecord]) -> VllmCheck:
    from scripts.host import this_host
    from scripts.serving.engines import EngineSettings, vllm_version

    version = vllm_version()
    if version is None:
        return VllmCheck(checked=False, summary=NOT_INSTALLED)
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.generation.generate import build_task_decoder, generate_outputs
    from scripts.model.loading import ResolvedModel, load_model_config, load_resolved
    from scripts.serving.runners import HfRunner, VllmRunner
    from scripts.serving.vllm_engine import VllmEngine

    eval_cfg = load_config(cfg.eval_config, EvalConfig)
    datasets = cfg.data.datasets()
    # as the card's command for this host kind: compiled on a GPU, --enforce-eager on CPU
    settings = EngineSettings(name="vllm", dtype=cfg.dtype, cpu_kv_cache_gib=cfg.vllm.cpu_kv_cache_gib,
                              gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
                              enforce_eager=this_host()[0] == "cpu")
    try:
        engine = VllmEngine(str(bundle), settings, max_model_len=cfg.vllm.max_model_len)
    except Exception as exc:  # the engine's own error: the bundle does not serve as the card says
        raise UserError(f"vLLM {version} cannot load the bundle as the model card says: "
                        f"{(str(exc).strip().splitlines() or [type(exc).__name__])[-1]}; nothing written") from exc
    answers: dict[str, dict[str, tuple[str, bool, str]]] = {"vllm": {}, "hf": {}}
    by_task: dict[str, list[CleanRecord]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    try:
        vllm = VllmRunner(engine, load_model_config(str(bundle)))
        model, tokenizer = load_resolved(ResolvedModel(str(bundle), None, None, str(bundle), str(bundle)),
                                         dtype="auto")
        for name, runner in (("vllm", vllm), ("hf", HfRunner(model, tokenizer))):
            for task, items in by_task.items():
                spec = datasets.tasks[task]
                decoder, max_new = build_task_decoder(eval_cfg, runner.vocab, tokenizer, spec, task)
                for batch in generate_outputs(eval_cfg, runner, tokenizer, decoder, spec, task, items, max_new,
                                              str(bundle)):
                    for candidate, _ in batch:
                        answers[name][candidate.id] = (candidate.raw, candidate.valid, task)
    finally:
        engine.close()
    load_s = engine.load_s
    valid = sum(ok for _, ok, _ in answers["vllm"].values())
    differ = [{"id": key, "task": task, "hf": answers["hf"][key][0], "vllm": raw}
              for key, (raw, _, task) in answers["vllm"].items() if raw != answers["hf"][key][0]]
    check = VllmCheck(checked=True, version=version, max_model_len=cfg.vllm.max_model_len, dtype=cfg.dtype,
                      load_s=round(load_s, 1),
                      pages=len(records), valid=valid, agree=len(records) - len(differ), disagreements=differ,
                      answers={key: raw for key, (raw, _, _) in answers["vllm"].items()}, summary="")
    check.summary = (f"vLLM {version}: loaded with max_model_len {check.max_model_len} ({cfg.dtype}); "
                     f"{valid}/{len(records)} answers valid and complete; {check.agree}/{len(records)} equal "
                     f"to eval.generate's (hf)")
    if valid < len(records):
        bad = [key for key, (_, ok, _) in answers["vllm"].items() if not ok]
        raise UserError(f"vLLM answered {len(bad)} validation page(s) invalid ({', '.join(bad[:3])}); nothing written")
    return check
