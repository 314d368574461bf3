import json
from collections import Counter

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.config import UserError
from scripts.contracts import TARGET_KEY_ORDER, CleanManifest, CleanRecord, Reject, read_jsonl
from scripts.dataset.clean import clean_dataset
from scripts.dataset.config import DatasetsConfig, TaskSpec
from scripts.paths import SCHEMA_VERSION
from tests.conftest import write_raw_db

NAV = "navpage_classifier"
PROD = "productpage_extractor"


def nav(i, answer, **extra):
    return {"id": f"n{i}", "task": NAV, "prompt_text": f"Is this a listing? URL: https://www.shop{i}.de/c",
            "response_strong": answer, **extra}


def prod(i, answer, **extra):
    return {"id": f"p{i}", "task": PROD, "prompt_text": f"Catalog ... URL: https://shop{i}.fr/p/1",
            "response_strong": answer, "slot_specs": {"price": {"scorer": "numeric"}}, **extra}


def run_clean(tmp_path, cfg, rows, **kw):
    db = write_raw_db(tmp_path / "raw.duckdb", rows, **kw)
    manifest = clean_dataset(db, cfg, SCHEMA_VERSION)
    out = cfg.data_paths(SCHEMA_VERSION).root
    clean = {t: list(read_jsonl(out / f"{t}.jsonl", CleanRecord)) for t in cfg.tasks}
    rejects = list(read_jsonl(out / "rejects.jsonl", Reject))
    return manifest, clean, rejects


def test_labels_are_normalised_and_out_of_set_text_rejected(tmp_path, datasets_cfg):
    rows = [nav(1, "yes"), nav(2, "No."), nav(3, " YES\n"), nav(4, "NO"),
            nav(5, "YES, because the page lists products"), nav(6, "maybe")]
    manifest, clean, rejects = run_clean(tmp_path, datasets_cfg, rows)
    assert [(r.id, r.target) for r in clean[NAV]] == [("n1", "YES"), ("n2", "NO"), ("n3", "YES"), ("n4", "NO")]
    assert {(r.id, r.reason, r.field) for r in rejects} == {
        ("n5", "label_not_in_set", "response_strong"), ("n6", "label_not_in_set", "response_strong")}
    assert manifest.rows_in == 6 and manifest.rows_clean == 4 and manifest.rows_rejected == 2


def test_json_targets_are_canonical_in_catalog_order_and_fences_stripped(tmp_path, datasets_cfg):
    shuffled = ('{"image_url": "https://a.fr/1.jpg", "review_count": 3, "rating": 4.5, "categories": ["A"], '
                '"sku": "S-1", "availability": "in_stock", "currency": "EUR", "original_price": null, '
                '"price": 9.5, "brand": "Acme", "title": "Mixer"}')
    rows = [
        prod(1, '```json\n{"title": "Mixer X", "price": 19.99, "categories": ["A", "B"], "brand": null}\n```'),
        prod(2, '{\n  "b": 1,\n  "a": {"z": 1, "y": "ü"}\n}'),
        prod(3, '{"zeta": 1, "image_url": "u", "title": "T", "alpha": 2}'),
        prod(4, shuffled),
    ]
    manifest, clean, rejects = run_clean(tmp_path, datasets_cfg, rows)
    assert rejects == [] and manifest.target_key_order == TARGET_KEY_ORDER == "catalog"
    targets = {r.id: r.target for r in clean[PROD]}
    # the registry's `slots:` order (title, brand, price, ..., image_url), not sorted; missing keys stay missing
    assert targets["p1"] == '{"title":"Mixer X","brand":null,"price":19.99,"categories":["A","B"]}'
    assert targets["p2"] == '{"a":{"y":"ü","z":1},"b":1}'  # keys outside the catalog: sorted, kept
    assert targets["p3"] == '{"title":"T","image_url":"u","alpha":2,"zeta":1}'
    assert targets["p4"] == ('{"title":"Mixer","brand":"Acme","price":9.5,"original_price":null,"currency":"EUR",'
                             '"availability":"in_stock","sku":"S-1","categories":["A"],"rating":4.5,'
                             '"review_count":3,"image_url":"https://a.fr/1.jpg"}')
    assert clean[PROD][0].slot_specs == {"price": {"scorer": "numeric"}}


def test_a_task_with_its_own_slot_order_gets_its_own_target_order(tmp_path):
    cfg = DatasetsConfig(processed_dir=tmp_path / "processed", tasks={
        "offer_extractor": TaskSpec(kind="extraction", system_prompt="Extract.",
                                    slots={"sku": "string", "price": "number", "title": "string"})})
    row = {"id": "o1", "task": "offer_extractor", "prompt_text": "URL: https://o.example/1",
           "response_strong": '{"title": "T", "price": 2, "sku": "K"}'}
    _, clean, _ = run_clean(tmp_path, cfg, [row])
    assert [r.target for r in clean["offer_extractor"]] == ['{"sku":"K","price":2,"title":"T"}']


def test_every_bad_row_is_rejected_with_reason_and_field(tmp_path, datasets_cfg):
    rows = [
        nav(1, "YES"),
        nav(1, "NO"),  # duplicate id: first kept
        {"id": "u1", "task": "blogpage_summary", "prompt_text": "x", "response_strong": "YES"},
        nav(2, "YES", prompt_text="   \n "),
        prod(3, '{"title": "cut off'),
        prod(4, "[1, 2]"),
        prod(5, '{"a": 1}', slot_specs="{not json"),
        nav(6, "YES", metadata="{oops"),
        nav(7, "  "),
        {"id": None, "task": NAV, "prompt_text": "x", "response_strong": "YES"},
    ]
    manifest, clean, rejects = run_clean(tmp_path, datasets_cfg, rows)
    assert [r.id for r in clean[NAV]] == ["n1"] and clean[NAV][0].target == "YES"
    assert sorted((r.id, r.reason, r.field) for r in rejects if r.id) == [
        ("n1", "duplicate_id", "id"),
        ("n2", "empty_prompt", "prompt_text"),
        ("n6", "invalid_metadata", "metadata"),
        ("n7", "empty_response", "response_strong"),
        ("p3", "invalid_json", "response_strong"),
        ("p4", "target_not_object", "response_strong"),
        ("p5", "invalid_slot_specs", "slot_specs"),
        ("u1", "unknown_task", "task"),
    ]
    assert [r.reason for r in rejects if r.id is None] == ["missing_id"]
    assert manifest.rejected_by_reason["duplicate_id"] == 1
    assert manifest.rows_in == manifest.rows_clean + manifest.rows_rejected == 10


def test_domain_inference_and_system_prompt_defaults(tmp_path, datasets_cfg):
    rows = [
        nav(1, "YES", metadata={"domain": "Shop-A.com", "url": "https://x.org/"}),
        nav(2, "YES", metadata={"url": "https://www.shop-b.nl/cat?page=2"}),
        nav(3, "NO"),  # no metadata: from the URL in the prompt (www. stripped)
        nav(4, "NO", prompt_text="no url here", metadata={"system_prompt": "Be terse."}),
        nav(5, "NO", system_prompt="Row override."),
    ]
    _, clean, _ = run_clean(tmp_path, datasets_cfg, rows, extra_columns=("system_prompt",))
    by_id = {r.id: r for r in clean[NAV]}
    assert {i: r.domain for i, r in by_id.items()} == {
        "n1": "shop-a.com", "n2": "shop-b.nl", "n3": "shop3.de", "n4": "unknown", "n5": "shop5.de"}
    assert by_id["n4"].system_prompt == "Be terse."
    assert by_id["n5"].system_prompt == "Row override."
    assert by_id["n1"].system_prompt == datasets_cfg.tasks[NAV].system_prompt


def test_rerun_is_byte_identical(tmp_path, datasets_cfg):
    rows = [nav(i, "YES" if i % 2 else "no") for i in range(50)] + [prod(i, '{"b":2,"a":1}') for i in range(50)]
    db = write_raw_db(tmp_path / "raw.duckdb", rows)
    out = datasets_cfg.data_paths(SCHEMA_VERSION).root
    clean_dataset(db, datasets_cfg, SCHEMA_VERSION)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    clean_dataset(db, datasets_cfg, SCHEMA_VERSION)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_missing_db_table_and_columns_are_one_line_errors(tmp_path, datasets_cfg):
    with pytest.raises(UserError, match="database not found.*fab dataset.sample"):
        clean_dataset(tmp_path / "nope.duckdb", datasets_cfg, SCHEMA_VERSION)
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE pages (id VARCHAR)")
    con.close()
    with pytest.raises(UserError, match="table `examples` not found.*tables: pages"):
        clean_dataset(tmp_path / "other.duckdb", datasets_cfg, SCHEMA_VERSION)
    con = duckdb.connect(str(tmp_path / "cols.duckdb"))
    con.execute("CREATE TABLE examples (id VARCHAR, task VARCHAR, prompt_text VARCHAR)")
    con.close()
    with pytest.raises(UserError, match="lacks column.*response_strong, metadata, slot_specs") as err:
        clean_dataset(tmp_path / "cols.duckdb", datasets_cfg, SCHEMA_VERSION)
    assert "\n" not in str(err.value)


def test_json_typed_columns_are_accepted(tmp_path, datasets_cfg):
    con = duckdb.connect(str(tmp_path / "typed.duckdb"))
    con.execute("""CREATE TABLE examples AS SELECT 'p1' AS id, 'productpage_extractor' AS task,
        'URL: https://a.com/p' AS prompt_text, '{"x": 1}' AS response_strong,
        '{"domain": "a.com"}'::JSON AS metadata, {'price': {'scorer': 'numeric'}} AS slot_specs""")
    con.close()
    manifest = clean_dataset(tmp_path / "typed.duckdb", datasets_cfg, SCHEMA_VERSION)
    record = next(read_jsonl(datasets_cfg.data_paths(SCHEMA_VERSION).root / f"{PROD}.jsonl", CleanRecord))
    assert manifest.rows_clean == 1 and record.slot_specs == {"price": {"scorer": "numeric"}}


answers = st.sampled_from(["YES", "no", "No.", " YES\n", "YES, because", "", "{}", '{"a": [1, null]}',
                           '```json\n{"k": "v"}\n```', "{broken", "[1]", "null"])
raw_rows = st.lists(
    st.fixed_dictionaries({
        "id": st.sampled_from([f"id{i}" for i in range(12)] + [None]),
        "task": st.sampled_from([NAV, PROD, "unknown_task", None]),
        "prompt_text": st.one_of(st.none(), st.text(max_size=30), st.just("see https://a.com/x")),
        "response_strong": st.one_of(st.none(), answers),
        "metadata": st.sampled_from([None, '{"domain": "b.com"}', "{bad", "[]", '{"url": "http://c.org/"}']),
        "slot_specs": st.sampled_from([None, "{}", "{bad", '{"a": {"scorer": "set"}}']),
    }),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=raw_rows)
def test_rows_in_equals_clean_plus_rejected_for_any_table(tmp_path_factory, datasets_cfg, rows):
    tmp = tmp_path_factory.mktemp("inv")
    db = write_raw_db(tmp / "raw.duckdb", rows)
    manifest = clean_dataset(db, datasets_cfg, SCHEMA_VERSION)
    out = datasets_cfg.data_paths(SCHEMA_VERSION).root
    clean_ids = [r.id for t in datasets_cfg.tasks for r in read_jsonl(out / f"{t}.jsonl", CleanRecord)]
    rejects = list(read_jsonl(out / "rejects.jsonl", Reject))
    assert len(clean_ids) + len(rejects) == len(rows) == manifest.rows_in
    assert len(clean_ids) == len(set(clean_ids))  # ids unique in the output
    assert Counter(r.reason for r in rejects) == Counter(manifest.rejected_by_reason)
    on_disk = json.loads((out / "clean_manifest.json").read_text())
    assert CleanManifest.model_validate(on_disk) == manifest
