"""The five product-page layout families (schema.org microdata, JSON-LD, plain divs, legacy tables,
Open Graph): each builds the page's core as parts tagged with the slot values they show."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from scripts.sample_data.products import (
    Product,
    _best_rating,
    _breadcrumb_html,
    _description,
    _fmt_price,
    _price_block,
    _rating_html,
    _rating_shown,
    _slug,
    _word,
)
from scripts.sample_data.shops import IN_STOCK_BUTTON_ONLY_SHARE, Shop
from scripts.sample_data.vocabulary import _OG_AVAILABILITY, _OG_STATES, _SCHEMA_AVAILABILITY, STOCK_PHRASES


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
