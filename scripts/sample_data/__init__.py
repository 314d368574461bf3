"""Realistic sample `dataset.duckdb` for the two crawler tasks; no network, no model.

    fab dataset.sample                      # the task wraps this module
    python -m scripts.sample_data --output data/raw/dataset.duckdb --rows 2000 --seed 0

    from pathlib import Path
    from scripts.sample_data import generate_sample
    summary = generate_sample(Path("data/raw/dataset.duckdb"), rows=2000, seed=0)

The file holds one table, `examples` (the raw contract, `scripts.contracts.RAW_COLUMNS`):
`id, task, prompt_text, response_strong, metadata (JSON text), slot_specs
(JSON text, NULL for nav rows), system_prompt (NULL except a few overrides)`.

What it imitates:
- 50 invented shops in 7 locales (words, price formats, currencies), each with
  one fixed HTML layout family: schema.org microdata, JSON-LD, plain divs,
  legacy tables, Open Graph meta tags. Big shops and a long tail; with
  rows >= 400 every shop has at least 3 rows. About a third of the shops serve
  from `www.<domain>`, while `metadata.domain` is the bare domain.
- `navpage_classifier`: a YES/NO question, the page URL and numbered
  `last_scrape_keyword_sections`. Listing pages show many repeated product
  cards, result counts, sorting, filters, pagination; product, blog, cart and
  help pages do not (but share words such as "add to cart"). About 3 % of nav
  rows are ambiguous pages whose label is a coin flip.
- `productpage_extractor`: an instruction, the slot catalog, the URL and a
  mutilated HTML snippet (cut mid-tag at both ends, dropped attributes, cookie
  banners, menus, footers, tracking scripts). String values of the answer
  appear verbatim in the snippet; prices appear in the shop's locale format.
  `currency` (ISO code) and `availability` (`in_stock|out_of_stock|preorder|
  limited`) are normalised codes, shown on the page as symbols and words.
  Other products share the page: "customers also bought" and "recently
  viewed" strips with their own titles, prices, images, ratings, stock badges,
  add-to-cart buttons (and microdata / JSON-LD ItemLists on those shops).
  About 12 % of snippets end inside the product, after the prices. Like real
  shops, many products show no brand, breadcrumb, SKU or rating (a quarter to
  a third each, `MISSING_SHARE`), so null is an answer the model sees often.
- What real pages do around the main product's values (the failures of issue 21):
  image-gallery widgets before the name ("Roll over image to zoom in"), brands
  and shop names with numbers ("365 by Marlow Market", "Preisfuchs 360"), an
  instalment, free-delivery threshold or saving beside the price, "frequently
  bought together" bundles with their own prices and total, breadcrumbs with
  link markup, the shop's separator and the product as the current item,
  ratings out of 10 or in percent (per shop; the label is on the catalog's 0-5
  scale), and stock lines in free text (several phrasings per state and
  locale) mapped to the catalog's enum.
- The label is what a careful strong model reads for the main product in the
  snippet it is shown: a value cut off or never shown is null, a value shown
  is given, strips never leak into it. Availability comes from the stock line,
  else structured data, else a live add-to-cart button (`in_stock`: some shops
  show only the button); a page with neither says null (it offers a wishlist
  button). `tests/scripts/test_sample_labels.py` re-reads every page to check.
- The strong model's raw style varies (`yes`, `No.`, pretty JSON, code fences).
- `dirty_rate` of the rows are deliberately broken for the cleaner (duplicate
  id, unknown task, blank prompt, truncated JSON, label outside the set,
  slot_specs that is not JSON). Dirty rows are evenly spread and chosen
  without touching the per-row generator, so every other row is identical to
  the table generated with `dirty_rate=0`.

Each row comes from `random.Random(f"{seed}:{i}")`, so chunk size never
changes the output and the same seed and row count give identical tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from scripts.config import UserError
from scripts.contracts import RAW_COLUMNS
from scripts.sample_data.nav import _nav_row
from scripts.sample_data.pages import _product_row
from scripts.sample_data.products import Product, Section
from scripts.sample_data.shops import (
    _SHOP_CUM_WEIGHTS,
    _SLOT_SPECS_JSON,
    AMBIGUOUS_SHARE,
    AVAILABILITY,
    BASE_CRAWL_DATE,
    CORE_CUT_SHARE,
    COVERAGE_ROWS_PER_SHOP,
    DIV_CLASSES,
    IN_STOCK_BUTTON_ONLY_SHARE,
    LAYOUTS,
    MISSING_SHARE,
    NAV_INSTRUCTION,
    NAV_SHARE,
    NAV_TASK,
    NO_DOMAIN_SHARE,
    NULL_METADATA_SHARE,
    PRODUCT_INSTRUCTION,
    PRODUCT_TASK,
    RECENT_SHARE,
    RELATED_SHARE,
    SHOP_TABLE,
    SHOPS,
    SHOPS_BY_DOMAIN,
    SLOT_DESCRIPTIONS,
    SLOT_SPECS,
    SLOT_TYPES,
    SYSTEM_OVERRIDE_SHARE,
    SYSTEM_OVERRIDES,
    YES_SHARE,
    ZIPF_EXPONENT,
    Shop,
)
from scripts.sample_data.vocabulary import (
    _BAD_LABELS,
    _BAD_SLOT_SPECS,
    _BLANK_PROMPTS,
    _NAV_DIRT,
    _PRODUCT_DIRT,
    _UNKNOWN_TASKS,
    BRANDS,
    COLORS,
    CURRENCY_RATE,
    DEPARTMENTS,
    DIRTY_REASONS,
    KINDS,
    LOCALES,
    SENTENCES,
    WORDS,
    Kind,
)

__all__ = [
    "AMBIGUOUS_SHARE",
    "ARROW_SCHEMA",
    "AVAILABILITY",
    "BASE_CRAWL_DATE",
    "BRANDS",
    "COLORS",
    "COLUMNS",
    "CORE_CUT_SHARE",
    "COVERAGE_ROWS_PER_SHOP",
    "CURRENCY_RATE",
    "DEPARTMENTS",
    "DIRTY_REASONS",
    "DIV_CLASSES",
    "IN_STOCK_BUTTON_ONLY_SHARE",
    "KINDS",
    "Kind",
    "LAYOUTS",
    "LOCALES",
    "MISSING_SHARE",
    "NAV_INSTRUCTION",
    "NAV_SHARE",
    "NAV_TASK",
    "NO_DOMAIN_SHARE",
    "NULL_METADATA_SHARE",
    "PRODUCT_INSTRUCTION",
    "PRODUCT_TASK",
    "Product",
    "RECENT_SHARE",
    "RELATED_SHARE",
    "Row",
    "SENTENCES",
    "SHOPS",
    "SHOPS_BY_DOMAIN",
    "SHOP_TABLE",
    "SLOT_DESCRIPTIONS",
    "SLOT_SPECS",
    "SLOT_TYPES",
    "SYSTEM_OVERRIDES",
    "SYSTEM_OVERRIDE_SHARE",
    "SampleSummary",
    "Section",
    "Shop",
    "WORDS",
    "YES_SHARE",
    "ZIPF_EXPONENT",
    "generate_sample",
    "main",
]

COLUMNS = RAW_COLUMNS  # rows are tuples in this order
ARROW_SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])


class SampleSummary(BaseModel):
    path: Path
    rows: int
    tasks: dict[str, int]  # rows per value of the `task` column (dirty slugs included)
    labels: dict[str, int]  # nav rows per intended label
    dirty: int
    dirty_by_reason: dict[str, int]
    seconds: float


class Row(NamedTuple):
    id: str
    task: str
    prompt_text: str
    response_strong: str
    metadata: str | None
    slot_specs: str | None
    system_prompt: str | None
    label: str | None  # intended nav label; not a column


# --- rows -------------------------------------------------------------------


def _row_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")  # str seeds hash with sha512: stable across runs


def _row_task(rng: random.Random) -> str:
    """Must be the first draw of the row generator, so `_row_id` can replay it."""
    return NAV_TASK if rng.random() < NAV_SHARE else PRODUCT_TASK


def _row_id(seed: int, index: int) -> str:
    prefix = "nav" if _row_task(_row_rng(seed, index)) == NAV_TASK else "prod"
    return f"{prefix}-{index:06d}"


def _pick_shop(rng: random.Random, index: int, coverage_order: list[int]) -> Shop:
    if index < len(coverage_order):
        return SHOPS[coverage_order[index]]
    return rng.choices(SHOPS, cum_weights=_SHOP_CUM_WEIGHTS)[0]


def _metadata(rng: random.Random, seed: int, shop: Shop, url: str) -> str | None:
    draw = rng.random()
    if draw < NULL_METADATA_SHARE:
        return None
    crawled = BASE_CRAWL_DATE + timedelta(days=seed % 180 + rng.randrange(90))
    meta: dict[str, str] = {"url": url, "domain": shop.domain, "locale": shop.locale, "layout": shop.layout}
    if draw < NULL_METADATA_SHARE + NO_DOMAIN_SHARE:
        del meta["domain"]
    meta["crawled_at"] = crawled.isoformat()
    return json.dumps(meta, ensure_ascii=False)


def _build_row(seed: int, index: int, coverage_order: list[int]) -> Row:
    rng = _row_rng(seed, index)
    task = _row_task(rng)
    shop = _pick_shop(rng, index, coverage_order)
    if task == NAV_TASK:
        url, prompt, response, label = _nav_row(rng, shop)
        slot_specs = None
    else:
        url, prompt, response = _product_row(rng, shop)
        label, slot_specs = None, _SLOT_SPECS_JSON
    metadata = _metadata(rng, seed, shop, url)
    system_prompt = SYSTEM_OVERRIDES[task] if rng.random() < SYSTEM_OVERRIDE_SHARE else None
    row_id = f"{'nav' if task == NAV_TASK else 'prod'}-{index:06d}"
    return Row(row_id, task, prompt, response, metadata, slot_specs, system_prompt, label)


# --- dirty rows -------------------------------------------------------------


def _dirty_phase(seed: int) -> float:
    return random.Random(f"{seed}:dirty-phase").random()


def _is_dirty(index: int, rate: float, phase: float) -> bool:
    """Evenly spread: exactly floor(rows * rate + phase) dirty rows, independent of chunking."""
    return math.floor((index + 1) * rate + phase) > math.floor(index * rate + phase)


def _clean_earlier_row(rng: random.Random, index: int, rate: float, phase: float) -> int | None:
    """An earlier row that keeps its own id, so copying that id really duplicates it."""
    for _ in range(min(index, 20)):
        candidate = rng.randrange(index)
        if not _is_dirty(candidate, rate, phase):
            return candidate
    return None


def _dirty_row(row: Row, seed: int, index: int, rate: float, phase: float) -> tuple[Row, str]:
    rng = random.Random(f"{seed}:{index}:dirty")
    reasons = _NAV_DIRT if row.task == NAV_TASK else _PRODUCT_DIRT
    reason = rng.choice(reasons)
    if reason == "duplicate_id":
        original = _clean_earlier_row(rng, index, rate, phase)
        if original is not None:
            return row._replace(id=_row_id(seed, original)), reason
        reason = rng.choice(reasons[1:])
    if reason == "unknown_task":
        return row._replace(task=rng.choice(_UNKNOWN_TASKS)), reason
    if reason == "empty_prompt":
        return row._replace(prompt_text=rng.choice(_BLANK_PROMPTS)), reason
    if reason == "label_outside_set":
        return row._replace(response_strong=rng.choice(_BAD_LABELS)), reason
    if reason == "invalid_json":
        compact = json.dumps(json.loads(_strip_fence(row.response_strong)), ensure_ascii=False)
        return row._replace(
            response_strong=compact[: rng.randint(len(compact) // 3, len(compact) - 2)]
        ), reason
    return row._replace(slot_specs=rng.choice(_BAD_SLOT_SPECS)), reason


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1].rsplit("```", 1)[0]
    return text


# --- writing ----------------------------------------------------------------


def _arrow_chunk(rows: list[Row]) -> pa.Table:
    columns = [pa.array([row[i] for row in rows], pa.string()) for i in range(len(COLUMNS))]
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


class _Tally:
    """Counts for the summary, kept while rows stream past."""

    def __init__(self) -> None:
        self.tasks: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()


def _generate_rows(seed: int, start: int, stop: int, dirty_rate: float, tally: _Tally) -> list[Row]:
    coverage_order = _coverage_order(seed)
    phase = _dirty_phase(seed)
    chunk = []
    for index in range(start, stop):
        row = _build_row(seed, index, coverage_order)
        if row.label:
            tally.labels[row.label] += 1
        if dirty_rate and _is_dirty(index, dirty_rate, phase):
            row, reason = _dirty_row(row, seed, index, dirty_rate, phase)
            tally.reasons[reason] += 1
        tally.tasks[row.task] += 1
        chunk.append(row)
    return chunk


@lru_cache(maxsize=8)
def _coverage_order(seed: int) -> list[int]:
    """Shop indexes for the first rows, so that every shop shows up a few times."""
    order = [i % len(SHOPS) for i in range(COVERAGE_ROWS_PER_SHOP * len(SHOPS))]
    random.Random(f"{seed}:coverage").shuffle(order)
    return order


def _insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    con.register("arrow_chunk", table)
    con.execute("INSERT INTO examples SELECT * FROM arrow_chunk")
    con.unregister("arrow_chunk")


def _write_table(
    path: Path,
    rows: int,
    seed: int,
    dirty_rate: float,
    chunk_rows: int,
    progress: Callable[[int], None] | None,
    tally: _Tally,
) -> None:
    """Stream chunks into DuckDB; one writer thread inserts chunk k while chunk k+1 is built."""
    con = duckdb.connect(str(path))
    try:
        con.execute("SET memory_limit = '128MB'")  # keeps RSS flat for 100k+ rows
        con.execute("CREATE TABLE examples (" + ", ".join(f"{c} VARCHAR" for c in COLUMNS) + ")")
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future | None = None
            written = 0
            for start in range(0, rows, chunk_rows):
                stop = min(start + chunk_rows, rows)
                table = _arrow_chunk(_generate_rows(seed, start, stop, dirty_rate, tally))
                if pending is not None:
                    pending.result()  # at most two chunks in memory; re-raises insert errors
                    if progress:
                        progress(written)
                pending, written = writer.submit(_insert, con, table), stop
            if pending is not None:
                pending.result()
                if progress:
                    progress(written)
    finally:
        con.close()


def sample_prompts(count: int, seed: int = 0) -> list[str]:
    """The prompt texts of the first ``count`` clean rows of the sample (both tasks), without a table."""
    return [row.prompt_text for row in _generate_rows(seed, 0, count, 0.0, _Tally())]


def generate_sample(
    output: Path,
    rows: int = 2000,
    seed: int = 0,
    dirty_rate: float = 0.02,
    *,
    chunk_rows: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> SampleSummary:
    """Write `rows` examples to a fresh DuckDB file at `output` (atomically replaced).

    `progress`, if given, is called with the number of rows written after each chunk.
    """
    if rows < 0:
        raise UserError(f"rows must be >= 0, got {rows}")
    if not 0 <= dirty_rate <= 1:
        raise UserError(f"dirty_rate must be between 0 and 1, got {dirty_rate}")
    if chunk_rows <= 0:
        raise UserError(f"chunk_rows must be > 0, got {chunk_rows}")
    started = time.perf_counter()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    _remove(tmp)
    tally = _Tally()
    try:
        _write_table(tmp, rows, seed, dirty_rate, chunk_rows, progress, tally)
        os.replace(tmp, output)
    finally:
        _remove(tmp)
    return SampleSummary(
        path=output,
        rows=rows,
        tasks=dict(sorted(tally.tasks.items())),
        labels=dict(sorted(tally.labels.items())),
        dirty=sum(tally.reasons.values()),
        dirty_by_reason=dict(sorted(tally.reasons.items())),
        seconds=round(time.perf_counter() - started, 3),
    )


def _remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        candidate.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("data/raw/dataset.duckdb"))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dirty-rate", type=float, default=0.02)
    args = parser.parse_args(argv)
    summary = generate_sample(args.output, args.rows, args.seed, args.dirty_rate)
    print(summary.model_dump_json(indent=2))
