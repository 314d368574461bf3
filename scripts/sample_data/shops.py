"""Task names, slot tables, instructions and the 50 invented shops with their popularity."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date

from scripts.sample_data.vocabulary import BREADCRUMB_SEPARATORS, SHOP_NAME_NUMBERS

NAV_TASK = "navpage_classifier"
PRODUCT_TASK = "productpage_extractor"
NAV_SHARE = 0.5  # share of rows for the classifier; the rest are extraction rows
YES_SHARE = 0.45  # share of (unambiguous) nav rows labelled YES
AMBIGUOUS_SHARE = 0.03  # nav rows whose page is genuinely unclear; label is a coin flip
SYSTEM_OVERRIDE_SHARE = 0.01  # rows carrying their own system_prompt
NO_DOMAIN_SHARE = 0.10  # metadata without `domain` (cleaner infers it from the url)
NULL_METADATA_SHARE = 0.03  # metadata NULL (cleaner infers the domain from the prompt)
COVERAGE_ROWS_PER_SHOP = 3  # the first 3 * len(SHOPS) rows go round-robin over shops
ZIPF_EXPONENT = 0.75  # shop popularity after the round-robin rows: big shops, long tail
BASE_CRAWL_DATE = date(2026, 1, 5)
RELATED_SHARE = 0.35  # product pages that also show a "customers also bought" strip
RECENT_SHARE = 0.15  # product pages that end with a "recently viewed" strip (another kind of product)
IN_STOCK_BUTTON_ONLY_SHARE = 0.35  # in-stock pages that show no stock line, only a live add-to-cart button
CORE_CUT_SHARE = 0.12  # pages whose crawl ends inside the product (after the prices): later values are gone
# What real pages do that a model must not copy (issue 21: the fine-tuned model answered a gallery
# hint as the title, 365 from a brand as the price, a percentage as the rating):
GALLERY_HINT_SHARE = 0.4  # product pages with an image-gallery widget ("Roll over image to zoom in") before the name
PRICE_NOTE_SHARE = 0.4  # a second money amount beside the price: instalment, free-delivery threshold, saving
BUNDLE_SHARE = 0.2  # buyable pages with a "frequently bought together" bundle (its own prices and total)
SHOP_NAME_NUMBER_SHARE = 0.4  # shops whose name carries a number ("Bergsport 24")
# Share of products whose page shows no such value, so the answer is null. Real shops often show no
# brand, no breadcrumb, no SKU and no reviews; at 4-15% the model saw an empty brand or breadcrumb too
# rarely to learn it, and filled nearly every one from the title or the menu (docs/quality.md).
MISSING_SHARE = {
    "brand": 0.3, "availability": 0.08, "sku": 0.25, "categories": 0.3, "rating": 0.3, "image_url": 0.15,
}
RATING_SCALES = (5, 10, 100)  # a shop shows ratings out of 5, out of 10 or as a percentage
RATING_SCALE_WEIGHTS = (6, 2, 2)

LAYOUTS = ("microdata", "jsonld", "divs", "table", "opengraph")
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "limited")

# Must match configs/datasets.yaml `productpage_extractor.slots` (a test checks).
SLOT_TYPES: dict[str, str] = {
    "title": "string",
    "brand": "string",
    "price": "number",
    "original_price": "number",
    "currency": "string",
    "availability": "string",
    "sku": "string",
    "categories": "string_list",
    "rating": "number",
    "review_count": "integer",
    "image_url": "string",
}
SLOT_DESCRIPTIONS: dict[str, str] = {
    "title": "product name exactly as shown on the page",
    "brand": "manufacturer or brand name",
    "price": "current selling price as a plain number, without currency symbol",
    "original_price": "previous / list price if a discount is shown, else null",
    "currency": "ISO 4217 code of the price (EUR, USD, GBP, PLN)",
    "availability": "one of in_stock, out_of_stock, preorder, limited",
    "sku": "the shop's article number or SKU",
    "categories": "breadcrumb categories from top to bottom, without the home link",
    "rating": "average customer rating on a 0-5 scale",
    "review_count": "number of customer reviews (integer)",
    "image_url": "absolute URL of the main product image",
}
SLOT_SPECS: dict[str, dict] = {
    "title": {"type": "string", "scorer": "fuzzy"},
    "brand": {"type": "string", "scorer": "exact"},
    "price": {"type": "number", "scorer": "numeric", "tolerance": 0.01},
    "original_price": {"type": "number", "scorer": "numeric", "tolerance": 0.01},
    "currency": {"type": "string", "scorer": "exact"},
    "availability": {"type": "string", "scorer": "exact"},
    "sku": {"type": "string", "scorer": "exact"},
    "categories": {"type": "string_list", "scorer": "set"},
    "rating": {"type": "number", "scorer": "numeric", "tolerance": 0.05},
    "review_count": {"type": "integer", "scorer": "exact"},
    "image_url": {"type": "string", "scorer": "exact"},
}
_SLOT_SPECS_JSON = json.dumps(SLOT_SPECS)

NAV_INSTRUCTION = (
    "Is this page a navigation/listing page (a category, search-results or deals page whose "
    "main content is a list of many products), rather than a single product, article, cart or "
    "help page? Answer YES or NO."
)
PRODUCT_INSTRUCTION = (
    "Extract the product data from the HTML snippet below. The snippet is cut and noisy. "
    "Return one JSON object with exactly the keys of the catalog; use null for a value that "
    "is not on the page."
)
SYSTEM_OVERRIDES = {
    NAV_TASK: "You label pages for a deals crawler. Reply YES for category, search or listing "
    "pages and NO for anything else. One word, no explanation.",
    PRODUCT_TASK: "You are a precise product-data extractor. Output a single JSON object with "
    "the catalog keys and nothing else; null for missing values.",
}

# --- shops ------------------------------------------------------------------

# (domain, locale, layout). Currency follows the locale; en shops on .co.uk use GBP.
SHOP_TABLE: tuple[tuple[str, str, str], ...] = (
    ("deals-hub.co.uk", "en", "divs"),
    ("brightbasket.com", "en", "jsonld"),
    ("gadgetgrove.com", "en", "microdata"),
    ("homeandhearth.co.uk", "en", "table"),
    ("trailpeak.com", "en", "opengraph"),
    ("snapcart.com", "en", "jsonld"),
    ("kitchenloft.co.uk", "en", "microdata"),
    ("voltvault.com", "en", "divs"),
    ("quickbuy.co.uk", "en", "opengraph"),
    ("greenthumbsupply.com", "en", "table"),
    ("megadealz.com", "en", "divs"),
    ("budgetbox.co.uk", "en", "microdata"),
    ("kitchenkraft.de", "de", "microdata"),
    ("technikwelt.de", "de", "jsonld"),
    ("gartenprofi.de", "de", "table"),
    ("sportscheune.de", "de", "divs"),
    ("wohnwerk.de", "de", "opengraph"),
    ("schnaeppchenhafen.de", "de", "divs"),
    ("elektroblitz.at", "de", "jsonld"),
    ("haushaltsheld.de", "de", "microdata"),
    ("bergsport24.de", "de", "table"),
    ("preisfuchs.de", "de", "jsonld"),
    ("outletpark.de", "de", "opengraph"),
    ("maisonmalin.fr", "fr", "microdata"),
    ("electroprix.fr", "fr", "jsonld"),
    ("jardinet.fr", "fr", "divs"),
    ("sportvif.fr", "fr", "table"),
    ("cuisine-express.fr", "fr", "opengraph"),
    ("bonplan-tech.be", "fr", "jsonld"),
    ("bricoprix.fr", "fr", "divs"),
    ("tiendaverde.es", "es", "divs"),
    ("electromania.es", "es", "jsonld"),
    ("cocinaplus.es", "es", "microdata"),
    ("deportesol.es", "es", "opengraph"),
    ("casaoferta.es", "es", "table"),
    ("voltmarkt.nl", "nl", "microdata"),
    ("keukenkoopjes.nl", "nl", "divs"),
    ("tuinwinkel.nl", "nl", "jsonld"),
    ("sportbaas.nl", "nl", "opengraph"),
    ("huisdeal.be", "nl", "table"),
    ("casabella-shop.it", "it", "jsonld"),
    ("elettrostore.it", "it", "divs"),
    ("giardinoverde.it", "it", "table"),
    ("sportissimo.it", "it", "microdata"),
    ("cucinafacile.it", "it", "opengraph"),
    ("sklepdomowy.pl", "pl", "divs"),
    ("elektromarket.pl", "pl", "jsonld"),
    ("ogrodnik24.pl", "pl", "table"),
    ("sportowo.pl", "pl", "microdata"),
    ("kuchniaplus.pl", "pl", "opengraph"),
)

# Class-name vocabularies for the `divs` layout; each shop picks one name per role.
DIV_CLASSES: dict[str, tuple[str, ...]] = {
    "title": ("product-title", "pdp__name", "item-name", "prod-h1"),
    "price": ("price", "price-current", "pdp__price", "sale-price"),
    "old": ("price-old", "was-price", "pdp__strike", "uvp"),
    "stock": ("stock", "availability", "delivery-state", "pdp__stock"),
    "brand": ("brand", "manufacturer", "pdp__brand", "maker"),
    "card": ("product-card", "tile", "prd-item", "grid-item"),
}


@dataclass(frozen=True, eq=False)  # hashed by identity, so per-shop HTML can be cached
class Shop:
    domain: str
    locale: str
    layout: str
    host: str  # www.<domain> for about a third of the shops
    currency: str
    cdn: str  # image host and path prefix
    classes: dict[str, str]
    name: str  # shown in the header and the page title, never the product's
    rating_scale: int  # 5, 10 or 100 (percent); the label is always on the catalog's 0-5 scale
    crumb_separator: str  # between breadcrumb links


def _shop_name(pick: random.Random, domain: str) -> str:
    words = domain.split(".")[0].replace("-", " ").split()
    name = " ".join(w.capitalize() for w in words)
    if pick.random() < SHOP_NAME_NUMBER_SHARE and not any(c.isdigit() for c in name):
        name = f"{name} {pick.choice(SHOP_NAME_NUMBERS)}"
    return name


def _make_shop(index: int, domain: str, locale: str, layout: str) -> Shop:
    pick = random.Random(f"shop:{domain}")
    if locale == "en":
        currency = "GBP" if domain.endswith(".uk") else "USD"
    else:
        currency = "PLN" if locale == "pl" else "EUR"
    cdn_host = pick.choice(("cdn", "static", "img", "media"))
    cdn_path = pick.choice(("images/products", "media/catalog/product", "p", "assets/img"))
    return Shop(
        domain=domain,
        locale=locale,
        layout=layout,
        host=f"www.{domain}" if index % 3 == 0 else domain,
        currency=currency,
        cdn=f"https://{cdn_host}.{domain}/{cdn_path}",
        classes={role: pick.choice(names) for role, names in DIV_CLASSES.items()},
        name=_shop_name(pick, domain),
        rating_scale=pick.choices(RATING_SCALES, weights=RATING_SCALE_WEIGHTS)[0],
        crumb_separator=pick.choice(BREADCRUMB_SEPARATORS),
    )


SHOPS: tuple[Shop, ...] = tuple(_make_shop(i, *row) for i, row in enumerate(SHOP_TABLE))
SHOPS_BY_DOMAIN: dict[str, Shop] = {shop.domain: shop for shop in SHOPS}


def _popularity_weights() -> list[float]:
    ranks = list(range(1, len(SHOPS) + 1))
    random.Random("shop-ranks").shuffle(ranks)  # fixed, so big shops are not all English
    weights = [1 / rank**ZIPF_EXPONENT for rank in ranks]
    total, acc, cumulative = sum(weights), 0.0, []
    for weight in weights:
        acc += weight / total
        cumulative.append(acc)
    return cumulative


_SHOP_CUM_WEIGHTS = _popularity_weights()
