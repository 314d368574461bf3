"""Shared builders for the evaluation tests: a tiny model, a split file, a LoRA adapter, configs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from scripts.config import REPO_ROOT
from scripts.contracts import TARGET_KEY_ORDER, CleanRecord, canonical_target
from scripts.paths import SCHEMA_VERSION

NAV_SYSTEM = "Answer YES if the page is a navigation page, otherwise NO."
PRODUCT_SYSTEM = "Return one JSON object with the catalog keys; null when absent."
# The product task's slots in catalog order (configs/datasets.yaml `slots:`; a test checks).
SLOTS = ("title", "brand", "price", "original_price", "currency", "availability", "sku", "categories",
         "rating", "review_count", "image_url")
# The tiny tokenizer's corpus. Its JSON line keeps the sorted key order of schema v1 on purpose: only the
# vocabulary depends on it, and a fixed corpus keeps the session's tiny model (and every random output the
# tests were written against) the same.
TOKENIZER_TEXTS = [
    "YES NO navigation listing category page product title brand price currency EUR USD",
    '{"availability":"in stock","brand":"Acme","categories":["Shoes","Men"],"currency":"EUR",'
    '"image_url":"https://shop.example/img/1.jpg","original_price":129.9,"price":99.5,"rating":4.5,'
    '"review_count":12,"sku":"AB-12","title":"Trail \\"12\\" runner"}',
    "<div><h1>Trail runner</h1><span class=price>99,50 €</span><a href=/men/shoes>Shoes</a></div>",
    "<ul><li><a href=/c/1>Category one</a></li><li><a href=/c/2>Category two</a></li></ul>",
] * 4


def records(n_nav: int = 3, n_product: int = 3) -> list[CleanRecord]:
    """Clean records of both tasks with prompts of different lengths (to exercise left padding)."""
    out = []
    for i in range(n_nav):
        prompt = "<ul>" + "<li><a href=/c/1>Category one</a></li>" * (i + 1) + "</ul>"
        out.append(_record(f"nav-{i}", "navpage_classifier", "classification", NAV_SYSTEM, prompt, "YES"))
    for i in range(n_product):
        prompt = "<div><h1>Trail runner</h1>" + "<span class=price>99,50 €</span>" * (i + 1) + "</div>"
        target = canonical_target(dict.fromkeys(SLOTS), list(SLOTS))
        out.append(
            _record(f"prod-{i}", "productpage_extractor", "extraction", PRODUCT_SYSTEM, prompt, target)
        )
    return out


def _record(id_, task, kind, system, prompt, target) -> CleanRecord:
    return CleanRecord(id=id_, task=task, kind=kind, system_prompt=system, prompt=prompt, target=target,
                       domain="shop.example", schema_version=SCHEMA_VERSION, prompt_chars=len(prompt))


def write_split(processed_dir: Path, split: str, rows: list[CleanRecord], manifest: bool = False) -> Path:
    """A split file of the current schema version; ``manifest``: with a (minimal) split manifest beside it."""
    path = processed_dir / SCHEMA_VERSION / "splits" / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    if manifest:
        (path.parent / "manifest.json").write_text(json.dumps(
            {"schema_version": SCHEMA_VERSION, "target_key_order": TARGET_KEY_ORDER}) + "\n")
    return path


def write_datasets_config(path: Path, processed_dir: Path) -> Path:
    """The repo's task registry with processed_dir pointed at a temp dir."""
    raw = yaml.safe_load((REPO_ROOT / "configs/datasets.yaml").read_text())
    raw["processed_dir"] = str(processed_dir)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # sorted, the slots would lose their catalog order
    return path


def make_adapter(base_dir: Path, adapter_dir: Path, seed: int = 1) -> Path:
    """A LoRA adapter on the tiny model whose lora_B weights are perturbed (so it differs from base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(adapter_dir)
    return adapter_dir


def eval_config_dict(tmp: Path, adapter: str, datasets_config: Path, **decoding) -> dict:
    return {
        "model": {"adapter": adapter, "runs_dir": str(tmp / "runs")},
        "data": {"datasets_config": str(datasets_config)},
        "decoding": {"batch_size": 2, "max_new_tokens": {"classification": 4, "extraction": 400}, **decoding},
        "schema_bounds": {"max_string_tokens": 4, "max_list_items": 2},
        "output_dir": str(tmp / "model_outputs"),
    }
