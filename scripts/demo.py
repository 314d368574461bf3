"""The whole chain on the sample data, on CPU: a tiny Gemma 3 trained from scratch, or the real one.

    fab demo [--rows 2000] [--steps 800] [--eval-limit 0]
    fab demo --real [--steps 120] [--eval-limit 24]     # after ./scripts/setup_env.sh --base-model

sample -> clean -> split -> stats -> base model -> train -> generate -> judge
-> report -> export -> project tokens. Every stage runs through the same
scripts/ function its `fab` task calls, with the repo's configs plus the
overrides below. The demo is a workspace of its own, `demo/tiny/` (`demo/real/`
for --real): its datasets config sets `root: demo/tiny`, so its raw table,
processed data, runs, bundle and reports all live under that one folder, where
a user's `adapter: latest` never looks; a rerun removes it first. The derived
configs are written to `demo/tiny/configs/` so any stage can be rerun by hand
(`fab eval.judge --config demo/tiny/configs/judge_slots.yaml`).

The tiny model's quality proves only that the chain learns: expect 100%
valid outputs and nav accuracy above the validation split's majority class.
``--real`` imports google/gemma-3-270m from the packaged GGUF once
(models/gemma-3-270m, kept between runs), LoRA-trains it for a CPU budget
and also generates with the base model alone (zero-shot), so the headline
says what fine-tuning bought on pages of sites it never saw.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from scripts import paths
from scripts.config import REPO_ROOT, load_config, set_dotted
from scripts.contracts import JudgeSummary
from scripts.dataset.config import DatasetsConfig
from scripts.paths import Workspace
from scripts.training.config import TrainingConfig

REAL_MODEL = Path("models/gemma-3-270m")  # train.import-gguf's default output: shared, never removed


@dataclass
class DemoSettings:
    rows: int = 2000
    seed: int = 0
    steps: int = 800
    eval_limit: int = 0  # validation examples generated and judged; 0 = all of them
    hidden_size: int = 64
    layers: int = 2
    real: bool = False  # the imported google/gemma-3-270m instead of a tiny random model
    engine: str = "auto"  # generation engine: auto (vLLM when installed), hf or vllm; hf also skips export's vLLM check

    @classmethod
    def for_real(cls, **changes) -> DemoSettings:
        """CPU budget of `fab demo --real`: about 40 minutes on 2 shared cores with transformers (measured:
        training 16 min, fine-tuned and zero-shot generation 12 min each, import and export a few minutes);
        with vLLM installed generation takes under 3 minutes for both (docs/serving.md)."""
        return cls(**{"rows": 2000, "steps": 120, "eval_limit": 24, "real": True, **changes})

    @property
    def name(self) -> str:
        """The run id and the bundle's name."""
        return "demo-real" if self.real else "demo"

    @property
    def workspace(self) -> Workspace:
        """The demo's own workspace (demo/tiny, demo/real): a rerun removes it, a user's stages never see it."""
        return Workspace(paths.DEMO_DIR / ("real" if self.real else "tiny"))

    @property
    def base_model(self) -> Path:
        """The real model is shared and kept (imported once); the tiny one lives in the demo's workspace."""
        return REAL_MODEL if self.real else self.workspace.root / "models" / "tiny-gemma3"


class DemoInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM: the demo ends there, one line, no traceback."""

    def __init__(self, signal: str, step: int, steps: int):
        super().__init__(f"{signal}: the demo stopped while training, at step {step} of {steps}; "
                         "nothing after training ran, and `fab demo` starts afresh")
        self.signal = signal


@dataclass
class DemoResult:
    artifacts: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    zero_shot: list[str] = field(default_factory=list)
    closed_early: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (closed early, answers)


def overrides(settings: DemoSettings) -> dict[str, dict[str, Any]]:
    """Per config file: the dotted keys the demo changes. Its paths all follow from the datasets
    config's ``root``: every stage config names the demo's datasets config."""
    workspace = settings.workspace
    datasets = str(workspace.configs_dir / "datasets.yaml")
    training = {
        "data.datasets_config": datasets,
        "model.name_or_path": str(settings.base_model),
        "output.run_id": settings.name,
        "train.max_steps": settings.steps,
        "train.save_steps": max(settings.steps // 2, 1),
    }
    if settings.real:
        training.update({
            "backend": "auto",
            "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.0,  # CPU sweep (docs/quality.md): r 16 as good as r 64
            "train.lr": 3.0e-4,                 # CPU sweep: ties 1e-3 on slot accuracy
            "train.warmup_ratio": 0.05,         # the first steps see loss ~20: <end_of_turn> is new to the base
            "train.per_device_batch_size": 1, "train.grad_accum": 1,  # many cheap steps on 2 cores
            "packing.enabled": False,  # one page per step: the CPU sweep's recipe (lr, steps) was tuned so
            "train.logging_steps": 10,
            "train.gradient_checkpointing": False,  # 1-2k-token prompts: recomputation only costs time
            "loss.chunk_size": 1024,
        })
    decoding = ({"decoding.batch_size": 8, "decoding.max_new_tokens": {"classification": 4, "extraction": 256}}
                if settings.real else
                # A tiny model loops inside strings: tight bounds keep answers short.
                {"decoding.batch_size": 4, "decoding.max_new_tokens": {"classification": 4, "extraction": 512},
                 "schema_bounds.max_string_tokens": 12, "schema_bounds.max_list_items": 3,
                 "model.attn_implementation": "eager"})
    return {
        "datasets.yaml": {"root": str(workspace.root), "stats.tokenizer": str(settings.base_model)},
        ("training.yaml" if settings.real else "training_tiny.yaml"): training,
        # a short run: vLLM starting in seconds beats compiling it for 24 + 24 pages
        "eval.yaml": {"data.datasets_config": datasets, "engine.name": settings.engine, "engine.enforce_eager": True,
                      **decoding},
        "judge_slots.yaml": {"datasets_config": datasets},
        "package.yaml": {
            "data.datasets_config": datasets,
            "eval_config": str(workspace.configs_dir / "eval.yaml"),  # the demo's schema bounds go to the bundle
            **({"vllm.check_pages": 0} if settings.engine == "hf" else {}),
        },
        "ops.yaml": {"datasets_config": datasets},
    }


def write_configs(settings: DemoSettings) -> dict[str, Path]:
    """Repo config + demo overrides, written out so each stage can be rerun by hand."""
    config_dir = settings.workspace.configs_dir
    config_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, changes in overrides(settings).items():
        raw = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())
        for dotted, value in changes.items():
            set_dotted(raw, dotted, value)
        path = config_dir / name
        flag = " --real" if settings.real else ""
        header = f"# Written by `fab demo{flag}`: configs/{name} with the demo's overrides (scripts/demo.py).\n"
        path.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        paths["training" if name.startswith("training") else name] = path
    return paths


def run_demo(settings: DemoSettings, say: Callable[[str], None] = print, console=None) -> DemoResult:
    result = DemoResult()
    where = settings.workspace

    def stage(name: str):
        return _Stage(name, result, say)

    shutil.rmtree(where.root, ignore_errors=True)
    configs = write_configs(settings)
    datasets = load_config(configs["datasets.yaml"], DatasetsConfig)

    with stage("sample"):
        from scripts.sample_data import generate_sample

        generate_sample(where.raw_db, rows=settings.rows, seed=settings.seed)
        result.artifacts["raw data"] = where.raw_db
    with stage("clean + split"):
        from scripts.dataset.clean import clean_dataset
        from scripts.dataset.split import split_dataset

        clean = clean_dataset(where.raw_db, datasets, datasets.schema_version)
        split = split_dataset(datasets)
        say(f"  {clean.rows_clean} clean, {clean.rows_rejected} rejected; splits {split.counts_text()}")
        result.artifacts["splits"] = datasets.data_paths().splits_dir
    if settings.real:
        with stage("real model"):
            from scripts.model.gguf_import import import_gguf

            imported = import_gguf(None, settings.base_model, say=lambda s: say(f"  {s}"))
            say(f"  {imported.label} at {settings.base_model}" + (" (already imported)" if imported.reused else ""))
            result.artifacts["base model"] = settings.base_model
    else:
        with stage("tiny model"):
            from scripts.model.tiny import build_tiny_gemma
            from scripts.sample_data.splits import texts_for_tokenizer

            texts, _ = texts_for_tokenizer(datasets.data_paths().splits_dir)
            build_tiny_gemma(settings.base_model, texts, hidden_size=settings.hidden_size,
                             num_layers=settings.layers, seed=settings.seed, embedding_scale=10.0)
            result.artifacts["tiny base model"] = settings.base_model
    with stage("stats"):
        from scripts.dataset.stats import compute_stats

        compute_stats(datasets)
        result.artifacts["stats"] = datasets.data_paths().stats
    with stage("train"):
        from scripts.training.run import run_training

        training = run_training(load_config(configs["training"], TrainingConfig), console=console,
                                say=lambda s: say(f"  {s}"))
        if training.interrupted_by:  # its checkpoint is kept, but a demo run has no --resume: say so and stop
            raise DemoInterrupted(training.interrupted_by, training.global_step, settings.steps)
        say(f"  {training.global_step} steps, final loss {training.final_loss:.3f}")
        result.artifacts["model" if training.method == "full" else "adapter"] = Path(training.weights_dir)
    from scripts.evaluation.generation.config import EvalConfig
    from scripts.evaluation.judging.config import JudgeConfig
    from scripts.evaluation.judging.judge import run_judge

    eval_cfg = load_config(configs["eval.yaml"], EvalConfig)
    judge_cfg = load_config(configs["judge_slots.yaml"], JudgeConfig).resolved()
    with stage("generate"):
        result.artifacts["candidates"] = _generate(eval_cfg, settings, say, result)
    if settings.real:
        with stage("generate zero-shot"):
            zero_shot_cfg = eval_cfg.model_copy(update={"model": eval_cfg.model.model_copy(update={"zero_shot": True})})
            result.artifacts["zero-shot candidates"] = _generate(zero_shot_cfg, settings, say, result)
    with stage("judge + report"):
        from scripts.evaluation.reporting.report import write_report

        baseline = None
        if settings.real:
            zero_shot_judge = judge_cfg.model_copy(
                update={"candidates_dir": paths.candidates_dir(judge_cfg.candidates_dir, zero_shot=True)})
            baseline_dir, baseline_summary = run_judge(zero_shot_judge, "validation",
                                                       run_id=paths.judge_run_prefix("validation", zero_shot=True))
            baseline = baseline_dir.name
            result.zero_shot = _headline(baseline_summary)
            result.artifacts["zero-shot judge run"] = baseline_dir
        judge_dir, summary = run_judge(judge_cfg, "validation", run_id="validation_fine_tuned" if settings.real else None)
        write_report(judge_cfg.output_dir, judge_dir.name, where.eval_report, baseline_id=baseline,
                     cfg=judge_cfg.report)
        result.artifacts["judge run"] = judge_dir
        result.artifacts["report"] = where.eval_report
        result.headline = _headline(summary)
    with stage("export"):
        from scripts.packaging.config import PackageConfig
        from scripts.packaging.export import export_bundle

        bundle = export_bundle(load_config(configs["package.yaml"], PackageConfig), force=True)
        result.artifacts["bundle"] = bundle.path
    with stage("project tokens"):
        from scripts.ops.config import OpsConfig
        from scripts.ops.projection import project_tokens, write_projection

        ops = load_config(configs["ops.yaml"], OpsConfig).resolved()
        json_path, _ = write_projection(project_tokens(ops), ops.output_dir)
        result.artifacts["token projection"] = json_path
    result.artifacts["configs"] = where.configs_dir
    return result


def _generate(cfg, settings: DemoSettings, say: Callable[[str], None], result: DemoResult | None = None) -> Path:
    from scripts.evaluation.generation.generate import generate_candidates

    generated = generate_candidates(cfg, "validation", limit=settings.eval_limit or None)
    say(f"  {generated.written} candidates, valid {generated.valid_rate:.0%} (parse against the schema: "
        f"constrained decoding guarantees it), {generated.truncated} closed early at a bound, model "
        f"{generated.model}, engine {generated.engine}")
    if result is not None:
        result.closed_early[generated.model] = (generated.truncated, generated.written)
    for warning in generated.warnings:
        say(f"  warning: {warning}")
    return generated.path


def _headline(summary: JudgeSummary) -> list[str]:
    """Validity and nav accuracy next to the majority-class baseline of the judged examples."""
    lines = []
    for task, t in summary.tasks.items():
        validity = t.json_validity
        if t.kind == "classification":
            m = t.classification
            majority = _majority_share(m)
            lines.append(f"{task}: accuracy {m['accuracy']:.1%} (majority-class baseline {majority:.1%}), "
                         f"valid {validity:.0%}, n={t.n}")
        else:
            m = t.metrics
            extra = "".join(f", {label} {m[key]:.1%}" for key, label in (
                ("example_accuracy", "exact match"), ("hallucination_rate", "hallucination")) if m.get(key) is not None)
            lines.append(f"{task}: slot accuracy {m['slot_accuracy']:.1%}{extra}, valid {validity:.0%}, n={t.n}")
    return lines


def _majority_share(metrics: dict) -> float:
    """Accuracy of always answering the most common reference label."""
    support = [sum(row.values()) for row in metrics["confusion"].values()]
    return max(support) / sum(support) if sum(support) else 0.0


class _Stage:
    def __init__(self, name: str, result: DemoResult, say: Callable[[str], None]):
        self.name, self.result, self.say = name, result, say

    def __enter__(self):
        self.start = time.perf_counter()
        self.say(f"== {self.name}")
        return self

    def __exit__(self, *exc_info):
        self.result.seconds[self.name] = time.perf_counter() - self.start
        if exc_info[0] is None:
            self.say(f"  done in {self.result.seconds[self.name]:.1f}s")
