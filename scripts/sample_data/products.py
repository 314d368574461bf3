"""Products and what every page shows of one: locale formatting, the product itself, breadcrumbs,
ratings, price blocks and product cards (listing grids, strips)."""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from scripts.sample_data.shops import AVAILABILITY, MISSING_SHARE, SLOT_TYPES, Shop
from scripts.sample_data.vocabulary import (
    _NUMBER_SEPARATORS,
    BRANDS,
    COLORS,
    CURRENCY_RATE,
    DEPARTMENTS,
    KINDS,
    SENTENCES,
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


def _shown(rng: random.Random, slot: str) -> bool:
    """Whether this product's page shows `slot` at all (`MISSING_SHARE` of products have none)."""
    return rng.random() > MISSING_SHARE[slot]


def _make_product(rng: random.Random, shop: Shop) -> Product:
    kind = rng.choice(KINDS)
    singular, plural = kind.names[shop.locale]
    brand = rng.choice(BRANDS) if _shown(rng, "brand") else None
    model = _model_code(rng)
    extra = rng.choice(
        ("", f", {rng.choice(COLORS[shop.locale])}", f" {rng.choice(COLORS[shop.locale])}", "")
    )
    title = f"{brand} {singular} {model}{extra}" if brand else f"{singular} {model}{extra}"
    price = _price_value(rng, kind, shop)
    original = None
    if rng.random() < 0.7:
        original = round(int(price * rng.uniform(1.1, 1.6)) + rng.choice((0.99, 0.0, 0.95)), 2)
    availability = None
    if _shown(rng, "availability"):
        availability = rng.choices(AVAILABILITY, weights=(70, 12, 6, 12))[0]
    sku = None
    if _shown(rng, "sku"):
        prefix = "".join(part[0] for part in re.split(r"[-.]", shop.domain)[:2]).upper()
        sku = rng.choice(
            (
                f"{prefix}-{rng.randint(10000, 999999)}",
                f"{rng.randint(10**7, 10**8 - 1)}",
                f"{prefix}{rng.randint(100, 999)}{model[:2].strip('- ')}",
            )
        )
    categories = [DEPARTMENTS[kind.department][shop.locale], plural] if _shown(rng, "categories") else None
    rating = review_count = None
    if _shown(rng, "rating"):
        rating = round(rng.uniform(2.8, 5.0), 1)
        review_count = min(int(rng.paretovariate(1.1) * 4), 9999) if rng.random() > 0.05 else None
    image_url = f"{shop.cdn}/{_slug(title)}-{rng.randint(1, 9999)}.jpg" if _shown(rng, "image_url") else None
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
