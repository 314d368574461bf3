"""Content checks for the sample `dataset.duckdb` generator (CPU, a few seconds)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from scripts import sample_data as sd
from scripts.config import REPO_ROOT, UserError, load_config
from scripts.dataset.config import DatasetsConfig

ROWS = 2000
SEED = 0
DIRTY_RATE = 0.02
LABELS = {"YES", "NO"}


def _fetch(path: Path, where: str = "") -> list[dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cursor = con.execute(f"SELECT * FROM examples {where}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def _rows_sorted(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT * FROM examples ORDER BY id, task, prompt_text").fetchall()
    finally:
        con.close()


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1].rsplit("```", 1)[0]
    return text


def _label(response: str) -> str:
    return response.strip().rstrip(".").upper()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, sd.SampleSummary]:
    path = tmp_path_factory.mktemp("clean") / "dataset.duckdb"
    return path, sd.generate_sample(path, rows=ROWS, seed=SEED, dirty_rate=0.0)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, sd.SampleSummary]:
    path = tmp_path_factory.mktemp("dirty") / "dataset.duckdb"
    return path, sd.generate_sample(path, rows=ROWS, seed=SEED, dirty_rate=DIRTY_RATE)


@pytest.fixture(scope="module")
def clean_rows(clean) -> list[dict]:
    return _fetch(clean[0])


@pytest.fixture(scope="module")
def products(clean_rows) -> list[tuple[dict, dict]]:
    """(row, parsed answer) for every product row of the clean table."""
    return [
        (row, json.loads(_strip_fence(row["response_strong"])))
        for row in clean_rows
        if row["task"] == sd.PRODUCT_TASK
    ]


# --- shape ------------------------------------------------------------------


def test_table_has_the_raw_contract_columns(clean):
    path, summary = clean
    con = duckdb.connect(str(path), read_only=True)
    columns = con.execute("DESCRIBE examples").fetchall()
    tables = con.execute("SHOW TABLES").fetchall()
    con.close()
    assert tables == [("examples",)]
    assert [(c[0], c[1]) for c in columns] == [(name, "VARCHAR") for name in sd.COLUMNS]
    assert summary.rows == ROWS and summary.dirty == 0


def test_row_count_task_mix_and_ids(clean_rows, clean):
    assert len(clean_rows) == ROWS
    tasks = Counter(row["task"] for row in clean_rows)
    assert set(tasks) == {sd.NAV_TASK, sd.PRODUCT_TASK}
    assert 0.4 < tasks[sd.NAV_TASK] / ROWS < 0.6
    assert clean[1].tasks == dict(tasks)
    ids = [row["id"] for row in clean_rows]
    assert len(set(ids)) == ROWS
    for row in clean_rows:
        prefix = "nav" if row["task"] == sd.NAV_TASK else "prod"
        assert re.fullmatch(rf"{prefix}-\d{{6}}", row["id"])


def test_slots_and_labels_match_the_task_registry():
    cfg = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    assert cfg.tasks[sd.PRODUCT_TASK].slots == sd.SLOT_TYPES
    # in the same order: the catalog order of the prompt is the key order of targets and decoding
    assert cfg.tasks[sd.PRODUCT_TASK].slot_order == list(sd.SLOT_TYPES) == list(sd.SLOT_DESCRIPTIONS)
    assert set(cfg.tasks[sd.NAV_TASK].labels) == LABELS


# --- determinism ------------------------------------------------------------


def test_same_seed_same_table_regardless_of_chunking(tmp_path):
    a = sd.generate_sample(tmp_path / "a.duckdb", rows=300, seed=7)
    b = sd.generate_sample(tmp_path / "b.duckdb", rows=300, seed=7, chunk_rows=37)
    assert a.tasks == b.tasks and a.dirty == b.dirty
    assert _rows_sorted(tmp_path / "a.duckdb") == _rows_sorted(tmp_path / "b.duckdb")


def test_different_seed_different_table(tmp_path):
    sd.generate_sample(tmp_path / "a.duckdb", rows=200, seed=1)
    sd.generate_sample(tmp_path / "b.duckdb", rows=200, seed=2)
    a, b = _rows_sorted(tmp_path / "a.duckdb"), _rows_sorted(tmp_path / "b.duckdb")
    assert len(a) == len(b) == 200
    assert sum(x != y for x, y in zip(a, b)) > 150


def test_prefix_of_a_larger_table_is_the_smaller_table(tmp_path):
    sd.generate_sample(tmp_path / "small.duckdb", rows=120, seed=3, dirty_rate=0)
    sd.generate_sample(tmp_path / "large.duckdb", rows=240, seed=3, dirty_rate=0)
    small = set(_rows_sorted(tmp_path / "small.duckdb"))
    assert small <= set(_rows_sorted(tmp_path / "large.duckdb"))


# --- shops, layouts, metadata -----------------------------------------------


def test_many_domains_non_uniform(clean_rows):
    domains = Counter(sd.SHOPS_BY_DOMAIN[_domain_of(row)].domain for row in clean_rows)
    assert len(domains) >= 40
    counts = sorted(domains.values())
    assert counts[-1] >= 4 * counts[0]  # big shops and a long tail


def test_every_shop_has_a_few_rows_from_400_rows(tmp_path):
    sd.generate_sample(tmp_path / "s.duckdb", rows=400, seed=11)
    domains = Counter(_domain_of(row) for row in _fetch(tmp_path / "s.duckdb"))
    assert set(domains) == {shop.domain for shop in sd.SHOPS}
    assert min(domains.values()) >= 3


def test_metadata_fields_and_missing_domains(clean_rows):
    metas = [row["metadata"] for row in clean_rows]
    null_share = sum(m is None for m in metas) / ROWS
    parsed = [json.loads(m) for m in metas if m is not None]
    no_domain_share = sum("domain" not in m for m in parsed) / ROWS
    assert 0.01 < null_share < 0.06
    assert 0.06 < no_domain_share < 0.15
    for meta in parsed:
        assert {"url", "locale", "layout", "crawled_at"} <= set(meta)
        assert meta["layout"] in sd.LAYOUTS and meta["locale"] in sd.LOCALES
        date.fromisoformat(meta["crawled_at"])
        host = urlparse(meta["url"]).hostname
        if "domain" in meta:
            assert host in (meta["domain"], f"www.{meta['domain']}")


def test_url_line_in_every_prompt_names_the_shop(clean_rows):
    for row in clean_rows:
        url = re.search(r"^URL: (\S+)$", row["prompt_text"], re.MULTILINE).group(1)
        shop = sd.SHOPS_BY_DOMAIN[_host_domain(url)]
        if row["metadata"]:
            assert json.loads(row["metadata"])["url"] == url
            assert json.loads(row["metadata"])["layout"] == shop.layout


def test_all_layout_families_present(products):
    seen = Counter(sd.SHOPS_BY_DOMAIN[_domain_of(row)].layout for row, _ in products)
    assert set(seen) == set(sd.LAYOUTS)
    markers = {
        "microdata": 'itemprop="price"',
        "jsonld": '<script type="application/ld+json">',
        "opengraph": 'property="og:title"',
        "table": "<table",
        "divs": "<div",
    }
    for row, _ in products:
        layout = sd.SHOPS_BY_DOMAIN[_domain_of(row)].layout
        assert markers[layout] in row["prompt_text"], (row["id"], layout)


def test_locales_change_words_and_price_formats(products):
    locales = Counter(sd.SHOPS_BY_DOMAIN[_domain_of(row)].locale for row, _ in products)
    assert set(locales) == set(sd.LOCALES)
    prompts = "\n".join(row["prompt_text"] for row, _ in products)
    for words in ("In den Warenkorb", "Ajouter au panier", "Add to cart", "Dodaj do koszyka"):
        assert words in prompts
    assert re.search(r"\d{1,3}\.\d{3},\d{2} €", prompts)  # 1.299,00 €
    assert re.search(r"\$\d{1,3},\d{3}\.\d{2}", prompts)  # $1,299.00
    assert re.search(r"\d+,\d{2} zł", prompts)


# --- nav rows ---------------------------------------------------------------


def test_nav_prompts_and_labels(clean_rows, clean):
    nav = [row for row in clean_rows if row["task"] == sd.NAV_TASK]
    labels = Counter(_label(row["response_strong"]) for row in nav)
    assert set(labels) == LABELS
    assert 0.35 < labels["YES"] / len(nav) < 0.55
    assert clean[1].labels == dict(sorted(labels.items()))
    raw = Counter(row["response_strong"] for row in nav)
    assert set(raw) - LABELS, "strong-model style never varies"
    for row in nav:
        prompt = row["prompt_text"]
        assert prompt.startswith(sd.NAV_INSTRUCTION)
        assert "\nlast_scrape_keyword_sections:\n[1] keyword=" in prompt
        assert row["slot_specs"] is None
        assert 300 < len(prompt) < 6000


def test_nav_label_is_learnable_but_not_one_token(clean_rows):
    """Repeated add-to-cart cards and pagination predict YES well, but not perfectly."""
    carts = tuple(sd.WORDS["add_to_cart"].values())
    hits = 0
    nav = [row for row in clean_rows if row["task"] == sd.NAV_TASK]
    for row in nav:
        body = row["prompt_text"].split("last_scrape_keyword_sections:")[1]
        cards = sum(body.count(word) for word in carts)
        paged = 'rel="next"' in body
        guess = "YES" if cards >= 4 or (cards >= 2 and paged) else "NO"
        hits += guess == _label(row["response_strong"])
    assert 0.7 < hits / len(nav) < 0.98


# --- product rows -----------------------------------------------------------


_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str) and v,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "string_list": lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
}


def test_product_answers_have_all_slots_with_types(products):
    nulls, lists = Counter(), 0
    for row, answer in products:
        assert set(answer) == set(sd.SLOT_TYPES), row["id"]
        for slot, kind in sd.SLOT_TYPES.items():
            value = answer[slot]
            if value is None:
                nulls[slot] += 1
            else:
                assert _TYPE_CHECKS[kind](value), (row["id"], slot, value)
        lists += isinstance(answer["categories"], list)
        assert answer["price"] is not None and answer["price"] > 0
        assert answer["currency"] in {"EUR", "USD", "GBP", "PLN"}
        assert answer["availability"] in (*sd.AVAILABILITY, None)
    n = len(products)
    assert lists > 0 and sum(nulls.values()) > 0
    assert 0.2 < nulls["original_price"] / n < 0.4
    # a value is null where the product has none, or where the crawl's cut ends the page before it
    for slot in ("brand", "sku", "categories", "rating", "image_url"):
        share = sd.MISSING_SHARE[slot]
        assert share - 0.05 < nulls[slot] / n < share + sd.CORE_CUT_SHARE + 0.05, slot


def test_string_values_appear_verbatim_and_prices_in_locale_format(products):
    for row, answer in products:
        prompt = row["prompt_text"]
        html = prompt.split("\nHTML:\n", 1)[1]
        for slot in ("title", "brand", "sku", "image_url"):
            if answer[slot] is not None:
                assert answer[slot] in html, (row["id"], slot, answer[slot])
        for category in answer["categories"] or ():
            assert category in html, (row["id"], category)
        digits = re.sub(r"[^\d]", "", html)
        for slot in ("price", "original_price"):
            if answer[slot] is not None:
                assert f"{answer[slot]:.2f}".replace(".", "") in digits, (row["id"], slot)


def test_absent_values_are_absent_from_the_page(products):
    shop_labels = {word for word in sd.WORDS["sku"].values()}
    for row, answer in products:
        html = row["prompt_text"].split("\nHTML:\n", 1)[1]
        if answer["sku"] is None:
            assert not any(f"{label}:" in html for label in shop_labels), row["id"]
        if answer["rating"] is None:
            assert "ratingValue" not in html, row["id"]


def test_product_prompt_has_catalog_url_and_mutilated_html(products):
    cut_start = 0
    for row, _ in products:
        prompt = row["prompt_text"]
        assert prompt.startswith(sd.PRODUCT_INSTRUCTION)
        for slot in sd.SLOT_TYPES:
            assert f"\n- {slot} (" in prompt
        positions = [prompt.index(f"\n- {slot} (") for slot in sd.SLOT_TYPES]
        assert positions == sorted(positions)  # the catalog lines come in the registry's slot order
        html = prompt.split("\nHTML:\n", 1)[1]
        cut_start += not html.startswith("<!DOCTYPE")
        assert 1500 < len(prompt) < 12_000  # the longest of 2,000 rows: 10,388 chars (gallery, bundle, notes)
    assert cut_start == len(products)  # every snippet starts mid-page
    average = sum(len(row["prompt_text"]) for row, _ in products) / len(products)
    assert 2000 < average < 6000


def test_response_styles_vary(products):
    raw = [row["response_strong"] for row, _ in products]
    assert any(r.startswith("```json") for r in raw)
    assert any("\n  " in r and not r.startswith("```") for r in raw)  # pretty-printed
    orders = {tuple(json.loads(_strip_fence(r))) for r in raw}
    assert len(orders) > 1  # keys not always in catalog order


def test_slot_specs_valid_json_for_product_rows(products):
    for row, _ in products:
        specs = json.loads(row["slot_specs"])
        assert set(specs) == set(sd.SLOT_TYPES)
        for slot, spec in specs.items():
            assert spec["type"] == sd.SLOT_TYPES[slot]
            assert spec["scorer"] in {"exact", "numeric", "fuzzy", "set"}
            if spec["scorer"] == "numeric":
                assert spec["tolerance"] > 0
    specs = json.loads(products[0][0]["slot_specs"])
    assert specs["title"]["scorer"] == "fuzzy" and specs["categories"]["scorer"] == "set"
    assert specs["price"]["scorer"] == "numeric"


def test_a_few_rows_override_the_system_prompt(clean_rows):
    overrides = [row for row in clean_rows if row["system_prompt"] is not None]
    assert 0 < len(overrides) < 0.03 * ROWS
    assert all(row["system_prompt"] == sd.SYSTEM_OVERRIDES[row["task"]] for row in overrides)


# --- dirty rows -------------------------------------------------------------


def test_clean_table_has_no_defects(clean_rows):
    assert len({row["id"] for row in clean_rows}) == ROWS
    for row in clean_rows:
        assert row["task"] in (sd.NAV_TASK, sd.PRODUCT_TASK)
        assert row["prompt_text"].strip()
        if row["task"] == sd.NAV_TASK:
            assert _label(row["response_strong"]) in LABELS
        else:
            json.loads(_strip_fence(row["response_strong"]))
            json.loads(row["slot_specs"])


def test_dirty_rows_at_the_configured_rate(clean, dirty):
    clean_path, _ = clean
    dirty_path, summary = dirty
    changed = set(_rows_sorted(dirty_path)) - set(_rows_sorted(clean_path))
    assert summary.dirty == len(changed)
    assert math.floor(ROWS * DIRTY_RATE) <= summary.dirty <= math.ceil(ROWS * DIRTY_RATE)
    assert sum(summary.dirty_by_reason.values()) == summary.dirty
    assert len(summary.dirty_by_reason) >= 5
    assert set(summary.dirty_by_reason) <= set(sd.DIRTY_REASONS)


def test_each_dirty_row_is_detectably_bad(dirty):
    path, summary = dirty
    rows = _fetch(path)
    assert len(rows) == ROWS
    ids = Counter(row["id"] for row in rows)
    found = Counter()
    found["duplicate_id"] = sum(count - 1 for count in ids.values())
    for row in rows:
        if row["task"] not in (sd.NAV_TASK, sd.PRODUCT_TASK):
            found["unknown_task"] += 1
        elif not row["prompt_text"].strip():
            found["empty_prompt"] += 1
        elif row["task"] == sd.NAV_TASK:
            found["label_outside_set"] += _label(row["response_strong"]) not in LABELS
        else:
            found["invalid_json"] += not _parses(_strip_fence(row["response_strong"]))
            found["invalid_slot_specs"] += not _parses(row["slot_specs"])
    assert +found == Counter(summary.dirty_by_reason)


def test_dirty_rate_one_and_zero_edges(tmp_path):
    summary = sd.generate_sample(tmp_path / "all.duckdb", rows=50, seed=5, dirty_rate=1.0)
    assert summary.dirty == 50
    summary = sd.generate_sample(tmp_path / "none.duckdb", rows=50, seed=5, dirty_rate=0)
    assert summary.dirty == 0 and summary.dirty_by_reason == {}


# --- writing ----------------------------------------------------------------


def test_overwrites_atomically_and_reports_progress(tmp_path):
    out = tmp_path / "nested" / "dataset.duckdb"
    sd.generate_sample(out, rows=30, seed=1)
    seen: list[int] = []
    summary = sd.generate_sample(out, rows=25, seed=2, chunk_rows=10, progress=seen.append)
    assert seen == [10, 20, 25]
    assert summary.path == out and len(_fetch(out)) == 25
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset.duckdb"]


def test_zero_rows_gives_an_empty_table(tmp_path):
    summary = sd.generate_sample(tmp_path / "empty.duckdb", rows=0)
    assert summary.rows == 0 and _fetch(tmp_path / "empty.duckdb") == []


@pytest.mark.parametrize(
    "kwargs", [{"rows": -1}, {"dirty_rate": 1.5}, {"dirty_rate": -0.1}, {"chunk_rows": 0}]
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs):
    with pytest.raises(UserError):
        sd.generate_sample(tmp_path / "x.duckdb", **kwargs)
    assert not list(tmp_path.iterdir())


# --- helpers ----------------------------------------------------------------


def _parses(text: str | None) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def _host_domain(url: str) -> str:
    host = urlparse(url).hostname or ""
    return host.removeprefix("www.")


def _domain_of(row: dict) -> str:
    """The shop domain as a cleaner would find it: metadata, else the prompt's URL line."""
    if row["metadata"]:
        meta = json.loads(row["metadata"])
        return meta.get("domain") or _host_domain(meta["url"])
    return _host_domain(re.search(r"^URL: (\S+)$", row["prompt_text"], re.MULTILINE).group(1))


def test_sample_splits_builds_a_workspace_once_and_the_tokenizer_texts_come_from_its_train_split(tmp_path):
    """The benches' one set-up: configs/datasets.yaml copied with its slot order, sample -> clean -> split
    under the folder, reused (not rebuilt) on a second call; the tiny tokenizer reads the train split."""
    from scripts.sample_data.splits import sample_splits, texts_for_tokenizer

    datasets = sample_splits(tmp_path, rows=120, seed=3, schema_version="bench",
                             overrides={"stats.tokenizer": "tok"}, keep_raw=False)
    repo = load_config(REPO_ROOT / "configs/datasets.yaml", DatasetsConfig)
    assert (datasets.schema_version, datasets.stats.tokenizer) == ("bench", "tok")
    slot_order = [list(task.catalog or {}) for task in datasets.tasks.values()]
    assert slot_order == [list(task.catalog or {}) for task in repo.tasks.values()]
    manifest = datasets.data_paths().split_manifest
    assert manifest.is_file() and not (tmp_path / "sample.duckdb").exists()
    written = manifest.stat().st_mtime_ns
    again = sample_splits(tmp_path, rows=120, seed=3, schema_version="bench")
    assert again.data_paths().split_manifest.stat().st_mtime_ns == written
    texts, source = texts_for_tokenizer(datasets.data_paths().splits_dir)
    assert source.endswith("train.jsonl") and texts and all(isinstance(t, str) for t in texts)
