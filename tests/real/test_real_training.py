"""A few LoRA steps on the real Gemma 3 270M, then its export: the real-size path end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripts.config import REPO_ROOT, load_config
from scripts.dataset.clean import clean_dataset
from scripts.dataset.config import DatasetsConfig
from scripts.dataset.split import split_dataset
from scripts.packaging.config import PackageConfig
from scripts.packaging.export import export_bundle
from scripts.training.config import TrainingConfig
from scripts.training.run import run_training
from tests.conftest import write_raw_db

ITEMS = ["Kaffeemühle", "Wasserkocher", "Toaster", "Stabmixer", "Föhn", "Stehlampe", "Wanduhr", "Radio"]


def short_rows(domains: int = 16) -> list[dict]:
    """One short example per shop, alternating tasks: real prompts are 1-2k tokens, too slow here."""
    rows = []
    for d in range(domains):
        url, name = f"https://laden{d}.example/p/{d}", f"{ITEMS[d % len(ITEMS)]} {d}"
        if d % 2:
            rows.append({"id": f"n{d}", "task": "navpage_classifier", "metadata": {"url": url},
                         "prompt_text": f"URL: {url}\n<ul><li>{name}</li><li>Seite 2</li></ul>",
                         "response_strong": "YES" if d % 4 == 1 else "NO"})
        else:
            rows.append({"id": f"p{d}", "task": "productpage_extractor", "metadata": {"url": url},
                         "prompt_text": f"URL: {url}\n<h1>{name}</h1><span>{d},99 €</span>",
                         "response_strong": json.dumps({"title": name, "price": d + 0.99, "currency": "EUR"})})
    return rows


@pytest.fixture(scope="module")
def real_run(real_gemma, tmp_path_factory):
    root = tmp_path_factory.mktemp("real-train")
    datasets = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig, {"processed_dir": str(root / "data")})
    clean_dataset(write_raw_db(root / "raw.duckdb", short_rows()), datasets, datasets.schema_version)
    split_dataset(datasets)
    (root / "datasets.yaml").write_text(yaml.safe_dump(datasets.model_dump(mode="json"), sort_keys=False))
    raw = yaml.safe_load((REPO_ROOT / "configs/training.yaml").read_text())
    raw.update(backend="hf")
    raw["model"].update(name_or_path=str(real_gemma), attn_implementation="windowed_sdpa")
    raw["data"].update(processed_dir=str(root / "data"))
    raw["output"].update(runs_dir=str(root / "runs"), run_id="real")
    raw["loss"]["chunk_size"] = 512
    raw["lora"].update(r=8, alpha=16, dropout=0.0)
    raw["packing"]["enabled"] = False
    # the whole train split is one batch, so each logged loss is on the same fixed batch
    raw["train"].update(lr=1e-3, per_device_batch_size=16, grad_accum=1, max_steps=3, save_steps=100,
                        logging_steps=1, gradient_checkpointing=False, warmup_ratio=0.0)
    result = run_training(TrainingConfig.model_validate(raw), say=lambda _msg: None)
    return root, result, Path(result.run_dir), Path(result.adapter_dir)


def test_lora_steps_on_the_real_model_lower_the_loss_and_touch_only_lora(real_run, real_gemma):
    root, result, run_dir, adapter_dir = real_run
    assert result.global_step == 3 and result.train_examples >= 8
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 3
    # a fresh LoRA on the base model starts high: it has never ended an answer with <end_of_turn>
    assert losses[0] > 3 and losses[-1] < 0.6 * losses[0], losses
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as adapter:
        keys = list(adapter.keys())
        assert keys and all("lora_A" in k or "lora_B" in k for k in keys)  # base weights are not in it
        assert all(adapter.get_tensor(k).abs().max() > 0 for k in keys if "lora_B" in k)  # B starts at 0
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(real_gemma) and config["r"] == 8


def test_export_of_a_real_adapter_passes_its_gates_and_reloads_identically(real_run, real_gemma):
    root, result, run_dir, adapter_dir = real_run
    cfg = PackageConfig.model_validate({
        "adapter": str(run_dir), "runs_dir": str(root / "runs"), "dtype": "bf16",
        "data": {"datasets_config": str(root / "datasets.yaml")}, "judge_dir": str(root / "judge"),
        "parity": {"prompts": 1, "max_new_tokens": 8}, "vllm": {"check_pages": 0}})
    exported = export_bundle(cfg, root / "export")
    assert exported.parity.greedy_identical and exported.parity.reload_identical
    assert exported.parity.max_abs_logit_diff <= exported.parity.tolerance
    bundle = exported.path
    config = json.loads((bundle / "config.json").read_text())
    assert config["rope_parameters"]["full_attention"] == {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6}
    assert config["max_position_embeddings"] == 131072 and "quantization_config" not in config
    assert 500e6 < exported.size_bytes < 600e6  # bf16 weights of 268M parameters + tokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundle)
    assert tokenizer("The capital of France is").input_ids == [2, 818, 5279, 529, 7001, 563]
    model = AutoModelForCausalLM.from_pretrained(bundle, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "URL: https://x.example/\n<h1>Radio 3</h1>"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    first = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    again = AutoModelForCausalLM.from_pretrained(bundle, dtype=torch.float32).generate(
        **prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(first, again) and first.shape[1] > prompt["input_ids"].shape[1]
