"""Products and product-page HTML: the five layout families, page boilerplate, mutilation, product rows."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

from scripts.sample_data.shops import (
    AVAILABILITY,
    BUNDLE_SHARE,
    CORE_CUT_SHARE,
    GALLERY_HINT_SHARE,
    IN_STOCK_BUTTON_ONLY_SHARE,
    PRICE_NOTE_SHARE,
    PRODUCT_INSTRUCTION,
    RECENT_SHARE,
    RELATED_SHARE,
    SLOT_DESCRIPTIONS,
    SLOT_TYPES,
    Shop,
)
from scripts.sample_data.vocabulary import (
    _NUMBER_SEPARATORS,
    _OG_AVAILABILITY,
    _OG_STATES,
    _SCHEMA_AVAILABILITY,
    BRANDS,
    COLORS,
    CURRENCY_RATE,
    DEPARTMENTS,
    GALLERY_HINTS,
    GALLERY_VIDEO,
    KINDS,
    SENTENCES,
    STOCK_PHRASES,
    WORDS,
    Kind,
)

# --- formatting helpers -----------------------------------------------------


def _fmt_number(value: float, locale: str, decimals: int = 2) -> str:
    thousands, decimal = _NUMBER_SEPARATORS[locale]
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\0").replace(".", decimal).replace("\0", thousands)


def _fmt_price(value: float, shop: Shop) -> str:
    number = _fmt_number(value, shop.locale)
    if shop.currency == "USD":
        return f"${number}"
    if shop.currency == "GBP":
        return f"£{number}"
    if shop.currency == "PLN":
        return f"{number} zł"
    return f"€ {number}" if shop.locale == "nl" else f"{number} €"


@lru_cache(maxsize=8192)
def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _word(key: str, shop: Shop, **fmt: object) -> str:
    text = WORDS[key][shop.locale]
    return text.format(**fmt) if fmt else text


def _price_value(rng: random.Random, kind: Kind, shop: Shop) -> float:
    low, high = kind.price_range
    base = rng.uniform(low, high) * CURRENCY_RATE[shop.currency]
    cents = rng.choice((99, 0, 95, 90, 49, 99))
    return round(int(base) + cents / 100, 2)


# --- products ---------------------------------------------------------------


@dataclass
class Product:
    kind: Kind
    title: str
    brand: str | None
    price: float
    original_price: float | None
    currency: str
    availability: str | None
    sku: str | None
    categories: list[str] | None
    rating: float | None
    review_count: int | None
    image_url: str | None
    limited_left: int
    url: str

    def answer(self) -> dict:
        return {slot: getattr(self, slot) for slot in SLOT_TYPES}


def _model_code(rng: random.Random) -> str:
    letters = "".join(rng.choices("ABCDEFGHKLMPRSTVXZ", k=rng.randint(1, 3)))
    number = int(10 ** rng.uniform(0.4, 3))  # 2..999, short numbers as often as long ones
    return rng.choice(
        (f"{letters}-{number}", f"{letters}{number}", f"{letters} {number} Pro", f"{letters}{number} Plus")
    )


def _product_url(rng: random.Random, shop: Shop, kind: Kind, title: str, categories: list[str] | None) -> str:
    number = rng.randint(10000, 999999)
    plural = _slug(kind.names[shop.locale][1])
    category_path = f"/{_slug(DEPARTMENTS[kind.department][shop.locale])}/{plural}/{_slug(title)}"
    path = rng.choice(
        (
            f"/{plural}/{_slug(title)}-{number}.html",
            f"/p/{number}",
            f"/product/{_slug(title)}",
            category_path,
            f"/index.php?route=product&id={number}",
        )
    )
    if path == category_path and categories is None:  # a path naming the category is a breadcrumb
        path = f"/product/{_slug(title)}"
    return f"https://{shop.host}{path}"


def _make_product(rng: random.Random, shop: Shop) -> Product:
    kind = rng.choice(KINDS)
    singular, plural = kind.names[shop.locale]
    brand = rng.choice(BRANDS) if rng.random() > 0.1 else None
    model = _model_code(rng)
    extra = rng.choice(
        ("", f", {rng.choice(COLORS[shop.locale])}", f" {rng.choice(COLORS[shop.locale])}", "")
    )
    title = f"{brand} {singular} {model}{extra}" if brand else f"{singular} {model}{extra}"
    price = _price_value(rng, kind, shop)
    original = None
    if rng.random() < 0.7:
        original = round(int(price * rng.uniform(1.1, 1.6)) + rng.choice((0.99, 0.0, 0.95)), 2)
    availability = rng.choices(AVAILABILITY, weights=(70, 12, 6, 12))[0] if rng.random() > 0.04 else None
    sku = None
    if rng.random() > 0.1:
        prefix = "".join(part[0] for part in re.split(r"[-.]", shop.domain)[:2]).upper()
        sku = rng.choice(
            (
                f"{prefix}-{rng.randint(10000, 999999)}",
                f"{rng.randint(10**7, 10**8 - 1)}",
                f"{prefix}{rng.randint(100, 999)}{model[:2].strip('- ')}",
            )
        )
    categories = [DEPARTMENTS[kind.department][shop.locale], plural] if rng.random() > 0.15 else None
    rating = review_count = None
    if rng.random() < 0.8:
        rating = round(rng.uniform(2.8, 5.0), 1)
        review_count = min(int(rng.paretovariate(1.1) * 4), 9999) if rng.random() > 0.05 else None
    image_url = f"{shop.cdn}/{_slug(title)}-{rng.randint(1, 9999)}.jpg" if rng.random() > 0.1 else None
    return Product(
        kind=kind,
        title=title,
        brand=brand,
        price=price,
        original_price=original,
        currency=shop.currency,
        availability=availability,
        sku=sku,
        categories=categories,
        rating=rating,
        review_count=review_count,
        image_url=image_url,
        limited_left=rng.randint(2, 9),
        url=_product_url(rng, shop, kind, title, categories),
    )


def _availability_text(p: Product, shop: Shop) -> str:
    if p.availability is None:
        return ""
    return (
        _word(p.availability, shop, n=p.limited_left)
        if p.availability == "limited"
        else _word(p.availability, shop)
    )


def _description(rng: random.Random, shop: Shop) -> str:
    sentences = SENTENCES[shop.locale]
    return " ".join(rng.sample(sentences, rng.randint(2, len(sentences))))


def _crumb_link(rng: random.Random, name: str, href: str) -> str:
    """Real breadcrumb links: classes, single or double quotes, sometimes a title attribute."""
    quote = rng.choice(("'", '"'))
    title = f" title={quote}{name}{quote}" if rng.random() < 0.3 else ""
    return f"<a class={quote}crumb-link{quote} href={quote}{href}{quote}{title}>{name}</a>"


def _breadcrumb_html(categories: list[str], shop: Shop, rng: random.Random | None = None,
                     current: str | None = None) -> str:
    """A breadcrumb trail: Home, the category links with the shop's separator, and for some pages the
    product itself as the current item. The label is the categories only (the catalog says so)."""
    if rng is None:  # the plain trail (listing pages)
        links = [f'<a href="/">{_word("home", shop)}</a>']
        links += [f'<a href="/{_slug(name)}">{name}</a>' for name in categories[:-1]]
        links.append(f'<span class="current">{categories[-1]}</span>')
        return '<nav class="breadcrumb" aria-label="breadcrumb">' + " &rsaquo; ".join(links) + "</nav>"
    path, links = "", [_crumb_link(rng, _word("home", shop), "/")]
    for name in categories:
        path += f"/{_slug(name)}"
        links.append(_crumb_link(rng, name, path))
    if current:
        links.append(f'<span class="current" aria-current="page">{current}</span>')
    separator = f' <span class="sep" aria-hidden="true">{shop.crumb_separator}</span> '
    items = "".join(f"<li>{link}</li>" if i == 0 else f"<li>{separator}{link}</li>" for i, link in enumerate(links))
    return f'<nav class="breadcrumb" aria-label="breadcrumb"><ol>{items}</ol></nav>'


def _rating_shown(rating: float, shop: Shop) -> tuple[str, str]:
    """(visible text, number in structured data) on the shop's scale; the label stays on 0-5."""
    if shop.rating_scale == 100:
        percent = round(rating * 20)  # ratings have one decimal, so this is exact: 4.3 -> 86
        return _word("rating_percent", shop, p=percent), str(percent)
    if shop.rating_scale == 10:
        value = round(rating * 2, 1)
        return _word("out_of_10", shop, r=_fmt_number(value, shop.locale, 1)), f"{value}"
    return _word("out_of", shop, r=_fmt_number(rating, shop.locale, 1)), f"{rating}"


def _best_rating(shop: Shop) -> str:
    """schema.org's bestRating, stated only when it is not the default 5."""
    return "" if shop.rating_scale == 5 else str(shop.rating_scale)


def _rating_html(p: Product, shop: Shop, microdata: bool = False) -> str:
    if p.rating is None:
        return ""
    text, value = _rating_shown(p.rating, shop)
    if microdata:
        count = (
            f' (<span itemprop="reviewCount">{p.review_count}</span>)' if p.review_count is not None else ""
        )
        best = f'<meta itemprop="bestRating" content="{_best_rating(shop)}">' if _best_rating(shop) else ""
        return (
            '<div class="rating" itemprop="aggregateRating" itemscope '
            'itemtype="https://schema.org/AggregateRating">'
            f'<meta itemprop="ratingValue" content="{value}">{best}{text}{count}</div>'
        )
    count = (
        f' <a href="#reviews">{_word("reviews", shop, n=p.review_count)}</a>'
        if p.review_count is not None
        else ""
    )
    stars = f'<span class="stars" style="width:{int(p.rating * 20)}%"></span>'
    return f'<div class="rating">{stars}{text}{count}</div>'


def _price_block(p: Product, shop: Shop, price_cls: str = "price", old_cls: str = "old-price") -> str:
    old = (
        f'<del class="{old_cls}">{_word("was", shop)} {_fmt_price(p.original_price, shop)}</del> '
        if p.original_price
        else ""
    )
    return f'<div class="price-box">{old}<span class="{price_cls}">{_fmt_price(p.price, shop)}</span></div>'


# --- product-page cores: parts tagged with what they show ------------------

# What one part of the page shows about the main product: slot -> True for plain slots, and
# "stock_text" / "stock_struct" / "buy" -> the availability a reader takes from stock words,
# from structured data, or from a live add-to-cart button.
Evidence = dict[str, object]
Part = tuple[str, Evidence]


@dataclass(frozen=True)
class Look:
    """How the page presents the main product's stock, drawn per page (product pages only)."""

    stock_text: bool  # a visible stock line ("In stock", "Only 3 left", ...)
    button: str  # "cart" | "cart_disabled" | "notify" | "wishlist"
    phrase: str = ""  # the stock line's words, one of the state's free-text phrasings


def _stock_phrase(rng: random.Random, state: str, shop: Shop, n: int) -> str:
    """One of the free-text phrasings of a stock state in the shop's language (the label is the state)."""
    return rng.choice(STOCK_PHRASES[state][shop.locale]).format(n=n)


def _look(rng: random.Random, p: Product, shop: Shop) -> Look:
    if p.availability is None:  # nothing said about stock, and no way to buy: null is the only answer
        return Look(stock_text=False, button="wishlist")
    shown = p.availability != "in_stock" or rng.random() >= IN_STOCK_BUTTON_ONLY_SHARE
    phrase = _stock_phrase(rng, p.availability, shop, p.limited_left)
    if p.availability == "out_of_stock":
        return Look(stock_text=True, button=rng.choice(("cart_disabled", "notify")), phrase=phrase)
    return Look(stock_text=shown, button="cart", phrase=phrase)


def _ev(*slots: str, **values: object) -> Evidence:
    return dict.fromkeys(slots, True) | values


def _stock(p: Product, look: Look) -> Evidence:
    return _ev(stock_text=p.availability) if look.stock_text else {}


def _button(look: Look, shop: Shop, cls: str, tag: str = "button") -> Part:
    """The main product's call to action; only a live add-to-cart button says "in stock"."""
    if look.button == "cart":
        return f'<{tag} class="{cls}">{_word("add_to_cart", shop)}</{tag}>', _ev(buy="in_stock")
    if look.button == "cart_disabled":
        return f'<button class="{cls}" disabled>{_word("add_to_cart", shop)}</button>', {}
    key = "notify" if look.button == "notify" else "wishlist"
    return f'<button type="button" class="{key}">{_word(key, shop)}</button>', {}


def _core_microdata(p: Product, shop: Shop, rng: random.Random, look: Look) -> list[Part]:
    parts: list[Part] = [('<div class="product-detail" itemscope itemtype="https://schema.org/Product">', {})]
    if p.categories:
        current = p.title if rng.random() < 0.3 else None
        parts.append((_breadcrumb_html(p.categories, shop, rng, current), _ev("categories")))
    parts.append((f'<h1 itemprop="name" class="pdp-title">{p.title}</h1>', _ev("title")))
    if p.brand:
        parts.append((
            f'<div class="brand">{_word("brand", shop)}: <span itemprop="brand">{p.brand}</span></div>',
            _ev("brand"),
        ))
    if p.image_url:
        parts.append((
            f'<img itemprop="image" src="{p.image_url}" alt="{p.title}" width="600" loading="lazy">',
            _ev("image_url"),
        ))
    if p.rating is not None:
        parts.append((_rating_html(p, shop, microdata=True), _rating_ev(p)))
    parts.append((
        '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">\n'
        f'<meta itemprop="priceCurrency" content="{p.currency}">',
        _ev("currency"),
    ))
    if p.original_price:
        parts.append((
            f'<del class="old-price">{_word("was", shop)} {_fmt_price(p.original_price, shop)}</del>',
            _ev("original_price"),
        ))
    price = f'<span itemprop="price" content="{p.price:.2f}">{_fmt_price(p.price, shop)}</span>'
    parts.append((price, _ev("price")))
    if p.availability:
        text = f'<span class="stock">{look.phrase}</span>' if look.stock_text else ""
        parts.append((
            f'<link itemprop="availability" href="https://schema.org/{_SCHEMA_AVAILABILITY[p.availability]}">'
            + text,
            _ev(stock_struct=p.availability) | _stock(p, look),
        ))
    parts.append(("</div>", {}))
    if p.sku:
        sku = f'<p class="sku">{_word("sku", shop)}: <span itemprop="sku">{p.sku}</span></p>'
        parts.append((sku, _ev("sku")))
    parts.append(_button(look, shop, "btn btn-primary add-to-cart"))
    parts.append((
        f'<div itemprop="description"><h2>{_word("description", shop)}</h2>'
        f"<p>{_description(rng, shop)}</p></div></div>",
        {},
    ))
    return parts


def _rating_ev(p: Product) -> Evidence:
    return _ev("rating", "review_count") if p.review_count is not None else _ev("rating")


def _core_jsonld(p: Product, shop: Shop, rng: random.Random, look: Look) -> list[Part]:
    data: dict = {"@context": "https://schema.org", "@type": "Product", "name": p.title}
    shows = _ev("title", "price", "currency")
    if p.image_url:
        data["image"] = [p.image_url]
        shows |= _ev("image_url")
    if p.brand:
        data["brand"] = {"@type": "Brand", "name": p.brand}
        shows |= _ev("brand")
    if p.sku:
        data["sku"] = p.sku
        shows |= _ev("sku")
    offer = {"@type": "Offer", "url": p.url, "priceCurrency": p.currency, "price": f"{p.price:.2f}"}
    if p.availability:
        offer["availability"] = f"https://schema.org/{_SCHEMA_AVAILABILITY[p.availability]}"
        shows |= _ev(stock_struct=p.availability)
    data["offers"] = offer
    if p.rating is not None:
        data["aggregateRating"] = {"@type": "AggregateRating", "ratingValue": _rating_shown(p.rating, shop)[1]}
        if _best_rating(shop):
            data["aggregateRating"]["bestRating"] = _best_rating(shop)
        if p.review_count is not None:
            data["aggregateRating"]["reviewCount"] = str(p.review_count)
        shows |= _rating_ev(p)
    scripts: list[Part] = [
        (f'<script type="application/ld+json">{json.dumps(data, ensure_ascii=False)}</script>', shows)
    ]
    if p.categories:
        crumbs = {
            "@context": "https://schema.org",
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": i + 1, "name": name} for i, name in enumerate(p.categories)
            ],
        }
        scripts.append((
            f'<script type="application/ld+json">{json.dumps(crumbs, ensure_ascii=False)}</script>',
            _ev("categories"),
        ))
    rng.shuffle(scripts)
    visible: list[Part] = [(f'<main id="pdp"><h1 class="title">{p.title}</h1>', _ev("title"))]
    visible.append((_price_block(p, shop), _price_ev(p)))
    if look.stock_text:
        visible.append((f'<p class="stock">{look.phrase}</p>', _stock(p, look)))
    visible.append(_button(look, shop, "cta"))
    visible.append((f'<section class="desc"><p>{_description(rng, shop)}</p></section></main>', {}))
    return scripts + visible


def _price_ev(p: Product) -> Evidence:
    return _ev("price", "currency", "original_price") if p.original_price else _ev("price", "currency")


def _core_divs(p: Product, shop: Shop, rng: random.Random, look: Look) -> list[Part]:
    c = shop.classes
    parts: list[Part] = [('<div class="container"><div class="row">', {})]
    if p.categories:
        parts.append((
            _divs_crumbs(p, shop, rng),
            _ev("categories"),
        ))
    if p.image_url:
        parts.append((
            f'<div class="gallery"><img data-src="{p.image_url}" src="{p.image_url}"></div>', _ev("image_url")
        ))
    parts.append((f'<div class="col-md-6"><div class="{c["title"]}">{p.title}</div>', _ev("title")))
    if p.brand:
        brand = f'<div class="{c["brand"]}"><a href="/{_slug(p.brand)}">{p.brand}</a></div>'
        parts.append((brand, _ev("brand")))
    if p.rating is not None:
        parts.append((_rating_html(p, shop), _rating_ev(p)))
    parts.append((_price_block(p, shop, c["price"], c["old"]), _price_ev(p)))
    if look.stock_text:
        parts.append((
            f'<div class="{c["stock"]}"><i class="icon"></i> {look.phrase}</div>',
            _stock(p, look),
        ))
    if p.sku:
        parts.append((f'<div class="meta">{_word("sku", shop)} {p.sku}</div>', _ev("sku")))
    html, ev = _button(look, shop, "btn", tag="a")
    parts.append((html + "</div></div>", ev))
    parts.append((f'<div class="tab-content"><p>{_description(rng, shop)}</p></div></div>', {}))
    return parts


def _divs_crumbs(p: Product, shop: Shop, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return '<ul class="crumbs">' + "".join(f"<li><a>{name}</a></li>" for name in p.categories) + "</ul>"
    return _breadcrumb_html(p.categories, shop, rng, p.title if rng.random() < 0.3 else None)


def _core_table(p: Product, shop: Shop, rng: random.Random, look: Look) -> list[Part]:
    parts: list[Part] = [('<table width="100%" border="0" cellpadding="2" cellspacing="0">', {})]
    if p.categories:
        parts.append((
            '<tr><td colspan="2"><small>' + f" {shop.crumb_separator} ".join(p.categories) + "</small></td></tr>",
            _ev("categories"),
        ))
    parts.append((f'<tr><td colspan="2"><font size="4"><b>{p.title}</b></font></td></tr>', _ev("title")))
    image = f'<img src="{p.image_url}" border="0" width="300">' if p.image_url else "&nbsp;"
    parts.append((
        f'<tr><td valign="top">{image}</td><td valign="top"><table cellpadding="3">',
        _ev("image_url") if p.image_url else {},
    ))

    def row(label: str, value: str, ev: Evidence) -> Part:
        return f'<tr><td class="lbl">{label}</td><td>{value}</td></tr>', ev

    if p.brand:
        parts.append(row(_word("brand", shop), p.brand, _ev("brand")))
    price = f'<font color="#cc0000"><b>{_fmt_price(p.price, shop)}</b></font>'
    if p.original_price:
        price = f"<s>{_fmt_price(p.original_price, shop)}</s><br>{price}"
    parts.append(row(_word("price", shop), price, _price_ev(p)))
    if look.stock_text:
        parts.append(row("", look.phrase, _stock(p, look)))
    if p.sku:
        parts.append(row(_word("sku", shop), p.sku, _ev("sku")))
    if p.rating is not None:
        count = f" ({_word('reviews', shop, n=p.review_count)})" if p.review_count is not None else ""
        parts.append(row("", _rating_shown(p.rating, shop)[0] + count, _rating_ev(p)))
    parts.append(("</table>", {}))
    if look.button == "cart":  # a legacy form button: its label is the value
        parts.append((f'<input type="submit" name="buy" value="{_word("add_to_cart", shop)}"></td></tr>',
                      _ev(buy="in_stock")))
    else:
        html, ev = _button(look, shop, "buy")
        parts.append((html + "</td></tr>", ev))
    parts.append((f'<tr><td colspan="2">{_description(rng, shop)}</td></tr></table>', {}))
    return parts


def _core_opengraph(p: Product, shop: Shop, rng: random.Random, look: Look) -> list[Part]:
    metas: list[tuple[str, str, Evidence]] = [
        ("og:type", "product", {}), ("og:title", p.title, _ev("title")), ("og:url", p.url, {})
    ]
    if p.image_url:
        metas.append(("og:image", p.image_url, _ev("image_url")))
    if p.brand:
        metas.append(("product:brand", p.brand, _ev("brand")))
    metas += [
        ("product:price:amount", f"{p.price:.2f}", _ev("price")),
        ("product:price:currency", p.currency, _ev("currency")),
    ]
    if p.availability:  # Open Graph has no "limited": the shop says "in stock"
        og = _OG_AVAILABILITY[p.availability]
        metas.append(("product:availability", og, _ev(stock_struct=_OG_STATES[og])))
    if p.sku:
        metas.append(("product:retailer_item_id", p.sku, _ev("sku")))
    if p.categories:
        metas.append(("product:category", " > ".join(p.categories), _ev("categories")))
    parts: list[Part] = [(f'<meta property="{prop}" content="{value}">', ev) for prop, value, ev in metas]
    parts.append(('</head><body class="pdp">', {}))
    parts.append((f"<h1>{p.title}</h1>", _ev("title")))
    parts.append((_price_block(p, shop), _price_ev(p)))
    if p.rating is not None:
        parts.append((_rating_html(p, shop), _rating_ev(p)))
    if look.stock_text:
        parts.append((f'<span class="availability">{look.phrase}</span>', _stock(p, look)))
    parts.append(_button(look, shop, "cta"))
    parts.append((f"<p>{_description(rng, shop)}</p>", {}))
    return parts


_CORE_BUILDERS = {
    "microdata": _core_microdata,
    "jsonld": _core_jsonld,
    "divs": _core_divs,
    "table": _core_table,
    "opengraph": _core_opengraph,
}

# --- page boilerplate and mutilation ----------------------------------------


def _head_junk(rng: random.Random, shop: Shop, page_title: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="{shop.locale}"><head><meta charset="utf-8">'
        f"<title>{page_title} | {shop.name}</title>"
        f'<link rel="stylesheet" href="/assets/app.{rng.randrange(16**6):06x}.css">'
        "<style>.hdr{display:flex;gap:12px}.btn-primary{background:#e30613;color:#fff}"
        ".cookie{position:fixed;bottom:0}</style>"
    )


@cache
def _cookie_banner(shop: Shop) -> str:
    return (
        f'<div id="cookie-consent" class="cookie" role="dialog"><p>{_word("cookie", shop)} '
        f'<a href="/privacy">Privacy</a></p><button id="accept-all" onclick="acceptCookies()">'
        f'{_word("accept", shop)}</button><button class="secondary">Settings</button></div>'
    )


@cache
def _nav_menu(shop: Shop) -> str:
    items = [
        f'<li><a href="/{_slug(d[shop.locale])}">{d[shop.locale]}</a></li>' for d in DEPARTMENTS.values()
    ]
    items.append(f'<li class="sale"><a href="/{_slug(_word("deals", shop))}">{_word("deals", shop)}</a></li>')
    return (
        f'<header class="hdr"><a class="logo" href="/"><img src="/logo.svg" alt="{shop.domain}">{shop.name}</a>'
        f'<form action="/search"><input name="q" placeholder="{_word("search", shop)}..."></form>'
        f'<a href="/account">{_word("account", shop)}</a> <a href="/cart" class="cart-link">0</a></header>'
        f'<nav class="main-menu"><ul>{"".join(items)}</ul></nav>'
    )


@cache
def _newsletter(shop: Shop) -> str:
    return (
        f'<section class="newsletter"><h3>{_word("newsletter", shop)}</h3><form method="post">'
        '<input type="email" name="email" required><button type="submit">OK</button></form></section>'
    )


@cache
def _footer(shop: Shop) -> str:
    links = ("help", "contact", "shipping", "returns")
    items = "".join(f'<li><a href="/{_slug(_word(k, shop))}">{_word(k, shop)}</a></li>' for k in links)
    return (
        f'<footer class="site-footer"><ul class="links">{items}</ul><p>{_word("hours", shop)}</p>'
        f'<div class="payments"><img src="/img/pay/visa.svg"><img src="/img/pay/paypal.svg"></div>'
        f"<p>&copy; 2026 {shop.domain}</p></footer>"
    )


def _tracking(rng: random.Random, shop: Shop) -> str:
    return (
        "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}"
        f"gtag('js',new Date());gtag('config','G-{rng.randrange(16**8):08X}');</script>"
        '<script async src="https://connect.facebook.net/en_US/fbevents.js"></script>'
        f'<img src="https://px.adsrv.net/p.gif?cb={rng.randrange(10**9)}" width="1" height="1" '
        'style="display:none">'
    )


_ATTR_RE = re.compile(r'\s(?:class|id|style|alt|width|height|loading|rel|role|data-[\w-]+)="[^"]*"')
_TAG_RE = re.compile(r"<(div|p|span|li|section)(?=[\s>])")
_JOINERS = ("\n", "\n\n", "", "\n    ", "\t", "  \n")


def _drop_attributes(html: str, rng: random.Random, rate: float) -> str:
    return _ATTR_RE.sub(lambda m: "" if rng.random() < rate else m.group(0), html)


_STYLES = ("margin:0 4px", "display:none", "color:#333;font-size:13px", "padding:2px")
_SHOWN_STYLES = ("margin:0 4px", "color:#333;font-size:13px", "padding:2px")  # the product is never hidden


def _inline_styles(html: str, rng: random.Random, rate: float, styles: tuple[str, ...] = _STYLES) -> str:
    return _TAG_RE.sub(
        lambda m: f'<{m.group(1)} style="{rng.choice(styles)}"' if rng.random() < rate else m.group(0), html
    )


def _core_cut(rng: random.Random, parts: list[Part]) -> tuple[list[Part], str] | None:
    """Where a crawl's size limit ends the page inside the product: the parts kept, and the
    opening of the next tag up to its first quote (so no value of the cut part shows).
    Title and prices always survive; stock, SKU, rating and the rest may not."""
    needed = {"title", "price", "original_price", "currency"}
    floor = 1 + max(i for i, (_, ev) in enumerate(parts) if needed & ev.keys())
    if floor >= len(parts):
        return None
    k = rng.randrange(floor, len(parts))
    head = parts[k][0]
    stop = min(i for i in (head.find(">"), head.find('"'), len(head)) if i >= 0)
    return parts[:k], head[: rng.randrange(1, max(2, stop))]


def _mutilate(rng: random.Random, shop: Shop, parts: list[Part], page_title: str) -> tuple[str, Evidence]:
    """Boilerplate around the core, cut mid-tag at both ends, and what the snippet still shows.

    The start is always cut inside the page head; the end inside the footer or tracking
    scripts, or for `CORE_CUT_SHARE` of pages inside the product itself."""
    before = [_head_junk(rng, shop, page_title)] + [b(shop) for b in (_cookie_banner, _nav_menu) if rng.random() < 0.8]
    after = [b(shop) for b in (_newsletter, _footer) if rng.random() < 0.7] + [_tracking(rng, shop)]
    rng.shuffle(after)
    before[0] = before[0][rng.randrange(1, len(before[0]) - 1) :]
    cut = _core_cut(rng, parts) if rng.random() < CORE_CUT_SHARE else None
    if cut is None:
        after[-1] = after[-1][: rng.randrange(1, len(after[-1]) - 1)]
        core = "\n".join(html for html, _ in parts)
    else:
        parts, tail = cut
        after = []
        core = "\n".join([*(html for html, _ in parts), tail])
    shown: Evidence = {}
    for _, evidence in parts:
        shown |= evidence
    if rng.random() < 0.4:  # minified page: no line breaks in the template
        core = re.sub(r"\n\s*", "", core)
    rate = rng.uniform(0.1, 0.5)
    pieces = []
    for i, piece in enumerate([*before, core, *after]):
        piece = _drop_attributes(piece, rng, rate)
        piece = _inline_styles(piece, rng, 0.05, _SHOWN_STYLES if i == len(before) else _STYLES)
        pieces.append(piece + rng.choice(_JOINERS))
    return "".join(pieces).strip(), shown


# --- product rows -----------------------------------------------------------


def _catalog() -> str:
    return "\n".join(f"- {slot} ({SLOT_TYPES[slot]}): {desc}" for slot, desc in SLOT_DESCRIPTIONS.items())


_CATALOG = _catalog()


def _product_prompt(url: str, html: str) -> str:
    return f"{PRODUCT_INSTRUCTION}\n\nCatalog:\n{_CATALOG}\n\nURL: {url}\n\nHTML:\n{html}"


def _product_response(answer: dict, rng: random.Random) -> str:
    """The strong model's raw output: mostly compact JSON, sometimes pretty, shuffled or fenced."""
    style = rng.random()
    if style < 0.08:
        items = list(answer.items())
        rng.shuffle(items)
        answer = dict(items)
    if style < 0.72:
        return json.dumps(answer, ensure_ascii=False)
    if style < 0.80:
        return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    if style < 0.90:
        return json.dumps(answer, ensure_ascii=False, indent=2)
    body = json.dumps(answer, ensure_ascii=False, indent=rng.choice((None, 2)))
    return f"```json\n{body}\n```" + rng.choice(("", "\n"))


def _shown_answer(p: Product, shown: Evidence) -> dict:
    """The answer a careful reader gives for the snippet: values that survived the cut, null
    for the rest; availability from stock words, else structured data, else a live buy button."""
    answer = {slot: (value if shown.get(slot) else None) for slot, value in p.answer().items()}
    answer["availability"] = shown.get("stock_text") or shown.get("stock_struct") or shown.get("buy")
    return answer


def _product_row(rng: random.Random, shop: Shop) -> tuple[str, str, str]:
    product = _make_product(rng, shop)
    look = _look(rng, product, shop)
    parts = _CORE_BUILDERS[shop.layout](product, shop, rng, look)
    if rng.random() < GALLERY_HINT_SHARE:
        parts.insert(_visible_index(parts, "title"), _gallery_widget(rng, shop))
    if rng.random() < PRICE_NOTE_SHARE:
        parts.insert(_visible_index(parts, "price") + 1, _price_note(rng, shop, product))
    if look.button == "cart" and rng.random() < BUNDLE_SHARE:
        parts.insert(len(parts) - 1, _bundle(rng, shop, product))  # before the description
    if rng.random() < RELATED_SHARE:  # other titles, prices, badges and buy buttons: distractors
        strip = _strip(rng, shop, product.kind, "related", rng.randint(2, 4))
        parts.insert(len(parts) - (rng.random() < 0.3), strip)  # after the page, or before the description
    if rng.random() < RECENT_SHARE:
        parts.append(_strip(rng, shop, rng.choice(KINDS), "recently_viewed", rng.randint(2, 5)))
    html, shown = _mutilate(rng, shop, parts, product.title)
    answer = _shown_answer(product, shown)
    return product.url, _product_prompt(product.url, html), _product_response(answer, rng)


# --- what real pages put around the main product's values -----------------


def _visible_index(parts: list[Part], slot: str) -> int:
    """The first part that shows ``slot`` on the rendered page (not in a meta tag or a script)."""
    return next(i for i, (html, ev) in enumerate(parts)
                if ev.get(slot) and not html.startswith(("<meta", "<script")))


def _gallery_widget(rng: random.Random, shop: Shop) -> Part:
    """An image-gallery widget before the product name: a zoom hint, a counter, a video button."""
    hint = rng.choice(GALLERY_HINTS[shop.locale])
    count = rng.randint(3, 9)
    video = f'<button class="gallery-video">{GALLERY_VIDEO[shop.locale]}</button>' if rng.random() < 0.4 else ""
    return (
        f'<div class="gallery-widget"><span class="zoom-hint">{hint}</span>'
        f'<span class="counter">1 / {count}</span>{video}</div>',
        {},
    )


def _price_note(rng: random.Random, shop: Shop, p: Product) -> Part:
    """A second amount beside the price: an instalment, a free-delivery threshold or the saving."""
    notes = ["installments", "free_shipping"] + (["you_save"] if p.original_price else [])
    note = rng.choice(notes)
    if note == "installments":
        n = rng.choice((3, 4, 6, 10, 12))
        text = _word(note, shop, n=n, x=_fmt_price(round(p.price / n, 2), shop))
    elif note == "free_shipping":
        text = _word(note, shop, x=_fmt_price(rng.choice((29, 49, 50, 59, 99)) * CURRENCY_RATE[p.currency], shop))
    else:
        text = _word(note, shop, x=_fmt_price(round(p.original_price - p.price, 2), shop))
    return f'<p class="price-note">{text}</p>', {}


def _bundle(rng: random.Random, shop: Shop, p: Product) -> Part:
    """"Frequently bought together": the product again, one or two accessories and the bundle's total.
    Its prices are not the product's price (a strong model answers the product's own offer)."""
    others = [(f"{rng.choice(BRANDS)} {k.names[shop.locale][0]} {_model_code(rng)}", _price_value(rng, k, shop))
              for k in rng.sample(KINDS, rng.randint(1, 2))]
    total = round(p.price + sum(price for _, price in others), 2)
    items = [f"<li><b>{_word('this_item', shop)}:</b> {p.title} <span>{_fmt_price(p.price, shop)}</span></li>"]
    items += [f'<li><a href="/p/{_slug(t)}">{t}</a> <span>{_fmt_price(v, shop)}</span></li>' for t, v in others]
    return (
        f'<section class="bundle"><h3>{_word("bundle", shop)}</h3><ul>{"".join(items)}</ul>'
        f'<p class="bundle-total">{_word("bundle_total", shop)}: {_fmt_price(total, shop)}</p>'
        f'<button class="bundle-add">{_word("bundle_add", shop, n=len(others) + 1)}</button></section>',
        {},
    )


# --- other products on a product page ---------------------------------------


def _strip_card(rng: random.Random, shop: Shop, kind: Kind) -> tuple[str, dict]:
    """One card of a "customers also bought" / "recently viewed" strip: its own title, price,
    image, sometimes an old price, a stock badge and a rating; never the main product's values."""
    brand = rng.choice(BRANDS)
    title = f"{brand} {kind.names[shop.locale][0]} {_model_code(rng)}"
    slug = _slug(title)
    href = f"/p/{slug}-{rng.randint(1000, 99999)}"
    price = _price_value(rng, kind, shop)
    microdata = shop.layout == "microdata"
    scope = ' itemscope itemtype="https://schema.org/Product"' if microdata else ""
    name_prop = ' itemprop="name"' if microdata else ""
    price_prop = f' itemprop="price" content="{price:.2f}"' if microdata else ""
    old = f"<s>{_fmt_price(price * rng.uniform(1.1, 1.4), shop)}</s> " if rng.random() < 0.3 else ""
    extras = ""
    if rng.random() < 0.4:
        rating = round(rng.uniform(3.0, 5.0), 1)
        extras += f'<span class="stars">{_rating_shown(rating, shop)[0]}</span>'
    if rng.random() < 0.5:
        state = rng.choices(AVAILABILITY, weights=(60, 15, 5, 20))[0]
        extras += f'<span class="badge">{_stock_phrase(rng, state, shop, rng.randint(1, 5))}</span>'
    html = (
        f'<div class="{shop.classes["card"]}"{scope}>'
        f'<a href="{href}"><img src="{shop.cdn}/{slug}.jpg" alt=""></a>'
        f'<a class="name"{name_prop} href="{href}">{title}</a>'
        f'<span class="price"{price_prop}>{old}{_fmt_price(price, shop)}</span>{extras}'
        f'<button class="add">{_word("add_to_cart", shop)}</button></div>'
    )
    item = {"@type": "Product", "name": title, "url": f"https://{shop.host}{href}",
            "offers": {"@type": "Offer", "price": f"{price:.2f}", "priceCurrency": shop.currency}}
    return html, item


def _strip(rng: random.Random, shop: Shop, kind: Kind, heading: str, n: int) -> Part:
    """A titled section of other products; it shows nothing about the main product."""
    cards = [_strip_card(rng, shop, kind) for _ in range(n)]
    html = "".join(card for card, _ in cards)
    if shop.layout == "jsonld":  # the shop lists them as structured data too
        items = {"@context": "https://schema.org", "@type": "ItemList", "itemListElement": [
            {"@type": "ListItem", "position": i + 1, "item": item} for i, (_, item) in enumerate(cards)]}
        html += f'<script type="application/ld+json">{json.dumps(items, ensure_ascii=False)}</script>'
    return f'<section class="{heading.replace("_", "-")}"><h3>{_word(heading, shop)}</h3>' \
           f'<div class="product-grid">{html}</div></section>', {}


# --- product cards (also used by nav pages) -------------------------------

Section = tuple[str, str]  # (keyword, html)


def _card(rng: random.Random, shop: Shop, kind: Kind) -> str:
    brand = rng.choice(BRANDS)
    title = f"{brand} {kind.names[shop.locale][0]} {_model_code(rng)}"
    slug = _slug(title)
    href = f"/p/{slug}-{rng.randint(1000, 99999)}"
    old = f"<s>{_fmt_price(_price_value(rng, kind, shop) * 1.2, shop)}</s> " if rng.random() < 0.3 else ""
    return (
        f'<div class="{shop.classes["card"]}"><a href="{href}"><img src="{shop.cdn}/{slug}.jpg" alt=""></a>'
        f'<a class="name" href="{href}">{title}</a>'
        f'<span class="price">{old}{_fmt_price(_price_value(rng, kind, shop), shop)}</span>'
        f'<button class="add">{_word("add_to_cart", shop)}</button></div>'
    )


def _card_grid(rng: random.Random, shop: Shop, kind: Kind, n: int) -> Section:
    cards = "".join(_card(rng, shop, kind) for _ in range(n))
    return _word("add_to_cart", shop), f'<div class="product-grid">{cards}</div>'
