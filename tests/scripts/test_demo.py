"""scripts.demo: the demo is a workspace of its own, so nothing of it reaches a user's stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts.config import REPO_ROOT, UserError, load_config
from scripts.demo import DemoSettings, write_configs
from scripts.evaluation.generation.config import EvalConfig
from scripts.model.loading import resolve_weights
from scripts.training.config import TrainingConfig


@pytest.mark.parametrize("real", [False, True])
def test_a_demo_run_is_never_the_users_latest(tmp_path, monkeypatch, real):
    """After `fab demo`, a plain `fab eval.generate` (adapter: latest) must not pick the demo's run."""
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    settings = DemoSettings.for_real() if real else DemoSettings()
    configs = write_configs(settings)
    training = load_config(configs["training"], TrainingConfig).resolved()
    run = training.output.runs_dir / training.output.run_id  # where the demo's train.run writes its adapter
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base"}))

    user = load_config(Path("configs/eval.yaml"), EvalConfig).resolved()
    with pytest.raises(UserError, match="no trained run"):
        resolve_weights(user.model.adapter, user.model.runs_dir)
    # every path of the demo lies in its one folder: removing it removes all of it
    demo = settings.workspace.root
    for path in (training.data.data_paths().root, training.output.runs_dir,
                 load_config(configs["eval.yaml"], EvalConfig).resolved().output_dir):
        assert path.is_relative_to(demo), path
