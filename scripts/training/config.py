"""Typed `configs/training.yaml` (and `training_tiny.yaml`): one pydantic model, unknown keys are errors.

    from scripts.config import load_config
    from scripts.training.config import TrainingConfig
    cfg = load_config("configs/training.yaml", TrainingConfig)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from scripts.config import StrictModel
from scripts.dataset.config import WorkspaceSettings
from scripts.model.config import ModelSettings
from scripts.paths import ProcessedData, Workspace


class LoraSettings(StrictModel):
    r: int = Field(default=16, gt=0, description="adapter rank")
    alpha: int = Field(default=32, gt=0, description="scaling = alpha / r")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
    )


TrainMethod = Literal["lora", "full"]


class TrainSettings(StrictModel):
    method: TrainMethod = Field(
        default="lora",
        description="lora: a LoRA adapter (the `lora` section) on the frozen base, saved as adapter/; "
        "full: every weight trains (embeddings stay tied to the LM head), saved as model/; "
        "the `lora` section is unused by full",
    )
    optimizer: str = Field(default="adamw_torch", description="transformers `optim` name")
    lr: float = Field(default=3e-4, gt=0)
    scheduler: str = Field(default="cosine", description="transformers `lr_scheduler_type`")
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0, description="share of total steps")
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    per_device_batch_size: int = Field(default=1, gt=0, description="sequences per device per micro-step")
    grad_accum: int = Field(default=2, gt=0, description="micro-steps per optimiser step")
    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="optimiser steps; overrides epochs when set")
    save_steps: int = Field(default=200, gt=0, description="optimiser steps between checkpoints")
    save_total_limit: int | None = Field(default=3, gt=0, description="checkpoints kept")
    logging_steps: int = Field(default=10, gt=0, description="optimiser steps between metrics.jsonl lines")
    gradient_checkpointing: bool = Field(default=True, description="needed at 128k context")
    seed: int = 42


class TrainingDataSettings(WorkspaceSettings):
    processed_dir: Path | None = Field(default=None, description="null: the workspace's data/processed")
    truncation: Literal["drop", "truncate_prompt_left"] = Field(
        default="drop",
        description="examples over max_seq_length: drop them (counted) or cut the prompt's oldest tokens",
    )

    def workspace(self) -> Workspace:
        workspace = super().workspace()
        if self.processed_dir is None:
            return workspace
        return Workspace(workspace.root, workspace.schema_version, self.processed_dir)

    def data_paths(self) -> ProcessedData:
        return self.workspace().data


class OutputSettings(StrictModel):
    runs_dir: Path | None = Field(default=None, description="null: the workspace's models/runs")
    run_id: str | None = Field(default=None, description="default: UTC timestamp at prepare time")


class LossSettings(StrictModel):
    chunk_size: int = Field(default=4096, gt=0, description="tokens per LM-head tile of the chunked cross-entropy")


class PackingSettings(StrictModel):
    enabled: bool = Field(default=False, description="several examples per micro-batch, concatenated into one "
                          "row without padding: positions restart per example and no example attends to another. "
                          "configs/training.yaml turns it on; false here reads a run snapshot written before "
                          "the key existed as what it was, unpacked")
    max_tokens: int = Field(default=4096, gt=0, description="tokens per packed micro-batch row; an example "
                            "longer than this trains alone, whole (packing never truncates)")


class TrainingConfig(StrictModel):
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    model: ModelSettings = ModelSettings()
    lora: LoraSettings = LoraSettings()
    train: TrainSettings = TrainSettings()
    data: TrainingDataSettings = TrainingDataSettings()
    output: OutputSettings = OutputSettings()
    loss: LossSettings = LossSettings()
    packing: PackingSettings = PackingSettings()

    @property
    def runs_dir(self) -> Path:
        return self.output.runs_dir or self.data.workspace().runs_dir

    def resolved(self) -> TrainingConfig:
        """This config with the paths it derives from its workspace written in: what a run's config.yaml
        records, so eval and export read where it trained whatever the datasets config says later."""
        workspace = self.data.workspace()
        data = self.data.model_copy(update={"schema_version": workspace.schema_version,
                                            "processed_dir": workspace.processed_dir})
        return self.model_copy(update={"data": data, "output": self.output.model_copy(
            update={"runs_dir": self.output.runs_dir or workspace.runs_dir})})

    @model_validator(mode="after")
    def _packing_fits(self) -> TrainingConfig:
        if not self.packing.enabled:
            return self
        if self.train.per_device_batch_size != 1:
            raise ValueError(f"packing.enabled: a micro-batch is one packed row of up to packing.max_tokens "
                             f"tokens, so train.per_device_batch_size must be 1, not "
                             f"{self.train.per_device_batch_size} (raise packing.max_tokens instead)")
        if self.packing.max_tokens > self.model.max_seq_length:
            raise ValueError(f"packing.max_tokens {self.packing.max_tokens} exceeds model.max_seq_length "
                             f"{self.model.max_seq_length}: a packed row must be no longer than the longest example")
        return self
