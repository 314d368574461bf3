"""Typed `configs/judge_slots.yaml`: slot scorers, the LLM judge, escalation, acceptance, and the
report section (``ReportConfig``, what ``scripts.evaluation.reporting`` shows of a run).

    from scripts.config import load_config
    from scripts.evaluation.judging.config import JudgeConfig
    cfg = load_config("configs/judge_slots.yaml", JudgeConfig)

Slot scoring is chosen in three layers, later wins: the scorer for the slot's
JSON type (`type_defaults`), the per-slot entry in `slots`, then the keys an
example's own `slot_specs` sets (`scorer`, `tolerance`, `threshold`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from scripts import paths
from scripts.config import StrictModel
from scripts.dataset.config import WorkspaceSettings
from scripts.dataset.config import SlotType

ScorerName = Literal["exact", "numeric", "fuzzy", "set", "llm"]


class SlotRule(StrictModel):
    scorer: ScorerName = "exact"
    tolerance: float = Field(default=0.01, ge=0.0, description="numeric: allowed relative difference")
    absolute_tolerance: float = Field(default=0.0, ge=0.0, description="numeric: allowed absolute difference")
    threshold: float = Field(default=0.85, ge=0.0, le=1.0, description="fuzzy/set: pass at or above this score")
    llm_when: Literal["never", "grey", "not_exact"] = Field(
        default="never",
        description="send to the LLM judge: never; when the score is inside grey_band; whenever not an exact match",
    )
    grey_band: tuple[float, float] = Field(
        default=(0.5, 0.95), description="[low, high): deterministic score counted as undecided"
    )

    @model_validator(mode="after")
    def _band(self) -> SlotRule:
        low, high = self.grey_band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError("grey_band must be [low, high] with 0 <= low <= high <= 1")
        return self


class JudgeSettings(StrictModel):
    model: str = Field(
        default="openrouter/qwen/qwen3-coder-30b-a3b-instruct",
        description="LiteLLM model id; overridden by --judge-model or JUDGE_MODEL",
    )
    prompt_version: str = Field(default="v1", description="part of the cache key; bump when the prompt changes")
    concurrency: int = Field(default=8, gt=0, description="judge calls in flight at once")
    timeout_s: float = Field(default=60.0, gt=0, description="per call")
    max_retries: int = Field(default=4, ge=0, description="retries on 429, 5xx, timeouts, connection errors")
    backoff_base_s: float = Field(default=1.0, ge=0, description="first retry waits this long, then doubles")
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_tokens: int = Field(default=200, gt=0, description="judge output cap; also the cost estimate's output size")
    temperature: float = Field(default=0.0, ge=0.0)
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        default="json_schema", description="ask for a JSON-schema verdict"
    )
    fallback_input_price_per_1k: float = Field(
        default=0.0005, ge=0, description="USD per 1k prompt tokens when LiteLLM has no price for the model"
    )
    fallback_output_price_per_1k: float = Field(
        default=0.0015, ge=0, description="USD per 1k completion tokens when LiteLLM has no price"
    )
    chars_per_token: float = Field(default=3.0, gt=0, description="prompt size estimate for the cost guard (low = safe)")
    max_cost_usd: float | None = Field(default=None, ge=0, description="budget; --max-cost overrides")
    max_value_chars: int = Field(default=2000, gt=0, description="reference/candidate text sent to the judge")


class EscalationSettings(StrictModel):
    target_accuracy: dict[str, float] = Field(
        default_factory=lambda: {"navpage_classifier": 0.98, "productpage_extractor": 0.95},
        description="per task: accuracy the small model must reach on the pages it keeps",
    )
    thresholds: list[float] = Field(
        default_factory=lambda: [0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999],
        min_length=1,
    )
    min_kept: int = Field(default=1, ge=1, description="a threshold must keep at least this many pages")


class TaskAcceptance(StrictModel):
    min: dict[str, float] = Field(default_factory=dict, description="metric -> lowest acceptable value")
    max: dict[str, float] = Field(default_factory=dict, description="metric -> highest acceptable value")


class ReportConfig(StrictModel):
    worst_failures: int = Field(default=10, ge=0, description="failure examples shown per task")
    max_value_chars: int = Field(default=120, gt=0, description="reference/candidate cells are cut to this")
    regressions_shown: int = Field(default=10, ge=0, description="with --baseline: regressed examples listed")
    disagreement_pairs: int = Field(
        default=3, ge=0, description="most frequent (reference -> prediction) pairs listed per extraction slot; "
        "0 hides the pair table",
    )
    disagreement_min_count: int = Field(
        default=2, ge=1, description="a pair is listed once it occurs this often (a repeat is a pattern, one is noise)"
    )
    disagreement_examples: int = Field(default=2, ge=1, description="example ids shown per count or pair")
    pair_value_chars: int = Field(
        default=40, gt=0, description="values longer than this (titles, URLs) and lists are counted, not paired"
    )
    min_n_for_ci: int = Field(
        default=10, ge=1, description="examples (or slot values) below which no 95% interval is shown: a "
        "bootstrap of a handful collapses to a point (n = 1 gives [0%, 0%]) and claims a certainty it lacks",
    )


class JudgeConfig(WorkspaceSettings):
    """``datasets_config`` names the workspace: references from its splits, candidates from its
    reports/model_outputs, runs into its reports/judge; the three paths below override it."""

    candidates_dir: Path | None = Field(default=None, description="eval.generate's output_dir; null: the "
                                        "workspace's reports/model_outputs")
    output_dir: Path | None = Field(default=None, description="one folder per run; null: the workspace's "
                                    "reports/judge")
    cache_path: Path | None = Field(default=None, description="judge verdicts shared by runs; null: "
                                    "<output_dir>/cache.sqlite")
    type_defaults: dict[SlotType, SlotRule] = Field(
        default_factory=lambda: {
            "string": SlotRule(scorer="exact"),
            "number": SlotRule(scorer="numeric"),
            "integer": SlotRule(scorer="numeric", tolerance=0.0),
            "boolean": SlotRule(scorer="exact"),
            "string_list": SlotRule(scorer="set"),
        }
    )
    slots: dict[str, dict[str, SlotRule]] = Field(
        default_factory=dict, description="task -> slot -> rule (overrides type_defaults)"
    )
    judge: JudgeSettings = JudgeSettings()
    escalation: EscalationSettings = EscalationSettings()
    acceptance: dict[str, TaskAcceptance] = Field(default_factory=dict)
    bootstrap_resamples: int = Field(default=1000, ge=0)
    bootstrap_seed: int = 0
    report: ReportConfig = ReportConfig()

    def resolved(self) -> JudgeConfig:
        """This config with the paths it leaves to the workspace filled in."""
        workspace = self.workspace()
        output_dir = self.output_dir or workspace.judge_dir
        return self.model_copy(update={"candidates_dir": self.candidates_dir or workspace.candidates_dir,
                                       "output_dir": output_dir,
                                       "cache_path": self.cache_path or output_dir / paths.JUDGE_CACHE})

    def rule_for(self, task: str, slot: str, slot_type: str | None, example_spec: dict | None = None) -> SlotRule:
        """Type default <- config slot rule <- the example's own slot_specs keys."""
        base = self.slots.get(task, {}).get(slot) or self.type_defaults.get(slot_type or "string") or SlotRule()
        if not example_spec or not isinstance(example_spec, dict):
            return base
        fields = {k: example_spec[k] for k in ("scorer", "tolerance", "threshold") if k in example_spec}
        if not fields:
            return base
        try:
            return SlotRule.model_validate({**base.model_dump(), **fields})
        except ValueError:
            return base  # a malformed per-example spec never breaks a run; the config rule applies
