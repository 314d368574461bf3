import json
from collections import Counter, defaultdict

import pytest

from scripts.config import UserError
from scripts.contracts import CleanRecord, SplitManifest, read_jsonl, sha256_file
from scripts.dataset.clean import clean_dataset
from scripts.dataset.split import split_dataset
from scripts.paths import SCHEMA_VERSION
from tests.conftest import write_raw_db


def raw_rows(n_domains=30, per_domain=10):
    rows = []
    for d in range(n_domains):
        for k in range(per_domain):
            i = d * per_domain + k
            url = f"https://shop{d}.example/{k}"
            page = "".join(chr(97 + int(c)) for c in str(i))  # letters: prompts differ beyond digits
            if k % 2:
                rows.append({"id": f"n{i:04d}", "task": "navpage_classifier", "prompt_text": f"nav? {page} {url}",
                             "response_strong": "YES" if (k + d) % 3 else "NO", "metadata": {"url": url}})
            else:
                rows.append({"id": f"p{i:04d}", "task": "productpage_extractor", "prompt_text": f"p {page} <h1>T{i}</h1> {url}",
                             "response_strong": '{"title": "T%d"}' % i, "metadata": {"url": url}})
    return rows


@pytest.fixture
def cleaned(tmp_path, datasets_cfg):
    clean_dataset(write_raw_db(tmp_path / "raw.duckdb", raw_rows()), datasets_cfg, SCHEMA_VERSION)
    return datasets_cfg


def load_splits(cfg):
    d = cfg.data_paths(SCHEMA_VERSION).root / "splits"
    return {s: list(read_jsonl(d / f"{s}.jsonl", CleanRecord)) for s in ("train", "validation", "test")}


def test_grouped_by_domain_stratified_and_complete(cleaned):
    manifest = split_dataset(cleaned)
    splits = load_splits(cleaned)
    domains_of = {s: {r.domain for r in recs} for s, recs in splits.items()}
    assert not (domains_of["train"] & domains_of["validation"])
    assert not (domains_of["train"] & domains_of["test"])
    assert not (domains_of["validation"] & domains_of["test"])
    ids = [r.id for recs in splits.values() for r in recs]
    assert len(ids) == len(set(ids)) == 300
    sizes = {s: len(r) for s, r in splits.items()}
    assert manifest.counts == sizes
    assert 200 <= sizes["train"] <= 260 and sizes["validation"] >= 20 and sizes["test"] >= 20
    for split, recs in splits.items():  # every stratum present in every split
        strata = Counter((r.task, r.target if r.kind == "classification" else "*") for r in recs)
        assert len(strata) == 3, (split, strata)
        assert manifest.counts_by_label[split] == {
            f"{t}/{label}": n for (t, label), n in sorted(strata.items())}
    assert manifest.warnings == []
    assert sorted(manifest.domains["test"]) == sorted(domains_of["test"])


def test_rerun_is_byte_identical_and_seed_changes_assignment(cleaned):
    out = cleaned.data_paths(SCHEMA_VERSION).root / "splits"
    split_dataset(cleaned)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    split_dataset(cleaned)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    manifest = SplitManifest.model_validate_json(first["manifest.json"])
    assert manifest.files["train.jsonl"].sha256 == sha256_file(out / "train.jsonl")
    cleaned.split.seed = 7
    other = split_dataset(cleaned)
    assert other.domains != manifest.domains and other.seed == 7


def test_split_manifest_records_the_catalog_key_order(cleaned):
    manifest = split_dataset(cleaned)
    assert manifest.target_key_order == "catalog"
    on_disk = json.loads((cleaned.data_paths(SCHEMA_VERSION).root / "splits" / "manifest.json").read_text())
    assert on_disk["target_key_order"] == "catalog"


def test_refuses_clean_output_of_schema_v1_with_sorted_keys(cleaned):
    """A clean manifest without `target_key_order` predates v2: its targets had sorted keys."""
    path = cleaned.data_paths(SCHEMA_VERSION).root / "clean_manifest.json"
    old = json.loads(path.read_text())
    old.pop("target_key_order")
    path.write_text(json.dumps(old | {"schema_version": "v1"}))
    with pytest.raises(UserError, match=r"targets in sorted key order \(schema v1\).*rerun `fab dataset.clean") as err:
        split_dataset(cleaned)
    assert "\n" not in str(err.value)
    assert not (cleaned.data_paths(SCHEMA_VERSION).root / "splits").exists()


def test_too_few_domains_is_a_clear_error(tmp_path, datasets_cfg):
    clean_dataset(write_raw_db(tmp_path / "raw.duckdb", raw_rows(n_domains=2)), datasets_cfg, SCHEMA_VERSION)
    with pytest.raises(UserError, match="would be empty: only 2 domain group"):
        split_dataset(datasets_cfg)


def test_refuses_clean_files_changed_since_clean(cleaned):
    path = cleaned.data_paths(SCHEMA_VERSION).root / "navpage_classifier.jsonl"
    path.write_text(path.read_text()[:-200])
    with pytest.raises(UserError, match="changed since dataset.clean"):
        split_dataset(cleaned)


def test_without_clean_output_says_what_to_run(datasets_cfg):
    with pytest.raises(UserError, match="run `fab dataset.clean"):
        split_dataset(datasets_cfg)


def test_missing_stratum_is_reported(tmp_path, datasets_cfg):
    rows = [r for r in raw_rows() if r["task"] == "productpage_extractor" or r["response_strong"] == "YES"]
    rows.append({"id": "only-no", "task": "navpage_classifier", "prompt_text": "https://lonely.example/",
                 "response_strong": "NO"})
    clean_dataset(write_raw_db(tmp_path / "raw.duckdb", rows), datasets_cfg, SCHEMA_VERSION)
    manifest = split_dataset(datasets_cfg)
    missing = defaultdict(list)
    for w in manifest.warnings:
        missing[w.split()[1]].append(w)
    assert sum(len(v) for v in missing.values()) == 2  # NO lives in one split only
    assert all("navpage_classifier/NO" in w for v in missing.values() for w in v)


def test_split_counts_read_as_words_not_a_python_dict(cleaned):
    manifest = split_dataset(cleaned)
    text = manifest.counts_text()
    assert text == ", ".join(f"{s} {manifest.counts[s]}" for s in ("train", "validation", "test"))
    assert "{" not in text and "'" not in text
