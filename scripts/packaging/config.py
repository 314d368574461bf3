"""Typed `configs/package.yaml`: which run to bundle, the parity gates, the vLLM settings of the bundle.

    from scripts.config import load_config
    from scripts.packaging.config import PackageConfig
    cfg = load_config("configs/package.yaml", PackageConfig).resolved()
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from scripts.config import StrictModel
from scripts.dataset.config import WorkspaceSettings

GENERATION_PROMPT_TOKENS = 8  # tokens kept from the end of a cut prompt: "<end_of_turn>\n<start_of_turn>model\n"


class ParitySettings(StrictModel):
    prompts: int = Field(default=4, gt=0)
    max_prompt_tokens: int = Field(default=1024, gt=GENERATION_PROMPT_TOKENS)
    tolerance: float = Field(default=1e-3, gt=0)
    max_new_tokens: int = Field(default=24, gt=0)


class PackageDataSettings(WorkspaceSettings):
    split: str = "validation"


class VllmSettings(StrictModel):
    max_model_len: int = Field(default=131072, gt=0)
    structured_outputs_backend: Literal["xgrammar", "guidance"] = Field(
        default="xgrammar", description="engine-level backend; `auto` rejects disable_any_whitespace"
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    cpu_kv_cache_gib: float = Field(
        default=4.0, gt=0, description="vllm on CPU: GiB of RAM for the KV cache; one 131072-token sequence "
                                       "of the 270M model takes ~2.3 GiB in bf16")
    check_pages: int = Field(default=4, ge=0, description="validation pages the export's vLLM check answers")


class PackageConfig(StrictModel):
    adapter: str = "latest"
    runs_dir: Path | None = Field(default=None, description="where `latest` looks; null: the workspace's models/runs")
    base: str | None = None
    name: str | None = None
    dtype: Literal["bf16", "fp32"] = "bf16"
    parity: ParitySettings = ParitySettings()
    data: PackageDataSettings = PackageDataSettings()
    vllm: VllmSettings = VllmSettings()
    judge_dir: Path | None = Field(default=None, description="its newest summary.json goes into the manifest and "
                                   "model card; null: the workspace's reports/judge")
    max_bundle_gib: float = Field(default=2.0, gt=0)
    eval_config: Path = Field(
        default=Path("configs/eval.yaml"),
        description="its schema_bounds go into structured_outputs.json, so vLLM allows what eval.generate did",
    )

    def resolved(self) -> PackageConfig:
        """This config with the paths it leaves to the workspace filled in (runs_dir, judge_dir)."""
        workspace = self.data.workspace()
        return self.model_copy(update={"runs_dir": self.runs_dir or workspace.runs_dir,
                                       "judge_dir": self.judge_dir or workspace.judge_dir})
