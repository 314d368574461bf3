"""Proof that training learns: 16 examples memorised, reproduced by greedy decoding through encode_chat."""

import shutil

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripts.chat import encode_chat, prompt_messages
from scripts.contracts import CleanRecord, read_jsonl
from scripts.model.gemma3 import apply_rope_scaling, end_of_turn_eos_ids
from scripts.training.config import TrainingDataSettings
from scripts.training.run import run_training
from tests.scripts.training.conftest import tiny_config


def _sixteen_example_splits(tiny_root, tmp_path):
    """The real splits, with train.jsonl cut to 16 records (manifest sha256 updated to match)."""
    from scripts.contracts import SplitManifest, file_entry, write_model_json

    shutil.copytree(tiny_root / "processed", tmp_path / "processed")
    splits = TrainingDataSettings(processed_dir=tmp_path / "processed").data_paths().splits_dir
    lines = (splits / "train.jsonl").read_text().splitlines()[:16]
    (splits / "train.jsonl").write_text("\n".join(lines) + "\n")
    manifest = SplitManifest.model_validate_json((splits / "manifest.json").read_bytes())
    manifest.files["train.jsonl"] = file_entry(splits / "train.jsonl", rows=16)
    write_model_json(splits / "manifest.json", manifest)
    return [r for r in read_jsonl(splits / "train.jsonl", CleanRecord)]


def test_tiny_model_memorises_16_examples(tiny_root, tmp_path):
    records = _sixteen_example_splits(tiny_root, tmp_path)
    cfg = tiny_config(tmp_path, tmp_path / "runs", model={"name_or_path": str(tiny_root / "tiny-gemma3")},
                      lora={"r": 16, "alpha": 32},
                      train={"max_steps": 100, "per_device_batch_size": 16, "lr": 3e-2, "scheduler": "constant",
                             "logging_steps": 20, "save_steps": 1000})
    result = run_training(cfg, run_id="overfit", say=lambda *_: None)
    assert result.train_examples == 16 and result.final_loss < 0.3

    tok = AutoTokenizer.from_pretrained(result.adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_root / "tiny-gemma3", dtype=torch.float32)
    apply_rope_scaling(base, 4.0, 131072)
    model = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    exact = 0
    for record in records:
        ids = torch.tensor([encode_chat(tok, prompt_messages(record))])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                             do_sample=False, eos_token_id=end_of_turn_eos_ids(tok), pad_token_id=tok.pad_token_id)
        exact += tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == record.target
    assert exact >= 15, f"{exact}/16 reproduced"
