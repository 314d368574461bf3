"""`fab train.init-tiny` + `configs/training_tiny.yaml` through the real entry point."""

import json
import shutil

import pytest
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer

from scripts.config import REPO_ROOT
from tests.conftest import fab

pytestmark = pytest.mark.integration


def test_init_tiny_then_train_tiny_config(tmp_path):
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    env = {"DATASET_DB_PATH": str(tmp_path / "raw.duckdb"), "HF_HUB_OFFLINE": "1"}
    for step in (["dataset.sample", "--rows", "300"], ["dataset.clean"], ["dataset.split"]):
        fab(tmp_path, *step, env=env, check=True)
    out = fab(tmp_path, "train.init-tiny", env=env, check=True).stdout
    assert "tokenizer from data/processed/v2/splits/train.jsonl" in out.replace("\n", "")
    tiny = tmp_path / "models/tiny-gemma3"
    config = AutoConfig.from_pretrained(tiny)
    assert config.model_type == "gemma3_text" and config.layer_types == ["sliding_attention", "full_attention"]
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    assert tokenizer.chat_template and tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id

    out = fab(tmp_path, "train.run", "--config", "configs/training_tiny.yaml", "--max-steps", "4", env=env,
              timeout=600, check=True).stdout
    assert "backend: hf" in out
    run_dir = next((tmp_path / "models/runs").iterdir())
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert metrics and all(isinstance(m["loss"], float) for m in metrics)
    with safe_open(run_dir / "adapter/adapter_model.safetensors", "pt") as f:
        assert any("lora_B" in key for key in f.keys())
    snapshot = (run_dir / "config.yaml").read_text()
    assert "max_seq_length: 131072" in snapshot and "tiny-gemma3" in snapshot
