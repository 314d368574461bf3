import json

from scripts.dataset.clean import clean_dataset
from scripts.dataset.split import split_dataset
from scripts.dataset.stats import compute_stats
from scripts.model.tiny import build_tokenizer
from scripts.paths import SCHEMA_VERSION
from tests.conftest import write_raw_db
from tests.scripts.dataset.test_split import raw_rows


def product(i, domain, prompt, target):
    return {"id": f"x{i}", "task": "productpage_extractor", "prompt_text": prompt,
            "response_strong": json.dumps(target), "metadata": {"domain": domain}}


def test_counts_truncation_fill_rates_and_leakage(tmp_path, datasets_cfg):
    rows = raw_rows()
    filler = " ".join(["lorem"] * 400)
    # Answer near the start survives truncation; one placed after the filler does not.
    rows.append(product(1, "shop1.example", "<h1>Alpha Mixer</h1> " + filler, {"title": "Alpha Mixer", "sku": None}))
    rows.append(product(2, "shop2.example", filler + " <h1>Beta Mixer</h1>", {"title": "Beta Mixer", "sku": None}))
    # Same page, other price, in another domain that lands in another split -> near-duplicate.
    for d in range(30):
        rows.append({"id": f"dup{d}", "task": "navpage_classifier", "response_strong": "NO",
                     "prompt_text": f"Same page costs {d}.99 EUR", "metadata": {"domain": f"shop{d}.example"}})
    clean_dataset(write_raw_db(tmp_path / "raw.duckdb", rows), datasets_cfg, SCHEMA_VERSION)
    split_dataset(datasets_cfg)
    datasets_cfg.stats.max_seq_length = 300

    report = compute_stats(datasets_cfg, tokenizer=str(tmp_path / "no-such-tokenizer"))

    assert not report.tokenizer.exact and "APPROXIMATE" in report.tokenizer.note
    total = sum(s.n for tasks in report.per_split.values() for s in tasks.values())
    assert total == 332
    over = sum(s.over_max_seq_length for tasks in report.per_split.values() for s in tasks.values())
    assert over == 2  # the two 400-word prompts
    prod_stats = [t["productpage_extractor"] for t in report.per_split.values()]
    kept = [(s.answer_in_prompt, s.answer_in_truncated_prompt) for s in prod_stats]
    assert any(truncated < 1.0 for _, truncated in kept)  # Beta Mixer cut away
    assert all(full == 1.0 for full, _ in kept)
    assert all(s.slot_fill_rate["title"] == 1.0 and s.slot_fill_rate["sku"] == 0.0
               for s in prod_stats if "sku" in s.slot_fill_rate)
    nav_labels = sum((t["navpage_classifier"].labels["NO"] for t in report.per_split.values()))
    assert nav_labels == sum(1 for r in rows if r["response_strong"] == "NO")
    assert report.near_duplicates_across_splits == 1
    assert len(report.near_duplicate_examples[0]) >= 2
    on_disk = json.loads((datasets_cfg.data_paths(SCHEMA_VERSION).root / "stats.json").read_text())
    assert on_disk["near_duplicates_across_splits"] == 1


def test_exact_counts_with_a_local_tokenizer(tmp_path, datasets_cfg):
    rows = raw_rows(n_domains=6, per_domain=4)
    clean_dataset(write_raw_db(tmp_path / "raw.duckdb", rows), datasets_cfg, SCHEMA_VERSION)
    tok_dir = tmp_path / "tok"
    tokenizer = build_tokenizer([r["prompt_text"] for r in rows] * 3, vocab_size=300)
    tokenizer.save_pretrained(tok_dir)

    report = compute_stats(datasets_cfg, tokenizer=str(tok_dir))  # no splits yet: "all"

    assert report.tokenizer.exact and list(report.per_split) == ["all"]
    nav = report.per_split["all"]["navpage_classifier"]
    system = datasets_cfg.tasks["navpage_classifier"].system_prompt
    longest = max(
        len(tokenizer(system + "\n" + r["prompt_text"], add_special_tokens=False)["input_ids"])
        for r in rows if r["task"] == "navpage_classifier")
    assert nav.prompt_tokens["max"] == longest
    assert nav.n == 12 and sum(nav.labels.values()) == 12
