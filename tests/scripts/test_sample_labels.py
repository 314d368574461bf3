"""The sample's extraction labels say what a careful strong model reads on the page it is shown.

For every slot, an independent reader looks at the evidence in the (cut) snippet the model
sees, with the related-product strips removed, and compares it with `response_strong` in
both directions: a labelled value must be visible on the main product, and a value the
page shows for the main product must be labelled (null only when the page has none).

    nice -n 10 .venv/bin/pytest tests/scripts/test_sample_labels.py -q
"""

from __future__ import annotations

import html as htmllib
import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from scripts import sample_data as sd
from scripts.sample_data.vocabulary import DEPARTMENTS, STOCK_PHRASES

PAGES = 300  # product pages checked per seed

# --- the reader -------------------------------------------------------------

_SCHEMA_STATES = {"InStock": "in_stock", "OutOfStock": "out_of_stock", "PreOrder": "preorder",
                  "LimitedAvailability": "limited"}
_OG_STATES = {"in stock": "in_stock", "out of stock": "out_of_stock", "preorder": "preorder"}
_NUMBER = r"\d{1,3}(?:[.,\u202f ]\d{3})*[.,]\d{2}"
_PRICE_RE = re.compile(rf"(?P<pre>[$£€])\s?(?P<a>{_NUMBER})|(?P<b>{_NUMBER})\s?(?P<post>€|zł)")
_SYMBOLS = {"$": "USD", "£": "GBP", "€": "EUR", "zł": "PLN"}
_IMAGE_RE = re.compile(r"https?://[^\s\"'<>]+?\.(?:jpe?g|png|webp)", re.IGNORECASE)


def _words(key: str) -> list[str]:
    return sorted(set(sd.WORDS[key].values()), key=len, reverse=True)


def _pattern(key: str, field: str, value: str) -> re.Pattern:
    """All locales' phrasings of a WORDS entry with one `{field}` placeholder."""
    alternatives = [re.escape(w).replace(re.escape("{" + field + "}"), f"({value})") for w in _words(key)]
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def _phrases(state: str) -> list[str]:
    return sorted({p for phrases in STOCK_PHRASES[state].values() for p in phrases}, key=len, reverse=True)


def _fill(text: str, **fields: str) -> str:
    """A literal phrase as a regex, its `{field}` placeholders replaced by the regexes given."""
    pattern = re.escape(text)
    for field, value in fields.items():
        pattern = pattern.replace(re.escape("{" + field + "}"), value)
    return f"(?:{pattern})"


_LIMITED_RE = re.compile("|".join(_fill(p, n=r"\d+") for p in _phrases("limited")))
# a rating on the shop's scale, and the divisor that brings it to the catalog's 0-5
_RATING_RES = ((_pattern("out_of", "r", r"\d(?:[.,]\d)?"), 1),
               (_pattern("out_of_10", "r", r"\d{1,2}(?:[.,]\d)?"), 2),
               (_pattern("rating_percent", "p", r"\d{1,3}"), 20))
_REVIEWS_RE = _pattern("reviews", "n", r"\d+")
_RELATED_HEADINGS = "|".join(
    re.escape(w) for key in ("related", "recently_viewed", "bundle") if key in sd.WORDS for w in _words(key)
)
_MONEY = r"(?:[$£€]\s?\d[\d.,\u202f ]*\d|\d[\d.,\u202f ]*\d\s?(?:€|zł))"
_PRICE_NOTE_RE = re.compile("|".join(  # instalments, free-delivery thresholds, savings: not the price
    _fill(w, n=r"\d+", x=_MONEY) for key in ("installments", "free_shipping", "you_save") for w in _words(key)))
_RELATED_SECTION_RE = re.compile(
    rf"<section[^>]*>\s*<h[23][^>]*>(?:{_RELATED_HEADINGS})</h[23]>.*?</section>", re.DOTALL
)
_RELATED_TAIL_RE = re.compile(rf"<h[23][^>]*>(?:{_RELATED_HEADINGS})</h[23]>.*", re.DOTALL)


def _number(text: str) -> float:
    decimal = text[-3]
    whole = re.sub(r"[^\d]", "", text[:-3])
    assert decimal in ".,", text
    return float(f"{whole}.{text[-2:]}")


def _word_re(words: list[str]) -> re.Pattern:
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)")


_STATE_WORDS = {state: _word_re(_phrases(state)) for state in ("in_stock", "out_of_stock", "preorder")}
_CART_RE = _word_re(_words("add_to_cart"))
_SKU_WORDS_RE = _word_re(_words("sku"))
_DEPARTMENT_RE = _word_re(sorted({name for names in DEPARTMENTS.values() for name in names.values()}))
_HOME_WORDS = set(_words("home"))
_BRAND_RE = _word_re(sorted(sd.BRANDS, key=len, reverse=True))


def split_prompt(prompt: str) -> tuple[str, str]:
    url = re.search(r"^URL: (\S+)$", prompt, re.MULTILINE).group(1)
    return url, prompt.split("\nHTML:\n", 1)[1]


def main_product_html(snippet: str) -> str:
    """The snippet without related-product strips (which carry other products' values)."""
    main = _RELATED_SECTION_RE.sub(" ", snippet)
    return _RELATED_TAIL_RE.sub(" ", main)  # an unwrapped strip runs to the end of the page


def _without_site_chrome(main: str) -> str:
    """Drop the header, menus, footer and the head's title (the shop's name is not a breadcrumb)."""
    main = re.sub(r"(?:<title>|^)[^<]*</title>", " ", main)  # the snippet may start inside it
    main = re.sub(r"<header[^>]*>.*?</header>", " ", main, flags=re.DOTALL)
    main = re.sub(
        r"<nav(?P<attrs>[^>]*)>.*?</nav>",
        lambda m: m.group(0) if "breadcrumb" in m.group("attrs") else " ",
        main,
        flags=re.DOTALL,
    )
    return re.sub(r"<footer[^>]*>.*?</footer>", " ", main, flags=re.DOTALL)


def _visible_text(main: str) -> str:
    text = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", main, flags=re.DOTALL)
    text = re.sub(r"<[^>]*>", " ", text)
    return htmllib.unescape(re.sub(r"\s+", " ", text))


def _json_ld(main: str) -> list[dict]:
    blocks = []
    for body in re.findall(r'<script type="application/ld\+json">(.*?)</script>', main, re.DOTALL):
        try:
            blocks.append(json.loads(body))
        except ValueError:
            pass  # a block the cut broke shows nothing reliable
    return blocks


def _meta(main: str, prop: str) -> list[str]:
    return re.findall(rf'<meta (?:property|itemprop)="{re.escape(prop)}" content="([^"]*)"', main)


def _struck_spans(main: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"<(del|s)\b[^>]*>.*?</\1>", main, re.DOTALL)]


def _without_hidden(main: str) -> str:
    """A `display:none` element shows nothing (its innermost form: nested hidden tags are rare)."""
    return re.sub(r'<(div|p|span|li)\b[^>]*style="display:none"[^>]*>[^<]*</\1>', " ", main)


def read_evidence(url: str, snippet: str) -> dict:
    """What the page shows for its main product, slot by slot (sets of candidate values)."""
    main = _without_hidden(main_product_html(snippet))
    body = _PRICE_NOTE_RE.sub(" ", _without_site_chrome(main))
    text = _visible_text(body)
    products = [b for b in _json_ld(main) if b.get("@type") == "Product"]
    crumbs = [b for b in _json_ld(main) if b.get("@type") == "BreadcrumbList"]
    offers = [p.get("offers") or {} for p in products]
    ev: dict = {slot: set() for slot in sd.SLOT_TYPES}  # + markers, body and text

    struck = _struck_spans(body)
    for m in _PRICE_RE.finditer(body):
        value = _number(m.group("a") or m.group("b"))
        inside = any(a <= m.start() < b for a, b in struck)
        ev["original_price" if inside else "price"].add(value)
        ev["currency"].add(_SYMBOLS[m.group("pre") or m.group("post")])
    ev["price"] |= {float(v) for v in re.findall(r'itemprop="price" content="([\d.]+)"', body)}
    ev["price"] |= {float(v) for v in _meta(body, "product:price:amount")}
    ev["price"] |= {float(o["price"]) for o in offers if "price" in o}
    ev["currency"] |= set(re.findall(r'itemprop="priceCurrency" content="([A-Z]{3})"', body))
    ev["currency"] |= set(_meta(body, "product:price:currency"))
    ev["currency"] |= {o["priceCurrency"] for o in offers if "priceCurrency" in o}

    stated = set(_LIMITED_RE.findall(text)) and {"limited"}
    rest = _LIMITED_RE.sub(" ", text)
    stated |= {state for state, pattern in _STATE_WORDS.items() if pattern.search(rest)}
    structured = {_SCHEMA_STATES[s] for s in re.findall(r"schema\.org/(\w+)", body) if s in _SCHEMA_STATES}
    structured |= {_OG_STATES[v] for v in _meta(body, "product:availability") if v in _OG_STATES}
    buy = bool(_CART_RE.search(re.sub(r"<button[^>]*\bdisabled\b[^>]*>.*?</button>", " ", body)))
    buy |= "buy.gif" in body
    ev["availability"] = _expected_availability(stated, structured, buy)

    ev["title"] = {m for m in re.findall(r"<h1[^>]*>([^<]+)</h1>", body)}
    ev["title"] |= {p["name"] for p in products if "name" in p} | set(_meta(body, "og:title"))
    ev["brand"] = set(_BRAND_RE.findall(text)) | set(_meta(body, "product:brand"))
    ev["brand"] |= {p["brand"]["name"] for p in products if isinstance(p.get("brand"), dict)}
    brand_markers = ('itemprop="brand"', "product:brand") + tuple(f"<td>{w}</td>" for w in _words("brand"))
    ev["brand_marked"] = any(marker in body for marker in brand_markers)
    ev["sku_marked"] = bool(_SKU_WORDS_RE.search(text)) or any(
        marker in body for marker in ('itemprop="sku"', "retailer_item_id")
    ) or any("sku" in p for p in products)
    ev["categories_marked"] = bool(crumbs) or bool(_DEPARTMENT_RE.search(text)) or any(
        marker in body for marker in ("breadcrumb", "product:category")
    )
    ev["url_names_a_category"] = _url_has_category_path(url)
    ev["image_url"] = set(_IMAGE_RE.findall(body))
    ev["image_url"] |= {image for p in products for image in p.get("image", [])}

    ev["rating"] = {float(next(g for g in m if g).replace(",", ".")) / divisor
                    for pattern, divisor in _RATING_RES for m in pattern.findall(text)}
    best = re.findall(r'itemprop="bestRating" content="(\d+)"', body)
    ev["rating"] |= {float(v) / (float(best[0]) / 5 if best else 1)
                     for v in re.findall(r'itemprop="ratingValue" content="([\d.]+)"', body)}
    ev["rating"] |= {float(r["ratingValue"]) / (float(r.get("bestRating", 5)) / 5)
                     for r in (p["aggregateRating"] for p in products if "aggregateRating" in p)}
    ev["review_count"] = {int(next(g for g in m if g)) for m in _REVIEWS_RE.findall(text)}
    ev["review_count"] |= {int(v) for v in re.findall(r'itemprop="reviewCount">(\d+)<', body)}
    ev["review_count"] |= {
        int(p["aggregateRating"]["reviewCount"])
        for p in products
        if "reviewCount" in p.get("aggregateRating", {})
    }
    ev["body"], ev["text"] = body, text
    return ev


def _expected_availability(stated: set[str], structured: set[str], buy: bool) -> set:
    """The one answer the catalog allows: the most specific shown state; a live buy button is in stock."""
    if "limited" in stated or (not stated and "limited" in structured):
        return {"limited"}
    if stated:
        return stated
    if structured:
        return structured
    return {"in_stock"} if buy else {None}


def _url_has_category_path(url: str) -> bool:
    parts = urlparse(url).path.strip("/").split("/")
    slugs = {sd.products._slug(name) for names in DEPARTMENTS.values() for name in names.values()}
    return len(parts) >= 3 and parts[0] in slugs


def label_problems(prompt: str, response: str) -> list[tuple[str, str]]:
    """(slot, what is wrong) for every slot whose label disagrees with the page."""
    return answer_problems(read_evidence(*split_prompt(prompt)), json.loads(sd._strip_fence(response)))


def answer_problems(ev: dict, answer: dict) -> list[tuple[str, str]]:
    body, text = ev["body"], ev["text"]
    problems: list[tuple[str, str]] = []

    def check(slot: str, ok: bool, why: str) -> None:
        if not ok:
            problems.append((slot, why))

    title = answer["title"]  # the heading or structured name where the page has one, else its text
    check("title", title is not None and title in (ev["title"] or text), f"{title!r} not the product's name")
    brand = answer["brand"]
    if brand is None:
        check("brand", not ev["brand"] and not ev["brand_marked"], f"null but page shows {ev['brand']}")
    else:
        check("brand", ev["brand"] == {brand}, f"{brand!r} but page shows {ev['brand'] or 'none'}")

    for slot in ("price", "original_price", "rating", "review_count", "currency"):
        value, seen = answer[slot], ev[slot]
        if value is None:
            check(slot, not seen, f"null but page shows {sorted(seen)}")
        else:
            check(slot, seen == {value}, f"{value!r} but page shows {sorted(seen) or 'none'}")

    check("availability", answer["availability"] in ev["availability"],
          f"{answer['availability']!r} but page says {sorted(ev['availability'], key=str)}")

    sku = answer["sku"]
    if sku is None:
        check("sku", not ev["sku_marked"], "null but the page shows an article number")
    else:
        check("sku", re.search(rf"(?<![\w-]){re.escape(sku)}(?![\w-])", body) is not None,
              f"{sku!r} not on the main product")

    categories = answer["categories"]
    if categories is None:
        check("categories", not ev["categories_marked"], "null but the page shows a breadcrumb")
        check("categories", not ev["url_names_a_category"], "null but the URL path names the category")
    else:
        shown = all(name in text or name in body for name in categories)
        check("categories", shown and not (_HOME_WORDS & set(categories)), f"{categories} not the breadcrumb")

    image = answer["image_url"]
    if image is None:
        check("image_url", not ev["image_url"], f"null but page shows {sorted(ev['image_url'])[:1]}")
    else:
        check("image_url", ev["image_url"] == {image}, f"{image!r} but page shows {sorted(ev['image_url'])}")
    return problems


# --- the tests --------------------------------------------------------------


def product_pages(path: Path, n: int = PAGES) -> list[tuple[str, str, str, str]]:
    """(id, layout, prompt, response) of the first `n` product rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT id, prompt_text, response_strong FROM examples WHERE task = ? ORDER BY id LIMIT ?",
            [sd.PRODUCT_TASK, n],
        ).fetchall()
    finally:
        con.close()
    return [(i, sd.SHOPS_BY_DOMAIN[_host(p)].layout, p, r) for i, p, r in rows]


def _host(prompt: str) -> str:
    return (urlparse(split_prompt(prompt)[0]).hostname or "").removeprefix("www.")


def problem_counts(pages: list[tuple[str, str, str, str]]) -> tuple[Counter, dict]:
    counts, examples = Counter(), {}
    for row_id, _, prompt, response in pages:
        for slot, why in label_problems(prompt, response):
            counts[slot] += 1
            examples.setdefault(slot, (row_id, why))
    return counts, examples


@pytest.fixture(scope="module", params=[0, 5])
def pages(request, tmp_path_factory) -> list[tuple[str, str, str, str]]:
    path = tmp_path_factory.mktemp(f"labels-{request.param}") / "dataset.duckdb"
    sd.generate_sample(path, rows=2 * PAGES + 80, seed=request.param, dirty_rate=0.0)
    found = product_pages(path)
    assert len(found) == PAGES
    return found


def test_every_label_agrees_with_the_page_it_describes(pages):
    counts, examples = problem_counts(pages)
    assert not counts, f"label/page disagreements per slot: {dict(counts)}; first of each: {examples}"


def test_the_reader_covers_every_layout_and_the_hard_cases(pages):
    """The check is not vacuous: each layout and locale, nulls of every slot and related strips are in it."""
    assert {layout for _, layout, _, _ in pages} == set(sd.LAYOUTS)
    assert {sd.SHOPS_BY_DOMAIN[_host(p)].locale for _, _, p, _ in pages} == set(sd.LOCALES)
    answers = [json.loads(sd._strip_fence(r)) for _, _, _, r in pages]
    for slot in sd.SLOT_TYPES:
        if slot not in ("title", "price", "currency"):
            assert any(a[slot] is None for a in answers), slot
    assert sum("<section" in p and _RELATED_SECTION_RE.search(split_prompt(p)[1]) is not None
               for _, _, p, _ in pages) > PAGES // 5
    null_stock = [p for (_, _, p, _), a in zip(pages, answers) if a["availability"] is None]
    assert any(_CART_RE.search(split_prompt(p)[1]) for p in null_stock)  # only the strip has buy buttons
    chrome = re.compile(r"footer|newsletter|dataLayer|fbevents|adsrv|/img/pay/|cookie")
    ends_in_product = sum(not chrome.search(split_prompt(p)[1][-300:]) for _, _, p, _ in pages)
    assert ends_in_product > PAGES // 25  # snippets the crawl cut inside the product


_FILLERS = {  # a plausible value for a slot the label leaves null
    "title": "Voltara Yoga Mat X1", "brand": "Voltara", "price": 19.99, "original_price": 999.99,
    "currency": "EUR", "availability": "in_stock", "sku": "XX-123456", "categories": ["Kitchen", "Lamps"],
    "rating": 4.2, "review_count": 12, "image_url": "https://cdn.example.com/p/x.jpg",
}


def test_the_reader_flags_every_wrong_label(pages):
    """Nulling a value the page shows, or filling a null, is always caught: a pass means something."""
    missed: Counter = Counter()
    for _, _, prompt, response in pages:
        ev, answer = read_evidence(*split_prompt(prompt)), json.loads(sd._strip_fence(response))
        wrongs = [(slot, None if value is not None else _FILLERS[slot]) for slot, value in answer.items()]
        if answer["availability"] is not None:  # another state, not only null
            others = [state for state in sd.AVAILABILITY if state != answer["availability"]]
            wrongs += [("availability", state) for state in others]
        for slot, value in wrongs:
            if slot not in {s for s, _ in answer_problems(ev, answer | {slot: value})}:
                missed[slot] += 1
    assert not missed, dict(missed)


def test_the_reader_flags_values_taken_from_the_related_strips(pages):
    leaks = 0
    for _, _, prompt, response in pages:
        url, snippet = split_prompt(prompt)
        strips = [m.group(0) for m in _RELATED_SECTION_RE.finditer(snippet) if _IMAGE_RE.search(m.group(0))]
        if not strips:
            continue
        ev, answer = read_evidence(url, snippet), json.loads(sd._strip_fence(response))
        names = re.findall(r'<a[^>]*href="/p/[^"]*">([^<]+)</a>', strips[0])
        struck = _struck_spans(strips[0])
        prices = [_number(m.group("a") or m.group("b")) for m in _PRICE_RE.finditer(strips[0])
                  if not any(a <= m.start() < b for a, b in struck)]
        images = _IMAGE_RE.findall(strips[0])
        for slot, value in (("title", names[0]), ("price", prices[0]), ("image_url", images[0])):
            if value != answer[slot]:
                leaks += 1
                assert slot in {s for s, _ in answer_problems(ev, answer | {slot: value})}, (slot, value)
    assert leaks > PAGES // 2


def test_the_reader_catches_a_null_label_beside_a_buy_button():
    """The old generator's pattern: `Add to cart` after the price, no stock text, label null."""
    prompt = (f"{sd.PRODUCT_INSTRUCTION}\n\nURL: https://gadgetgrove.com/p/1\n\nHTML:\n"
              "<h1>Solvo Yoga Mat X1</h1><span>$19.99</span><button>Add to cart</button>")
    answer = dict.fromkeys(sd.SLOT_TYPES) | {"title": "Solvo Yoga Mat X1", "brand": "Solvo", "price": 19.99,
                                             "currency": "USD"}
    assert label_problems(prompt, json.dumps(answer)) == [("availability", "None but page says ['in_stock']")]
    answer["availability"] = "in_stock"
    assert label_problems(prompt, json.dumps(answer)) == []
    grid = ('<section><h3>Customers also bought</h3><div><a>Kessler Lamp</a><span>$9.99</span>'
            "<button>Add to cart</button></div></section>")
    prompt = prompt.replace("<button>Add to cart</button>", grid)
    answer["availability"] = None
    assert label_problems(prompt, json.dumps(answer)) == []  # the strip's button is not the product's


def test_the_reader_treats_hidden_and_url_only_values_as_not_shown():
    """Two more patterns of the old generator: a value inside `display:none`, a category only in the URL."""
    page = ('<h1>Solvo Yoga Mat X1</h1><span>19,99 €</span>'
            '<p>Art.-Nr. <span style="display:none">SV-1</span></p><p>Auf Lager</p>')
    prompt = f"{sd.PRODUCT_INSTRUCTION}\n\nURL: https://sportscheune.de/sport/yogamatten/x\n\nHTML:\n{page}"
    answer = dict.fromkeys(sd.SLOT_TYPES) | {"title": "Solvo Yoga Mat X1", "brand": "Solvo", "price": 19.99,
                                             "currency": "EUR", "availability": "in_stock", "sku": "SV-1"}
    assert sorted(slot for slot, _ in label_problems(prompt, json.dumps(answer))) == ["categories", "sku"]


def test_every_stock_phrase_reads_as_its_state():
    """The free-text stock lines map to one catalog state each: no phrase reads as another state."""
    for state, by_locale in STOCK_PHRASES.items():
        assert set(by_locale) == set(sd.LOCALES), state
        for locale, phrases in by_locale.items():
            for phrase in phrases:
                text = f"<p>{phrase.format(n=3)}</p>"
                stated = {"limited"} if _LIMITED_RE.search(text) else set()
                rest = _LIMITED_RE.sub(" ", text)
                stated |= {s for s, pattern in _STATE_WORDS.items() if pattern.search(rest)}
                assert _expected_availability(stated, set(), False) == {state}, (locale, phrase, stated)


def test_the_sample_teaches_the_real_page_failure_modes(pages):
    """Issue 21's failures on real pages each show up often, and the labels resist them: a gallery hint
    before the name is never the title, a brand's or shop's number never the price, a bundle, instalment
    or threshold never the price, a rating out of 10 or in percent is labelled on 0-5, free-text stock
    lines in every locale map to the enum, breadcrumbs come with links and separators."""
    seen: Counter = Counter()
    hints = {h for phrases in sd.vocabulary.GALLERY_HINTS.values() for h in phrases}
    first_phrases = {phrases[0] for by_locale in STOCK_PHRASES.values() for phrases in by_locale.values()}
    for _, _, prompt, response in pages:
        url, snippet = split_prompt(prompt)
        answer, main = json.loads(sd._strip_fence(response)), main_product_html(snippet)
        shop = sd.SHOPS_BY_DOMAIN[_host(prompt)]
        hint = next((h for h in hints if h in snippet), None)
        if hint and answer["title"] and snippet.index(hint) < snippet.find(answer["title"], snippet.index(hint)):
            seen["gallery hint before the name"] += 1
        assert answer["title"] not in hints | {shop.name}
        if answer["brand"] and re.search(r"\d", answer["brand"]):
            seen["brand with a number"] += 1
            assert answer["price"] not in {float(n) for n in re.findall(r"\d+", answer["brand"])}
        seen["shop name with a number"] += bool(re.search(r"\d", shop.name)) and shop.name in snippet
        notes = _PRICE_NOTE_RE.findall(main)
        seen["instalment, threshold or saving"] += bool(notes)
        seen["bundle with its total"] += bool(re.search("|".join(_words("bundle_total")), snippet))
        if answer["rating"] is not None and shop.rating_scale != 5:
            seen[f"rating out of {shop.rating_scale}"] += 1
            assert 0 <= answer["rating"] <= 5
        stock = [p for state in ("in_stock", "out_of_stock", "preorder") for p in _phrases(state) if p in main]
        seen["stock phrase beyond the plain one"] += any(p not in first_phrases for p in stock)
        seen["breadcrumb with link markup"] += "crumb-link" in snippet and answer["categories"] is not None
    floor = len(pages) // 20
    assert all(seen[key] > floor for key in (
        "gallery hint before the name", "brand with a number", "shop name with a number",
        "instalment, threshold or saving", "bundle with its total", "rating out of 10", "rating out of 100",
        "stock phrase beyond the plain one", "breadcrumb with link markup")), dict(seen)
