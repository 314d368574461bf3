"""ops.backfill: one prediction per keyed page, bad rows recorded, filters, resume, model sha."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from scripts.config import UserError
from scripts.evaluation.generation.config import EvalConfig
from scripts.ops.backfill import backfill
from tests.scripts.evaluation import (
    NAV_SYSTEM,
    SLOTS,
    eval_config_dict,
    make_adapter,
    write_datasets_config,
)

NAV = "navpage_classifier"
PRODUCT = "productpage_extractor"
NAV_HTML = "<ul><li><a href=/c/1>Category one</a></li><li><a href=/c/2>Category two</a></li></ul>"
PRODUCT_HTML = "<div><h1>Trail runner</h1><span class=price>99,50 €</span></div>"

# 12 keyed pages (5 bad), one row without an id, one extra row sharing an id.
PAGES = [
    ("p01", NAV, NAV_HTML, None),
    ("p02", NAV, NAV_HTML * 2, NAV_SYSTEM),  # its own system prompt
    ("p03", PRODUCT, PRODUCT_HTML, None),
    ("p04", NAV, "   ", None),  # blank prompt
    ("p05", "pricing_guesser", NAV_HTML, None),  # unknown task
    ("p06", NAV, NAV_HTML + "<p>more</p>", ""),  # empty system prompt -> registry default
    ("p07", NAV, None, None),  # NULL prompt
    ("p08", None, NAV_HTML, None),  # NULL task
    ("p09", PRODUCT, PRODUCT_HTML * 2, None),
    ("p10", NAV, "", None),  # empty prompt
    ("p11", NAV, NAV_HTML * 3, None),
    ("p12", NAV, NAV_HTML, None),
    (None, NAV, NAV_HTML, None),  # no id: counted, not recorded
    ("p12", NAV, NAV_HTML + "<b>dup</b>", None),  # same id again: predicted once
]
BAD = {"p04": "empty prompt_text", "p05": "unknown task", "p07": "empty prompt_text", "p08": "unknown task",
       "p10": "empty prompt_text"}
KEYED = sorted({p[0] for p in PAGES if p[0] is not None})


def write_pages_db(path: Path, pages=PAGES, table: str = "pages") -> Path:
    con = duckdb.connect(str(path))
    columns = "id VARCHAR, task VARCHAR, prompt_text VARCHAR, system_prompt VARCHAR"
    con.execute(f"CREATE TABLE {table} ({columns})")
    con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", pages)
    con.close()
    return path


def predictions(db: Path) -> dict[str, dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT id, task, output, valid, model_sha, created_at, error, engine FROM predictions").fetchall()
    finally:
        con.close()
    columns = ("id", "task", "output", "valid", "model_sha", "created_at", "error", "engine")
    assert len(rows) == len({r[0] for r in rows}), "duplicate prediction ids"
    return {r[0]: dict(zip(columns, r)) for r in rows}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_gemma):
    """The shared tiny base (also a merged export: config.json + safetensors), a run with an adapter, eval config."""
    root = tmp_path_factory.mktemp("backfill")
    base = tiny_gemma
    adapter = make_adapter(base, root / "runs" / "20260101T000000Z" / "adapter")
    datasets = write_datasets_config(root / "datasets.yaml", root / "processed")
    config = root / "eval.yaml"
    config.write_text(yaml.safe_dump(eval_config_dict(root, "latest", datasets)))
    return root, base, adapter, config


def _cfg(config: Path) -> EvalConfig:
    return EvalConfig.model_validate(yaml.safe_load(config.read_text()))


def test_full_run_predicts_each_keyed_page_once_and_records_bad_rows(models, tmp_path):
    _, base, adapter, config = models
    db = write_pages_db(tmp_path / "pages.duckdb")
    calls = []
    s = backfill(db, "pages", adapter.parent, _cfg(config), batch_size=4, progress=lambda *a: calls.append(a))

    got = predictions(db)
    assert sorted(got) == KEYED
    assert (s.selected, s.skipped, s.predicted, s.bad, s.null_ids, s.duplicate_ids) == (12, 0, 7, 5, 1, 1)
    assert s.valid == 7 and s.valid_rate == 1.0 and s.batches == 3
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    sha = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes() + b"\n" + str(base).encode())
    assert s.model_sha == sha.hexdigest() and {p["model_sha"] for p in got.values()} == {s.model_sha}
    for pid, p in got.items():
        if pid in BAD:
            assert p["valid"] is False and p["output"] is None and BAD[pid] in p["error"], p
        else:
            # valid; a slot the budget or the string bound cut is named in error (a random model rambles)
            assert p["valid"] is True and (p["error"] is None or p["error"].startswith("closed early")), p
    assert {got[i]["output"] for i in ("p01", "p02", "p06", "p11", "p12")} <= {"YES", "NO"}
    for pid in ("p03", "p09"):
        assert list(json.loads(got[pid]["output"])) == list(SLOTS) and got[pid]["task"] == PRODUCT  # catalog order
    assert "pricing_guesser" in got["p05"]["error"] and got["p08"]["task"] is None

    again = backfill(db, "pages", adapter.parent, _cfg(config))
    assert (again.selected, again.skipped, again.written) == (12, 12, 0)
    assert predictions(db) == got


def test_limit_and_task_filters_then_resume_with_a_larger_limit(models, tmp_path):
    _, base, _, config = models
    db = write_pages_db(tmp_path / "pages.duckdb")
    s = backfill(db, "pages", base, _cfg(config), limit=3, task=NAV)  # the base dir as a merged export
    got = predictions(db)
    assert sorted(got) == ["p01", "p02", "p04"] and (s.predicted, s.bad) == (2, 1)
    assert s.model_sha == hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()

    s = backfill(db, "pages", base, _cfg(config), limit=5, task=NAV)
    assert sorted(predictions(db)) == ["p01", "p02", "p04", "p06", "p07"] and (s.skipped, s.written) == (3, 2)
    s = backfill(db, "pages", base, _cfg(config), task=PRODUCT)
    assert (s.selected, s.predicted) == (2, 2) and {"p03", "p09"} <= set(predictions(db))


def test_predictions_of_another_model_are_kept_with_a_warning(models, tmp_path):
    _, base, adapter, config = models
    db = write_pages_db(tmp_path / "pages.duckdb", PAGES[:2])
    backfill(db, "pages", base, _cfg(config), limit=1)
    s = backfill(db, "pages", adapter, _cfg(config))
    assert (s.skipped, s.predicted) == (1, 1)
    assert any("1 page(s) already have a prediction of another model" in w for w in s.warnings)
    assert len({p["model_sha"] for p in predictions(db).values()}) == 2


def test_integer_ids_keep_their_type(models, tmp_path):
    _, base, _, config = models
    db = tmp_path / "pages.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE pages (id BIGINT, task VARCHAR, prompt_text VARCHAR)")
    con.executemany("INSERT INTO pages VALUES (?, ?, ?)", [(2, NAV, NAV_HTML), (1, NAV, "")])
    con.close()
    s = backfill(db, "pages", base, _cfg(config))
    assert (s.predicted, s.bad) == (1, 1) and sorted(predictions(db)) == [1, 2]


@pytest.mark.parametrize("case, message", [
    ("no_db", "DuckDB file"), ("no_table", "no table 'pages'"), ("no_column", "lacks column(s) prompt_text"),
    ("no_model", "does not exist"), ("not_a_model", "no PEFT adapter"), ("bad_task", "--task 'nope'"),
])
def test_bad_input_is_a_one_line_user_error(models, tmp_path, case, message):
    _, base, _, config = models
    db = tmp_path / "pages.duckdb"
    if case == "no_table":
        write_pages_db(db, table="other")
    elif case == "no_column":
        con = duckdb.connect(str(db))
        con.execute("CREATE TABLE pages (id VARCHAR, task VARCHAR)")
        con.close()
    elif case != "no_db":
        write_pages_db(db)
    model = {"no_model": tmp_path / "missing", "not_a_model": tmp_path}.get(case, base)
    with pytest.raises(UserError) as exc:
        backfill(db, "pages", model, _cfg(config), task="nope" if case == "bad_task" else None)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert case != "no_db" or not db.exists()  # never creates an empty database


def test_a_missing_source_is_reported_before_the_model(tmp_path):
    """Both wrong: the database is named first, whatever --model says (no model is looked at)."""
    from scripts.config import REPO_ROOT, load_config
    from scripts.evaluation.generation.config import EvalConfig

    cfg = load_config(REPO_ROOT / "configs/eval.yaml", EvalConfig)
    with pytest.raises(UserError) as exc:
        backfill(tmp_path / "pages.duckdb", "pages", tmp_path / "no-model", cfg)
    assert str(exc.value) == (f"DuckDB file {tmp_path / 'pages.duckdb'} not found; pass --source PATH of an "
                              "existing database")


def test_prompt_longer_than_the_context_is_a_bad_row_not_a_crash(models, tmp_path):
    _, base, _, config = models
    short_context = tmp_path / "short"  # a copy whose config.json is edited: the shared model stays as it is
    shutil.copytree(base, short_context)
    model_config = json.loads((short_context / "config.json").read_text())
    model_config["max_position_embeddings"] = 256
    (short_context / "config.json").write_text(json.dumps(model_config))
    pages = [("a", NAV, NAV_HTML, None), ("b", NAV, NAV_HTML * 40, None), ("c", NAV, NAV_HTML, None)]
    db = write_pages_db(tmp_path / "pages.duckdb", pages)

    s = backfill(db, "pages", short_context, _cfg(config))

    got = predictions(db)
    assert (s.predicted, s.bad) == (2, 1) and got["a"]["valid"] and got["c"]["valid"]
    assert got["b"]["valid"] is False and "exceeds the model's context of 256" in got["b"]["error"]
    assert backfill(db, "pages", short_context, _cfg(config)).skipped == 3  # a rerun does not stop on it


def test_a_predictions_table_of_an_earlier_backfill_gains_the_engine_column(tmp_path):
    from scripts.ops.backfill import ensure_predictions

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE predictions (id VARCHAR PRIMARY KEY, task VARCHAR, output VARCHAR, valid BOOLEAN NOT "
                "NULL, model_sha VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, error VARCHAR)")
    con.execute("INSERT INTO predictions VALUES ('a', 'nav', 'YES', true, 'sha', now(), NULL)")
    ensure_predictions(con, "VARCHAR")
    assert con.execute("SELECT id, output, engine FROM predictions").fetchall() == [("a", "YES", None)]
    con.close()
