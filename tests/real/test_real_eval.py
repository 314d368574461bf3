"""The real vocabulary end to end: exact token counts, and constrained answers of the untrained base model."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from scripts.config import REPO_ROOT, load_config
from scripts.contracts import CleanRecord, read_jsonl
from scripts.dataset.clean import clean_dataset
from scripts.dataset.config import DatasetsConfig
from scripts.dataset.split import split_dataset
from scripts.dataset.stats import compute_stats
from scripts.evaluation.generation.answer_schema import validate_extraction
from scripts.evaluation.generation.config import EvalConfig
from scripts.evaluation.generation.generate import generate_candidates
from scripts.sample_data import generate_sample


@pytest.fixture(scope="module")
def sample_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-eval")
    datasets = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig, {"processed_dir": str(root / "data")})
    generate_sample(root / "raw.duckdb", rows=120, seed=7, dirty_rate=0.0)
    clean_dataset(root / "raw.duckdb", datasets, datasets.schema_version)
    split_dataset(datasets)
    # shortest pages first, so `--limit 2` decodes the shortest page of each task: prefilling a 3k-token
    # page costs tens of seconds per engine on 2 CPU cores and proves nothing a short one does not
    validation = datasets.data_paths().split_file("validation")
    lines = validation.read_text().splitlines()
    validation.write_text("".join(f"{line}\n" for line in sorted(lines, key=lambda line: len(json.loads(line)["prompt"]))))
    (root / "datasets.yaml").write_text(json.dumps(datasets.model_dump(mode="json")))
    return root, datasets


def test_stats_count_exact_tokens_with_the_imported_tokenizer(sample_splits, real_gemma):
    _, datasets = sample_splits
    report = compute_stats(datasets, tokenizer=str(real_gemma))
    assert report.tokenizer.exact and "APPROXIMATE" not in report.tokenizer.note
    tokenizer = AutoTokenizer.from_pretrained(real_gemma)
    validation = list(read_jsonl(datasets.data_paths().root / "splits" / "validation.jsonl", CleanRecord))
    # stats count the system prompt and the page (the chat markers are a fixed overhead on top)
    counts = sorted(len(tokenizer(r.system_prompt + "\n" + r.prompt, add_special_tokens=False).input_ids)
                    for r in validation if r.task == "navpage_classifier")
    stats = report.per_split["validation"]["navpage_classifier"]
    assert stats.n == len(counts) and stats.prompt_tokens["max"] == counts[-1]


def test_untrained_real_model_answers_valid_within_a_small_budget_on_both_engines(sample_splits, real_gemma):
    """Zero-shot, the base model rambles; constrained decoding still closes every answer in budget, on
    transformers and on vLLM (the engine users deploy), and both give the same answers (fp32 on CPU)."""
    root, datasets = sample_splits
    budget = 64  # the all-null answer takes 52 tokens with the real vocabulary
    answers = {}
    for engine in ("hf", "vllm"):
        cfg = EvalConfig.model_validate({
            "model": {"zero_shot": True, "base": str(real_gemma), "attn_implementation": "sdpa"},
            "data": {"datasets_config": str(root / "datasets.yaml")}, "engine": {"name": engine},
            "decoding": {"batch_size": 4, "max_new_tokens": {"classification": 4, "extraction": budget}},
            "output_dir": str(root / engine)})
        summary = generate_candidates(cfg, "validation", limit=2)
        candidates = [json.loads(line) for line in summary.path.read_text().splitlines()]
        assert summary.path.parent.name == "zero_shot" and len(candidates) == 2 and summary.engine == engine
        slots = datasets.tasks["productpage_extractor"].slots
        by_task = {task: [c for c in candidates if c["task"] == task] for task in datasets.tasks}
        assert len(by_task["navpage_classifier"]) == 1 == len(by_task["productpage_extractor"])
        for c in candidates:
            assert c["valid"] and c["model"].endswith(", zero-shot") and c["engine"] == engine, c
            assert c["output_tokens"] <= (budget if c["kind"] == "extraction" else 4)
        assert {c["raw"] for c in by_task["navpage_classifier"]} <= {"YES", "NO"}
        for c in by_task["productpage_extractor"]:
            parsed = json.loads(c["raw"])
            assert parsed == c["parsed"] and list(parsed) == list(slots)  # catalog order
            assert validate_extraction(parsed, slots, cfg.schema_bounds) == []
        answers[engine] = {c["id"]: (c["raw"], c["truncated_slots"], c["output_tokens"]) for c in candidates}
    assert answers["vllm"] == answers["hf"]
