"""Product pages: boilerplate around the core (head, cookie banner, menus, footer, tracking), the
mutilation of a crawled snippet, what real pages put around the product's values, other products on the
page, and the `productpage_extractor` rows."""

from __future__ import annotations

import json
import random
import re
from functools import cache

from scripts.sample_data.layouts import _CORE_BUILDERS, Evidence, Part, _look, _stock_phrase
from scripts.sample_data.products import (
    Product,
    _fmt_price,
    _make_product,
    _model_code,
    _price_value,
    _rating_shown,
    _slug,
    _word,
)
from scripts.sample_data.shops import (
    AVAILABILITY,
    BUNDLE_SHARE,
    CORE_CUT_SHARE,
    GALLERY_HINT_SHARE,
    PRICE_NOTE_SHARE,
    PRODUCT_INSTRUCTION,
    RECENT_SHARE,
    RELATED_SHARE,
    SLOT_DESCRIPTIONS,
    SLOT_TYPES,
    Shop,
)
from scripts.sample_data.vocabulary import (
    BRANDS,
    CURRENCY_RATE,
    DEPARTMENTS,
    GALLERY_HINTS,
    GALLERY_VIDEO,
    KINDS,
    Kind,
)


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
