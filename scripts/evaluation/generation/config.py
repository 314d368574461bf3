"""Typed `configs/eval.yaml` (one pydantic model, unknown keys are errors).

    from scripts.config import load_config
    from scripts.evaluation.generation.config import EvalConfig
    cfg = load_config("configs/eval.yaml", EvalConfig, {"model.adapter": "models/runs/RUN"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from scripts.config import StrictModel
from scripts.dataset.config import WorkspaceSettings
from scripts.model.config import AttnImplementation, flash_attention_alias
from scripts.paths import Workspace
from scripts.serving.engines import EngineSettings


class EvalModelSettings(StrictModel):
    adapter: str = Field(
        default="latest",
        description="PEFT adapter dir, a run dir models/runs/<id> (its adapter/), or `latest` = newest run",
    )
    runs_dir: Path | None = Field(default=None, description="where `latest` and --run-id look; null: the "
                                  "workspace's models/runs")
    base: str | None = Field(
        default=None, description="HF id or local dir overriding the adapter's base_model_name_or_path"
    )
    merged: Path | None = Field(
        default=None, description="merged export dir (models/export/<name>); when set, adapter is ignored"
    )
    zero_shot: bool = Field(
        default=False, description="the base model alone (`eval.generate --base`): the zero-shot baseline; "
        "base = model.base, else the adapter's base; candidates go to <output_dir>/zero_shot/"
    )
    dtype: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 on GPU, fp32 on CPU (Gemma 3 overflows in fp16)"
    )
    attn_implementation: AttnImplementation = Field(
        default="auto", description="auto: flash_attention_2 on a GPU with flash-attn, else windowed_sdpa "
        "(memory linear in prompt length); sdpa and eager build a seq x seq mask per prompt; "
        "`use_flash_attention_2: true` is accepted as an alias of flash_attention_2"
    )

    _flash_attention_alias = model_validator(mode="before")(flash_attention_alias)


class EvalDataSettings(WorkspaceSettings):
    pass


class DecodingSettings(StrictModel):
    constrained: bool = Field(default=True, description="xgrammar: labels only / JSON valid for the slots")
    greedy: bool = Field(default=True, description="do_sample=False; false samples with the model's config")
    batch_size: int = Field(default=8, gt=0, description="prompts per generate call, length-sorted")
    max_new_tokens: dict[Literal["classification", "extraction"], int] = Field(
        default_factory=lambda: {"classification": 4, "extraction": 512},
        description="tokens per answer, stop token included",
    )

    @model_validator(mode="after")
    def _positive(self) -> DecodingSettings:
        if any(n <= 0 for n in self.max_new_tokens.values()):
            raise ValueError("max_new_tokens must be > 0")
        return self

    def max_new_tokens_for(self, kind: str) -> int:
        defaults = {"classification": 4, "extraction": 512}
        return self.max_new_tokens.get(kind, defaults[kind])


class SchemaBounds(StrictModel):
    """Bounds of the constrained JSON: without them a weak model writes digits until max_new_tokens."""

    max_string_tokens: int = Field(
        default=128, gt=0, description="tokens a string value may take; then the next token must close it"
    )
    max_list_items: int = Field(default=32, gt=0, description="items per string_list slot")
    number_minimum: float = Field(default=0.0, description="inclusive; prices, ratings are >= 0")
    number_maximum: float = Field(default=1e9, description="inclusive; xgrammar also caps decimals at 6")
    integer_minimum: int = Field(default=0, description="inclusive; counts are >= 0")
    integer_maximum: int = Field(default=1_000_000_000, description="inclusive")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_string_length" in data:
            raise ValueError(
                "max_string_length (characters) is now max_string_tokens (tokens per string value, "
                "default 128): a character bound made xgrammar check the whole vocabulary at every step"
            )
        return data

    @model_validator(mode="after")
    def _ordered(self) -> SchemaBounds:
        if self.number_minimum > self.number_maximum or self.integer_minimum > self.integer_maximum:
            raise ValueError("schema minimum must be <= maximum")
        return self


class EvalConfig(StrictModel):
    model: EvalModelSettings = EvalModelSettings()
    data: EvalDataSettings = EvalDataSettings()
    engine: EngineSettings = EngineSettings()
    decoding: DecodingSettings = DecodingSettings()
    schema_bounds: SchemaBounds = SchemaBounds()
    output_dir: Path | None = Field(
        default=None, description="<split>_candidates.jsonl goes here; null: the workspace's reports/model_outputs"
    )

    def workspace(self) -> Workspace:
        return self.data.workspace()

    def resolved(self) -> EvalConfig:
        """This config with the paths it leaves to the workspace filled in (model.runs_dir, output_dir)."""
        workspace = self.workspace()
        model = self.model.model_copy(update={"runs_dir": self.model.runs_dir or workspace.runs_dir})
        return self.model_copy(update={"model": model, "output_dir": self.output_dir or workspace.candidates_dir})
