"""Navigation pages (listing, product, blog, cart, help, ambiguous) and `navpage_classifier` rows."""

from __future__ import annotations

import random
from collections.abc import Callable

from scripts.sample_data.pages import _nav_menu
from scripts.sample_data.products import (
    Section,
    _availability_text,
    _card_grid,
    _description,
    _fmt_price,
    _make_product,
    _price_block,
    _rating_html,
    _slug,
    _word,
)
from scripts.sample_data.shops import AMBIGUOUS_SHARE, NAV_INSTRUCTION, YES_SHARE, Shop
from scripts.sample_data.vocabulary import BRANDS, DEPARTMENTS, KINDS, SENTENCES

# --- nav rows ---------------------------------------------------------------


def _results_bar(rng: random.Random, shop: Shop, total: int) -> Section:
    options = "".join(f"<option>{_word(k, shop)}</option>" for k in ("relevance", "price_asc", "newest"))
    return _word("sort_by", shop), (
        f'<div class="toolbar"><span class="count">{_word("results", shop, n=total)}</span>'
        f'<label>{_word("sort_by", shop)}</label><select name="sort">{options}</select></div>'
    )


def _filters(rng: random.Random, shop: Shop) -> Section:
    brands = rng.sample(BRANDS, rng.randint(3, 6))
    boxes = "".join(
        f'<label><input type="checkbox" name="brand" value="{_slug(b)}"> {b} ({rng.randint(1, 80)})</label>'
        for b in brands
    )
    return _word("brand", shop), (
        f'<aside class="facets"><h3>{_word("filters", shop)}</h3><h4>{_word("brand", shop)}</h4>{boxes}'
        f'<h4>{_word("price", shop)}</h4><input type="range" min="0" max="2000"></aside>'
    )


def _pagination(rng: random.Random, shop: Shop, page: int) -> Section:
    pages = "".join(f'<a href="?page={n}">{n}</a>' for n in range(max(1, page - 2), page + 3))
    return _word("next", shop), (
        f'<nav class="pagination"><a rel="prev" href="?page={max(1, page - 1)}">{_word("prev", shop)}</a>'
        f'{pages}<a rel="next" href="?page={page + 1}">{_word("next", shop)}</a></nav>'
    )


def _menu_section(rng: random.Random, shop: Shop) -> Section:
    return _word("deals", shop), _nav_menu(shop)


def _listing_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    kind = rng.choice(KINDS)
    plural = kind.names[shop.locale][1]
    page = rng.randint(1, 12)
    flavour = rng.choice(("category", "category", "search", "deals"))
    if flavour == "search":
        path = f"/search?q={_slug(plural).replace('-', '+')}"
        heading = f'<h1>{_word("search_for", shop)} "{plural}"</h1>'
    elif flavour == "deals":
        path = f"/{_slug(_word('deals', shop))}"
        heading = f"<h1>{_word('deals', shop)}</h1>"
    else:
        path = rng.choice(
            (
                f"/{_slug(DEPARTMENTS[kind.department][shop.locale])}/{_slug(plural)}",
                f"/c/{rng.randint(100, 9999)}",
            )
        )
        heading = f"<h1>{plural}</h1>"
    if page > 1 and rng.random() < 0.6:
        path += ("&" if "?" in path else "?") + f"page={page}"
    grid_keyword, grid = _card_grid(rng, shop, kind, rng.randint(4, 7))
    sections = [(grid_keyword, heading + grid)]
    optional: list[Callable[[], Section]] = [  # built only when kept
        lambda: _results_bar(rng, shop, rng.randint(25, 2400)),
        lambda: _filters(rng, shop),
        lambda: _pagination(rng, shop, page),
        lambda: _card_grid(rng, shop, kind, rng.randint(3, 6)),
        lambda: _menu_section(rng, shop),
    ]
    sections += [make() for make in optional if rng.random() < 0.7]
    if len(sections) < 3:  # a listing page always shows at least two listing cues
        sections.append(optional[rng.randrange(3)]())
    return f"https://{shop.host}{path}", sections


def _product_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    product = _make_product(rng, shop)
    main = (
        f"<h1>{product.title}</h1>{_price_block(product, shop)}"
        f'<span class="stock">{_availability_text(product, shop)}</span>'
        f'<button class="add-to-cart">{_word("add_to_cart", shop)}</button>'
    )
    sections = [
        (_word("add_to_cart", shop), main),
        (
            _word("description", shop),
            f"<h2>{_word('description', shop)}</h2><p>{_description(rng, shop)}</p>",
        ),
    ]
    if rng.random() < 0.6:
        _, grid = _card_grid(rng, shop, product.kind, rng.randint(2, 4))
        sections.append((_word("related", shop), f"<h3>{_word('related', shop)}</h3>{grid}"))
    if rng.random() < 0.5:
        sections.append(
            (
                _word("reviews", shop, n=product.review_count or 3).split()[-1],
                _rating_html(product, shop) or "<div class='reviews'></div>",
            )
        )
    if rng.random() < 0.2:  # review sorting: "sort by" alone does not make a listing
        sections.append(_results_bar(rng, shop, rng.randint(3, 40)))
    if rng.random() < 0.6:
        sections.append(_menu_section(rng, shop))
    return product.url, sections


def _blog_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    kind = rng.choice(KINDS)
    title = _word("blog_title", shop, x=kind.names[shop.locale][1])
    text = " ".join(rng.choice(SENTENCES[shop.locale]) for _ in range(rng.randint(4, 9)))
    others = "".join(
        f'<li><a href="/blog/{_slug(_word("blog_title", shop, x=k.names[shop.locale][1]))}">'
        f"{_word('read_more', shop)}</a></li>"
        for k in rng.sample(KINDS, 3)
    )
    posted = f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    article = f"<article><h1>{title}</h1><time>{posted}</time><p>{text}</p></article>"
    sections = [
        (_word("blog", shop), article),
        (_word("read_more", shop), f'<ul class="more-posts">{others}</ul>'),
    ]
    if rng.random() < 0.5:  # a post that mentions one product
        sections.append(_card_grid(rng, shop, kind, 1))
    if rng.random() < 0.3:
        sections.append(
            (_word("next", shop), f'<a class="older" href="/blog?page=2">{_word("next", shop)} &raquo;</a>')
        )
    sections.append(_menu_section(rng, shop))
    return f"https://{shop.host}/{_slug(_word('blog', shop))}/{_slug(title)}", sections


def _cart_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    items = []
    for _ in range(rng.randint(1, 3)):
        product = _make_product(rng, shop)
        items.append(
            f"<tr><td>{product.title}</td>"
            f'<td>{_word("quantity", shop)} <input value="{rng.randint(1, 3)}"></td>'
            f"<td>{_fmt_price(product.price, shop)}</td><td><a>{_word('remove', shop)}</a></td></tr>"
        )
    totals = (
        f"<p>{_word('subtotal', shop)}: {_fmt_price(rng.uniform(20, 900), shop)}</p>"
        f'<a class="btn" href="/checkout">{_word("checkout", shop)}</a>'
    )
    sections = [
        (_word("cart", shop), f'<h1>{_word("cart", shop)}</h1><table class="cart">{"".join(items)}</table>'),
        (_word("checkout", shop), totals),
    ]
    if rng.random() < 0.5:
        keyword, grid = _card_grid(rng, shop, rng.choice(KINDS), rng.randint(2, 3))
        sections.append((keyword, f"<h3>{_word('related', shop)}</h3>{grid}"))
    sections.append(_menu_section(rng, shop))
    return f"https://{shop.host}/{rng.choice(('cart', 'basket', _slug(_word('cart', shop))))}", sections


def _help_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    questions = "".join(
        f"<details><summary>{_word(k, shop)}?</summary><p>{rng.choice(SENTENCES[shop.locale])}</p></details>"
        for k in ("shipping", "returns", "account")
    )
    contact = (
        f'<h2>{_word("contact", shop)}</h2><form><input type="email" name="email"><textarea></textarea>'
        f"<button>{_word('send', shop)}</button></form><p>{_word('hours', shop)}</p>"
    )
    sections = [
        (_word("help", shop), f"<h1>{_word('faq', shop)}</h1>{questions}"),
        (_word("contact", shop), contact),
        _menu_section(rng, shop),
    ]
    return f"https://{shop.host}/{rng.choice(('help', 'faq', _slug(_word('contact', shop))))}", sections


def _ambiguous_page(rng: random.Random, shop: Shop) -> tuple[str, list[Section]]:
    """Pages a human would argue about: brand landing pages, one-hit searches, product + big grid."""
    kind = rng.choice(KINDS)
    variant = rng.randrange(3)
    brand = rng.choice(BRANDS)
    if variant == 0:
        grid_keyword, grid = _card_grid(rng, shop, kind, rng.randint(2, 3))
        sections = [
            (_word("brand", shop), f"<h1>{brand}</h1><p>{_description(rng, shop)}</p>"),
            (grid_keyword, grid + f'<a href="/{_slug(brand)}/all">{_word("see_all", shop)}</a>'),
        ]
        return f"https://{shop.host}/{_slug(brand)}", sections
    if variant == 1:
        grid_keyword, grid = _card_grid(rng, shop, kind, 1)
        sections = [(_word("sort_by", shop), _results_bar(rng, shop, 1)[1]), (grid_keyword, grid)]
        return f"https://{shop.host}/search?q={_slug(brand)}", sections
    url, sections = _product_page(rng, shop)
    sections.append(_card_grid(rng, shop, kind, rng.randint(6, 9)))
    sections.append(_pagination(rng, shop, 1))
    return url, sections


_NO_PAGES = ((_product_page, 45), (_blog_page, 20), (_cart_page, 15), (_help_page, 20))


def _window(rng: random.Random, keyword: str, html: str) -> str:
    """A snippet around the keyword as the crawler stores it: cut at arbitrary characters."""
    at = max(html.find(keyword), 0)
    start = max(0, at - rng.randint(40, 700))
    end = min(len(html), at + len(keyword) + rng.randint(150, 1400))
    return html[start:end]


def _nav_prompt(rng: random.Random, url: str, sections: list[Section]) -> str:
    budget = rng.randint(900, 3600)  # chars of snippets; keeps nav prompts around 1-4 KB
    blocks = []
    for number, (keyword, html) in enumerate(sections, start=1):
        snippet = _window(rng, keyword, html)
        blocks.append(f'[{number}] keyword="{keyword}"\n{snippet}')
        budget -= len(snippet)
        if budget <= 0 and number >= 2:
            break
    return f"{NAV_INSTRUCTION}\n\nURL: {url}\n\nlast_scrape_keyword_sections:\n" + "\n\n".join(blocks)


def _nav_response(label: str, rng: random.Random) -> str:
    style = rng.random()
    if style < 0.86:
        return label
    if style < 0.90:
        return label.lower()
    if style < 0.93:
        return label.capitalize() + "."
    if style < 0.97:
        return f" {label}\n"
    return label.capitalize()


def _nav_row(rng: random.Random, shop: Shop) -> tuple[str, str, str, str]:
    if rng.random() < AMBIGUOUS_SHARE:
        url, sections = _ambiguous_page(rng, shop)
        label = rng.choice(("YES", "NO"))
    elif rng.random() < YES_SHARE:
        url, sections = _listing_page(rng, shop)
        label = "YES"
    else:
        builders, weights = zip(*_NO_PAGES)
        url, sections = rng.choices(builders, weights=weights)[0](rng, shop)
        label = "NO"
    return url, _nav_prompt(rng, url, sections), _nav_response(label, rng), label
