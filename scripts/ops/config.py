"""Typed `configs/ops.yaml`: daily volumes, the strong model's prices, the small model and the judge's
monitoring sample, for the token projection.

    from scripts.config import load_config
    from scripts.ops.config import OpsConfig
    cfg = load_config("configs/ops.yaml", OpsConfig).resolved()
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from scripts.config import StrictModel
from scripts.dataset.config import WorkspaceSettings


class PriceSettings(StrictModel):
    name: str = ""
    usd_per_1m_input: float = Field(ge=0)
    usd_per_1m_output: float = Field(ge=0)


class SmallModelSettings(StrictModel):
    usd_per_1m_tokens: float = Field(default=0.0, ge=0)
    escalation_rate: dict[str, float] = Field(default_factory=dict)


class JudgeSettings(StrictModel):
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    overhead_tokens: int = Field(default=400, ge=0)
    output_tokens: int = Field(default=60, ge=0)
    usd_per_1m_input: float = Field(default=0.1, ge=0)
    usd_per_1m_output: float = Field(default=0.4, ge=0)


class OpsConfig(WorkspaceSettings):
    stats_file: Path | None = Field(default=None, description="dataset.stats' report; null: the workspace's "
                                    "data/processed/<schema_version>/stats.json (another version's is an error)")
    budget_tokens_per_day: int = Field(default=10_000_000, gt=0)
    output_dir: Path | None = Field(default=None, description="token_projection.{json,md}; null: the "
                                    "workspace's reports/ops")
    volumes_per_day: dict[str, int]
    strong_model: PriceSettings
    small_model: SmallModelSettings = SmallModelSettings()
    judge: JudgeSettings = JudgeSettings()

    def resolved(self) -> OpsConfig:
        """This config with the paths it leaves to the workspace filled in (stats_file, output_dir)."""
        workspace = self.workspace()
        stats = workspace.check_version(self.stats_file, "stats_file") if self.stats_file else workspace.data.stats
        return self.model_copy(update={"stats_file": stats, "output_dir": self.output_dir or workspace.ops_dir})
