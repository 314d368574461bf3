"""Training fixtures: clean splits built by the real dataset stage, a tiny Gemma 3, a tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.config import REPO_ROOT, load_config
from scripts.dataset.clean import clean_dataset
from scripts.dataset.config import DatasetsConfig
from scripts.dataset.split import split_dataset
from scripts.model.tiny import build_tiny_gemma
from scripts.training.config import TrainingConfig
from tests.conftest import write_raw_db

PRODUCTS = ["Kaffeemühle", "Wasserkocher", "Toaster", "Mixer", "Föhn", "Lampe", "Uhr", "Radio"]


def training_rows(n_domains: int = 12, per_domain: int = 4) -> list[dict]:
    """Short, varied rows of both tasks, several per shop domain."""
    rows = []
    for d in range(n_domains):
        for k in range(per_domain):
            i = d * per_domain + k
            url = f"https://shop{d}.example/p{k}"
            name = f"{PRODUCTS[i % len(PRODUCTS)]} {i}"
            if k % 2:
                rows.append({"id": f"n{i:03d}", "task": "navpage_classifier",
                             "prompt_text": f"<ul><li>{name}</li></ul> {url}",
                             "response_strong": "YES" if (d + k) % 3 else "NO", "metadata": {"url": url}})
            else:
                rows.append({"id": f"p{i:03d}", "task": "productpage_extractor",
                             "prompt_text": f"<h1>{name}</h1><b>{i},99 €</b> {url}",
                             "response_strong": '{"title": "%s", "price": %d.99}' % (name, i),
                             "metadata": {"url": url}})
    return rows


def make_splits(root: Path, rows: list[dict]) -> DatasetsConfig:
    dcfg = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig,
                       {"processed_dir": str(root / "processed")})
    clean_dataset(write_raw_db(root / "raw.duckdb", rows), dcfg, dcfg.schema_version)
    split_dataset(dcfg)
    return dcfg


def corpus(rows: list[dict]) -> list[str]:
    texts = [r["prompt_text"] for r in rows] + [r["response_strong"] for r in rows]
    texts += [spec.system_prompt for spec in load_config(
        REPO_ROOT / "configs/datasets.yaml", DatasetsConfig).tasks.values()]
    return texts * 3


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Session-wide: splits under <root>/processed/<schema_version>/splits, tiny model at <root>/tiny-gemma3."""
    root = tmp_path_factory.mktemp("training")
    rows = training_rows()
    make_splits(root, rows)
    build_trainable_tiny_gemma(root / "tiny-gemma3", corpus(rows))
    return root


@pytest.fixture(scope="session")
def full_run(tiny_root, tmp_path_factory) -> Path:
    """Session-wide: a finished full fine-tune (train.method full, 6 steps) of the tiny model on tiny_root's
    splits, as train.run leaves it: <runs>/full/{config.yaml, model/, checkpoints/, metrics.jsonl, ...}.
    Shared: tests read it."""
    from scripts.training.run import run_training

    runs = tmp_path_factory.mktemp("full-runs")
    cfg = tiny_config(tiny_root, runs, train={"method": "full", "lr": 2e-3, "max_steps": 6, "save_steps": 6})
    run_training(cfg, run_id="full", say=lambda *_: None)
    return runs / "full"


def build_trainable_tiny_gemma(path: Path, texts: list[str]) -> Path:
    """``build_tiny_gemma`` with ``embedding_scale=10`` (std 0.2), so LoRA can move the logits."""
    return build_tiny_gemma(path, texts, vocab_size=1024, embedding_scale=10.0)


def tiny_config(root: Path, runs_dir: Path, **sections) -> TrainingConfig:
    """A CPU config on the tiny model; ``sections`` update whole sub-dicts, e.g. train={...}. Packing is
    off (batches of 4); a packed config needs ``train={"per_device_batch_size": 1}`` too."""
    raw = yaml.safe_load((REPO_ROOT / "configs/training.yaml").read_text())
    raw["backend"] = "hf"
    raw["model"]["name_or_path"] = str(root / "tiny-gemma3")
    raw["data"]["processed_dir"] = str(root / "processed")
    raw["output"]["runs_dir"] = str(runs_dir)
    raw["loss"]["chunk_size"] = 16
    raw["lora"].update(r=8, alpha=16, dropout=0.0)
    raw["train"].update(lr=2e-2, per_device_batch_size=4, grad_accum=1, max_steps=4, save_steps=100,
                        logging_steps=1, gradient_checkpointing=False, warmup_ratio=0.0, seed=0)
    raw["packing"]["enabled"] = False  # padded batches of 4 unless a test packs (packing={"enabled": True, ...})
    for key, value in sections.items():
        if isinstance(value, dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return TrainingConfig.model_validate(raw)


def write_config(path: Path, cfg: TrainingConfig) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
