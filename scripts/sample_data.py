"""Realistic sample `dataset.duckdb` for the two crawler tasks; no network, no model.

    fab dataset.sample                      # the task wraps this module
    python -m scripts.sample_data --output data/raw/dataset.duckdb --rows 2000 --seed 0

    from pathlib import Path
    from scripts.sample_data import generate_sample
    summary = generate_sample(Path("data/raw/dataset.duckdb"), rows=2000, seed=0)

The file holds one table, `examples` (the raw contract in DESIGN.md):
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
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from scripts.config import UserError

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

# --- words ------------------------------------------------------------------

LOCALES = ("en", "de", "fr", "es", "nl", "it", "pl")
_W = dict[str, str]


def _words(*values: str) -> _W:
    return dict(zip(LOCALES, values, strict=True))


# fmt: off
WORDS: dict[str, _W] = {
    "add_to_cart": _words(
        "Add to cart", "In den Warenkorb", "Ajouter au panier", "Añadir al carrito", "In winkelwagen",
        "Aggiungi al carrello", "Dodaj do koszyka",
    ),
    "results": _words(
        "{n} results", "{n} Ergebnisse", "{n} résultats", "{n} resultados", "{n} resultaten",
        "{n} risultati", "{n} wyników",
    ),
    "sort_by": _words(
        "Sort by", "Sortieren nach", "Trier par", "Ordenar por", "Sorteer op", "Ordina per", "Sortuj według",
    ),
    "relevance": _words(
        "Relevance", "Relevanz", "Pertinence", "Relevancia", "Relevantie", "Rilevanza", "Trafność",
    ),
    "price_asc": _words(
        "Price: low to high", "Preis aufsteigend", "Prix croissant", "Precio ascendente", "Prijs oplopend",
        "Prezzo crescente", "Cena rosnąco",
    ),
    "newest": _words("Newest", "Neueste", "Nouveautés", "Novedades", "Nieuwste", "Novità", "Najnowsze"),
    "filters": _words("Filter", "Filtern", "Filtrer", "Filtrar", "Filteren", "Filtra", "Filtruj"),
    "brand": _words("Brand", "Marke", "Marque", "Marca", "Merk", "Marca", "Marka"),
    "price": _words("Price", "Preis", "Prix", "Precio", "Prijs", "Prezzo", "Cena"),
    "next": _words("Next", "Weiter", "Suivant", "Siguiente", "Volgende", "Successivo", "Następna"),
    "prev": _words("Previous", "Zurück", "Précédent", "Anterior", "Vorige", "Precedente", "Poprzednia"),
    "load_more": _words(
        "Load more", "Mehr laden", "Voir plus", "Cargar más", "Meer laden", "Carica altri",
        "Załaduj więcej",
    ),
    "in_stock": _words(
        "In stock", "Auf Lager", "En stock", "En stock", "Op voorraad", "Disponibile", "Dostępny",
    ),
    "out_of_stock": _words(
        "Out of stock", "Nicht vorrätig", "Rupture de stock", "Agotado", "Uitverkocht", "Esaurito",
        "Niedostępny",
    ),
    "preorder": _words(
        "Pre-order now", "Jetzt vorbestellen", "Précommande", "Reserva ya", "Nu pre-orderen",
        "Preordina ora",
        "Przedsprzedaż",
    ),
    "limited": _words(
        "Only {n} left", "Nur noch {n} Stück", "Plus que {n} en stock", "Últimas {n} unidades",
        "Nog maar {n} op voorraad", "Solo {n} rimasti", "Zostało tylko {n} szt.",
    ),
    "cart": _words(
        "Your cart", "Ihr Warenkorb", "Votre panier", "Tu carrito", "Je winkelwagen", "Il tuo carrello",
        "Twój koszyk",
    ),
    "checkout": _words(
        "Checkout", "Zur Kasse", "Commander", "Finalizar compra", "Afrekenen", "Procedi all'ordine",
        "Przejdź do kasy",
    ),
    "subtotal": _words(
        "Subtotal", "Zwischensumme", "Sous-total", "Subtotal", "Subtotaal", "Subtotale", "Suma częściowa",
    ),
    "quantity": _words("Qty", "Menge", "Quantité", "Cantidad", "Aantal", "Quantità", "Ilość"),
    "remove": _words("Remove", "Entfernen", "Supprimer", "Eliminar", "Verwijderen", "Rimuovi", "Usuń"),
    "reviews": _words(
        "{n} reviews", "{n} Bewertungen", "{n} avis", "{n} opiniones", "{n} beoordelingen", "{n} recensioni",
        "{n} opinii",
    ),
    "out_of": _words(
        "{r} out of 5", "{r} von 5", "{r} sur 5", "{r} de 5", "{r} van 5", "{r} su 5", "{r} na 5",
    ),
    "description": _words(
        "Description", "Beschreibung", "Description", "Descripción", "Omschrijving", "Descrizione", "Opis",
    ),
    "related": _words(
        "Customers also bought", "Kunden kauften auch", "Les clients ont aussi acheté",
        "Los clientes también compraron", "Klanten kochten ook", "I clienti hanno acquistato anche",
        "Klienci kupili również",
    ),
    "cookie": _words(
        "We use cookies to improve your experience.",
        "Wir verwenden Cookies, um Ihr Einkaufserlebnis zu verbessern.",
        "Nous utilisons des cookies pour améliorer votre expérience.",
        "Usamos cookies para mejorar tu experiencia.", "Wij gebruiken cookies om je ervaring te verbeteren.",
        "Utilizziamo i cookie per migliorare la tua esperienza.",
        "Używamy plików cookie, aby poprawić Twoje wrażenia.",
    ),
    "accept": _words(
        "Accept all", "Alle akzeptieren", "Tout accepter", "Aceptar todo", "Alles accepteren",
        "Accetta tutti", "Akceptuj wszystkie",
    ),
    "home": _words("Home", "Startseite", "Accueil", "Inicio", "Home", "Home", "Strona główna"),
    "help": _words("Help", "Hilfe", "Aide", "Ayuda", "Klantenservice", "Assistenza", "Pomoc"),
    "contact": _words(
        "Contact us", "Kontakt", "Nous contacter", "Contacto", "Contact", "Contattaci", "Kontakt",
    ),
    "shipping": _words("Shipping", "Versand", "Livraison", "Envíos", "Verzending", "Spedizione", "Dostawa"),
    "returns": _words(
        "Returns", "Rücksendungen", "Retours", "Devoluciones", "Retourneren", "Resi", "Zwroty",
    ),
    "newsletter": _words(
        "Sign up for our newsletter", "Newsletter abonnieren", "Inscrivez-vous à la newsletter",
        "Suscríbete a la newsletter", "Schrijf je in voor de nieuwsbrief", "Iscriviti alla newsletter",
        "Zapisz się do newslettera",
    ),
    "read_more": _words(
        "Read more", "Weiterlesen", "Lire la suite", "Leer más", "Lees meer", "Leggi tutto", "Czytaj dalej",
    ),
    "blog": _words("Blog", "Ratgeber", "Blog", "Blog", "Blog", "Blog", "Blog"),
    "blog_title": _words(
        "How to choose the right {x}", "So finden Sie die richtigen {x}", "Comment bien choisir ses {x}",
        "Cómo elegir {x}", "Zo kies je de juiste {x}", "Come scegliere {x}", "Jak wybrać {x}",
    ),
    "was": _words("Was", "Statt", "Au lieu de", "Antes", "Van", "Prima", "Przed"),
    "search": _words("Search", "Suche", "Rechercher", "Buscar", "Zoeken", "Cerca", "Szukaj"),
    "search_for": _words(
        "Search results for", "Suchergebnisse für", "Résultats pour", "Resultados de búsqueda para",
        "Zoekresultaten voor", "Risultati di ricerca per", "Wyniki wyszukiwania dla",
    ),
    "faq": _words(
        "Frequently asked questions", "Häufige Fragen", "Questions fréquentes", "Preguntas frecuentes",
        "Veelgestelde vragen", "Domande frequenti", "Najczęstsze pytania",
    ),
    "hours": _words(
        "Mon-Fri 9:00-18:00", "Mo-Fr 9:00-18:00 Uhr", "Lun-Ven 9h-18h", "Lun-Vie 9:00-18:00",
        "Ma-Vr 9:00-18:00", "Lun-Ven 9:00-18:00", "Pon-Pt 9:00-18:00",
    ),
    "send": _words(
        "Send message", "Nachricht senden", "Envoyer", "Enviar mensaje", "Verstuur bericht",
        "Invia messaggio", "Wyślij wiadomość",
    ),
    "sku": _words("SKU", "Art.-Nr.", "Réf.", "Ref.", "Artikelnummer", "Cod. articolo", "Kod produktu"),
    "deals": _words("Deals", "Angebote", "Promotions", "Ofertas", "Aanbiedingen", "Offerte", "Promocje"),
    "see_all": _words(
        "See all", "Alle anzeigen", "Voir tout", "Ver todo", "Bekijk alles", "Vedi tutti", "Zobacz wszystkie",
    ),
    "account": _words(
        "My account", "Mein Konto", "Mon compte", "Mi cuenta", "Mijn account", "Il mio account", "Moje konto",
    ),
}

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Robust design for everyday use.", "Easy to clean and energy efficient.",
        "Comes with a two-year warranty.", "Compact enough for any home.", "Our experts tested it for weeks.",
    ),
    "de": (
        "Robustes Design für den täglichen Einsatz.", "Leicht zu reinigen und energiesparend.",
        "Mit zwei Jahren Garantie.", "Kompakt genug für jede Wohnung.",
        "Unsere Experten haben es wochenlang getestet.",
    ),
    "fr": (
        "Conception robuste pour un usage quotidien.", "Facile à nettoyer et économe en énergie.",
        "Garantie de deux ans incluse.", "Assez compact pour tous les logements.",
        "Nos experts l'ont testé pendant des semaines.",
    ),
    "es": (
        "Diseño robusto para el uso diario.", "Fácil de limpiar y de bajo consumo.",
        "Incluye dos años de garantía.", "Lo bastante compacto para cualquier hogar.",
        "Nuestros expertos lo probaron durante semanas.",
    ),
    "nl": (
        "Robuust ontwerp voor dagelijks gebruik.", "Makkelijk schoon te maken en zuinig.",
        "Met twee jaar garantie.", "Compact genoeg voor elk huis.",
        "Onze experts hebben het wekenlang getest.",
    ),
    "it": (
        "Design robusto per l'uso quotidiano.", "Facile da pulire e a basso consumo.",
        "Garanzia di due anni inclusa.", "Abbastanza compatto per ogni casa.",
        "I nostri esperti lo hanno provato per settimane.",
    ),
    "pl": (
        "Solidna konstrukcja do codziennego użytku.", "Łatwy w czyszczeniu i energooszczędny.",
        "Dwa lata gwarancji.", "Wystarczająco kompaktowy do każdego domu.",
        "Nasi eksperci testowali go tygodniami.",
    ),
}

DEPARTMENTS: dict[str, _W] = {
    "kitchen": _words("Kitchen", "Küche", "Cuisine", "Cocina", "Keuken", "Cucina", "Kuchnia"),
    "electronics": _words(
        "Electronics", "Elektronik", "Électronique", "Electrónica", "Elektronica", "Elettronica",
        "Elektronika",
    ),
    "garden": _words("Garden", "Garten", "Jardin", "Jardín", "Tuin", "Giardino", "Ogród"),
    "sports": _words("Sports", "Sport", "Sport", "Deportes", "Sport", "Sport", "Sport"),
    "household": _words("Household", "Haushalt", "Maison", "Hogar", "Huishouden", "Casa", "Dom"),
}


class Kind(NamedTuple):
    department: str
    names: dict[str, tuple[str, str]]  # locale -> (singular for titles, plural category)
    price_range: tuple[int, int]  # EUR


KINDS: tuple[Kind, ...] = (
    Kind(
        "kitchen",
        _words(
            ("Coffee Machine", "Coffee Machines"), ("Kaffeevollautomat", "Kaffeevollautomaten"),
            ("Machine à café", "Machines à café"), ("Cafetera", "Cafeteras"),
            ("Koffiemachine", "Koffiemachines"), ("Macchina da caffè", "Macchine da caffè"),
            ("Ekspres do kawy", "Ekspresy do kawy"),
        ),
        (199, 1499),
    ),
    Kind(
        "kitchen",
        _words(
            ("Stand Mixer", "Stand Mixers"), ("Küchenmaschine", "Küchenmaschinen"),
            ("Robot pâtissier", "Robots pâtissiers"), ("Robot de cocina", "Robots de cocina"),
            ("Keukenmachine", "Keukenmachines"), ("Impastatrice", "Impastatrici"),
            ("Robot kuchenny", "Roboty kuchenne"),
        ),
        (149, 899),
    ),
    Kind(
        "electronics",
        _words(
            ("Wireless Headphones", "Headphones"), ("Kopfhörer", "Kopfhörer"),
            ("Casque sans fil", "Casques"),
            ("Auriculares inalámbricos", "Auriculares"), ("Draadloze koptelefoon", "Koptelefoons"),
            ("Cuffie wireless", "Cuffie"), ("Słuchawki bezprzewodowe", "Słuchawki"),
        ),
        (29, 399),
    ),
    Kind(
        "electronics",
        _words(
            ("Smartwatch", "Smartwatches"), ("Smartwatch", "Smartwatches"),
            ("Montre connectée", "Montres connectées"), ("Reloj inteligente", "Relojes inteligentes"),
            ("Smartwatch", "Smartwatches"), ("Smartwatch", "Smartwatch"), ("Smartwatch", "Smartwatche"),
        ),
        (79, 499),
    ),
    Kind(
        "garden",
        _words(
            ("Lawn Mower", "Lawn Mowers"), ("Rasenmäher", "Rasenmäher"), ("Tondeuse à gazon", "Tondeuses"),
            ("Cortacésped", "Cortacéspedes"), ("Grasmaaier", "Grasmaaiers"), ("Tosaerba", "Tosaerba"),
            ("Kosiarka", "Kosiarki"),
        ),
        (149, 1299),
    ),
    Kind(
        "garden",
        _words(
            ("Pressure Washer", "Pressure Washers"), ("Hochdruckreiniger", "Hochdruckreiniger"),
            ("Nettoyeur haute pression", "Nettoyeurs haute pression"),
            ("Hidrolimpiadora", "Hidrolimpiadoras"), ("Hogedrukreiniger", "Hogedrukreinigers"),
            ("Idropulitrice", "Idropulitrici"), ("Myjka ciśnieniowa", "Myjki ciśnieniowe"),
        ),
        (89, 599),
    ),
    Kind(
        "sports",
        _words(
            ("Running Shoes", "Running Shoes"), ("Laufschuh", "Laufschuhe"),
            ("Chaussure de running", "Chaussures de running"),
            ("Zapatilla de running", "Zapatillas de running"), ("Hardloopschoen", "Hardloopschoenen"),
            ("Scarpa da running", "Scarpe da running"), ("Buty do biegania", "Buty do biegania"),
        ),
        (49, 219),
    ),
    Kind(
        "sports",
        _words(
            ("Yoga Mat", "Yoga Mats"), ("Yogamatte", "Yogamatten"), ("Tapis de yoga", "Tapis de yoga"),
            ("Esterilla de yoga", "Esterillas de yoga"), ("Yogamat", "Yogamatten"),
            ("Tappetino yoga", "Tappetini yoga"), ("Mata do jogi", "Maty do jogi"),
        ),
        (14, 89),
    ),
    Kind(
        "household",
        _words(
            ("Cordless Vacuum", "Vacuum Cleaners"), ("Akku-Staubsauger", "Staubsauger"),
            ("Aspirateur sans fil", "Aspirateurs"), ("Aspiradora sin cable", "Aspiradoras"),
            ("Snoerloze stofzuiger", "Stofzuigers"), ("Aspirapolvere senza fili", "Aspirapolvere"),
            ("Odkurzacz bezprzewodowy", "Odkurzacze"),
        ),
        (99, 799),
    ),
    Kind(
        "household",
        _words(
            ("LED Desk Lamp", "Lamps"), ("LED-Schreibtischlampe", "Lampen"),
            ("Lampe de bureau LED", "Luminaires"), ("Lámpara de escritorio LED", "Iluminación"),
            ("LED-bureaulamp", "Verlichting"), ("Lampada da scrivania LED", "Illuminazione"),
            ("Lampka biurkowa LED", "Oświetlenie"),
        ),
        (19, 149),
    ),
)

COLORS: dict[str, tuple[str, ...]] = {
    "en": ("Black", "White", "Silver", "Blue"),
    "de": ("Schwarz", "Weiß", "Silber", "Blau"),
    "fr": ("Noir", "Blanc", "Argent", "Bleu"),
    "es": ("Negro", "Blanco", "Plata", "Azul"),
    "nl": ("Zwart", "Wit", "Zilver", "Blauw"),
    "it": ("Nero", "Bianco", "Argento", "Blu"),
    "pl": ("Czarny", "Biały", "Srebrny", "Niebieski"),
}
BRANDS = (
    "Voltara", "Nordvik", "Kessler", "Aurelio", "Brightline", "Solvo", "Tervo", "Mavra",
    "Lumio", "Bergstahl", "Quintro", "Zentrix", "Halden", "Corvina", "Pikora", "Ostermann",
)
CURRENCY_RATE = {"EUR": 1.0, "USD": 1.1, "GBP": 0.86, "PLN": 4.3}
_NUMBER_SEPARATORS = {  # locale -> (thousands, decimal)
    "en": (",", "."), "de": (".", ","), "fr": ("\u202f", ","), "es": (".", ","),
    "nl": (".", ","), "it": (".", ","), "pl": (" ", ","),
}
_SCHEMA_AVAILABILITY = {
    "in_stock": "InStock",
    "out_of_stock": "OutOfStock",
    "preorder": "PreOrder",
    "limited": "LimitedAvailability",
}
_OG_AVAILABILITY = {
    "in_stock": "in stock", "out_of_stock": "out of stock", "preorder": "preorder", "limited": "in stock",
}

# fmt: on

# --- dirty-row data ---------------------------------------------------------

DIRTY_REASONS = (
    "duplicate_id",
    "unknown_task",
    "empty_prompt",
    "invalid_json",
    "label_outside_set",
    "invalid_slot_specs",
)
_NAV_DIRT = ("duplicate_id", "unknown_task", "empty_prompt", "label_outside_set")
_PRODUCT_DIRT = ("duplicate_id", "unknown_task", "empty_prompt", "invalid_json", "invalid_slot_specs")
_UNKNOWN_TASKS = ("navpage_classifer", "pricepage_extractor", "NAVPAGE", "product_extractor_v0", "")
_BLANK_PROMPTS = ("", "   ", "\n\n\t ")
_BAD_LABELS = (
    "YES, because the page lists many products",
    "NO - this is a single product page",
    "MAYBE",
    "Listing page",
    "I think YES",
    "",
)
_BAD_SLOT_SPECS = ('{"title": {"type": "string", "scorer": "fuz', "{'title': 'fuzzy'}", "slots: see catalog")

COLUMNS = ("id", "task", "prompt_text", "response_strong", "metadata", "slot_specs", "system_prompt")
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


def _product_url(rng: random.Random, shop: Shop, kind: Kind, title: str, sku: str | None) -> str:
    number = rng.randint(10000, 999999)
    plural = _slug(kind.names[shop.locale][1])
    path = rng.choice(
        (
            f"/{plural}/{_slug(title)}-{number}.html",
            f"/p/{number}",
            f"/product/{_slug(title)}",
            f"/{_slug(DEPARTMENTS[kind.department][shop.locale])}/{plural}/{_slug(title)}",
            f"/index.php?route=product&id={number}",
        )
    )
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
        url=_product_url(rng, shop, kind, title, sku),
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


def _breadcrumb_html(categories: list[str], shop: Shop) -> str:
    links = [f'<a href="/">{_word("home", shop)}</a>']
    links += [f'<a href="/{_slug(name)}">{name}</a>' for name in categories[:-1]]
    links.append(f'<span class="current">{categories[-1]}</span>')
    return '<nav class="breadcrumb" aria-label="breadcrumb">' + " &rsaquo; ".join(links) + "</nav>"


def _rating_html(p: Product, shop: Shop, microdata: bool = False) -> str:
    if p.rating is None:
        return ""
    value = _fmt_number(p.rating, shop.locale, 1)
    if microdata:
        count = (
            f' (<span itemprop="reviewCount">{p.review_count}</span>)' if p.review_count is not None else ""
        )
        return (
            '<div class="rating" itemprop="aggregateRating" itemscope '
            'itemtype="https://schema.org/AggregateRating">'
            f'<meta itemprop="ratingValue" content="{p.rating}">{_word("out_of", shop, r=value)}{count}</div>'
        )
    count = (
        f' <a href="#reviews">{_word("reviews", shop, n=p.review_count)}</a>'
        if p.review_count is not None
        else ""
    )
    stars = f'<span class="stars" style="width:{int(p.rating * 20)}%"></span>'
    return f'<div class="rating">{stars}{_word("out_of", shop, r=value)}{count}</div>'


def _price_block(p: Product, shop: Shop, price_cls: str = "price", old_cls: str = "old-price") -> str:
    old = (
        f'<del class="{old_cls}">{_word("was", shop)} {_fmt_price(p.original_price, shop)}</del> '
        if p.original_price
        else ""
    )
    return f'<div class="price-box">{old}<span class="{price_cls}">{_fmt_price(p.price, shop)}</span></div>'


def _core_microdata(p: Product, shop: Shop, rng: random.Random) -> str:
    parts = ['<div class="product-detail" itemscope itemtype="https://schema.org/Product">']
    if p.categories:
        parts.append(_breadcrumb_html(p.categories, shop))
    parts.append(f'<h1 itemprop="name" class="pdp-title">{p.title}</h1>')
    if p.brand:
        parts.append(
            f'<div class="brand">{_word("brand", shop)}: <span itemprop="brand">{p.brand}</span></div>'
        )
    if p.image_url:
        parts.append(f'<img itemprop="image" src="{p.image_url}" alt="{p.title}" width="600" loading="lazy">')
    parts.append(_rating_html(p, shop, microdata=True))
    parts.append('<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">')
    parts.append(f'<meta itemprop="priceCurrency" content="{p.currency}">')
    if p.original_price:
        parts.append(
            f'<del class="old-price">{_word("was", shop)} {_fmt_price(p.original_price, shop)}</del>'
        )
    parts.append(f'<span itemprop="price" content="{p.price:.2f}">{_fmt_price(p.price, shop)}</span>')
    if p.availability:
        parts.append(
            f'<link itemprop="availability" href="https://schema.org/{_SCHEMA_AVAILABILITY[p.availability]}">'
            f'<span class="stock">{_availability_text(p, shop)}</span>'
        )
    parts.append("</div>")
    if p.sku:
        parts.append(f'<p class="sku">{_word("sku", shop)}: <span itemprop="sku">{p.sku}</span></p>')
    parts.append(
        f'<button type="submit" class="btn btn-primary add-to-cart">{_word("add_to_cart", shop)}</button>'
    )
    parts.append(
        f'<div itemprop="description"><h2>{_word("description", shop)}</h2>'
        f"<p>{_description(rng, shop)}</p></div></div>"
    )
    return "\n".join(part for part in parts if part)


def _core_jsonld(p: Product, shop: Shop, rng: random.Random) -> str:
    data: dict = {"@context": "https://schema.org", "@type": "Product", "name": p.title}
    if p.image_url:
        data["image"] = [p.image_url]
    if p.brand:
        data["brand"] = {"@type": "Brand", "name": p.brand}
    if p.sku:
        data["sku"] = p.sku
    offer = {"@type": "Offer", "url": p.url, "priceCurrency": p.currency, "price": f"{p.price:.2f}"}
    if p.availability:
        offer["availability"] = f"https://schema.org/{_SCHEMA_AVAILABILITY[p.availability]}"
    data["offers"] = offer
    if p.rating is not None:
        data["aggregateRating"] = {"@type": "AggregateRating", "ratingValue": str(p.rating)}
        if p.review_count is not None:
            data["aggregateRating"]["reviewCount"] = str(p.review_count)
    scripts = [f'<script type="application/ld+json">{json.dumps(data, ensure_ascii=False)}</script>']
    if p.categories:
        crumbs = {
            "@context": "https://schema.org",
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": i + 1, "name": name} for i, name in enumerate(p.categories)
            ],
        }
        scripts.append(
            f'<script type="application/ld+json">{json.dumps(crumbs, ensure_ascii=False)}</script>'
        )
    rng.shuffle(scripts)
    visible = [
        f'<main id="pdp"><h1 class="title">{p.title}</h1>',
        _price_block(p, shop),
        f'<p class="stock">{_availability_text(p, shop)}</p>' if p.availability else "",
        f'<button class="cta">{_word("add_to_cart", shop)}</button>',
        f'<section class="desc"><p>{_description(rng, shop)}</p></section></main>',
    ]
    return "\n".join(part for part in scripts + visible if part)


def _core_divs(p: Product, shop: Shop, rng: random.Random) -> str:
    c = shop.classes
    parts = ['<div class="container"><div class="row">']
    if p.categories:
        parts.append(
            '<ul class="crumbs">' + "".join(f"<li><a>{name}</a></li>" for name in p.categories) + "</ul>"
        )
    if p.image_url:
        parts.append(f'<div class="gallery"><img data-src="{p.image_url}" src="{p.image_url}"></div>')
    parts.append(f'<div class="col-md-6"><div class="{c["title"]}">{p.title}</div>')
    if p.brand:
        parts.append(f'<div class="{c["brand"]}"><a href="/{_slug(p.brand)}">{p.brand}</a></div>')
    parts.append(_rating_html(p, shop))
    parts.append(_price_block(p, shop, c["price"], c["old"]))
    if p.availability:
        parts.append(f'<div class="{c["stock"]}"><i class="icon"></i> {_availability_text(p, shop)}</div>')
    if p.sku:
        parts.append(f'<div class="meta">{_word("sku", shop)} {p.sku}</div>')
    parts.append(f'<a class="btn" href="#">{_word("add_to_cart", shop)}</a></div></div>')
    parts.append(f'<div class="tab-content"><p>{_description(rng, shop)}</p></div></div>')
    return "\n".join(part for part in parts if part)


def _core_table(p: Product, shop: Shop, rng: random.Random) -> str:
    rows = []
    if p.brand:
        rows.append((_word("brand", shop), p.brand))
    price = f'<font color="#cc0000"><b>{_fmt_price(p.price, shop)}</b></font>'
    if p.original_price:
        price = f"<s>{_fmt_price(p.original_price, shop)}</s><br>{price}"
    rows.append((_word("price", shop), price))
    if p.availability:
        rows.append(("", _availability_text(p, shop)))
    if p.sku:
        rows.append((_word("sku", shop), p.sku))
    if p.rating is not None:
        count = f" ({_word('reviews', shop, n=p.review_count)})" if p.review_count is not None else ""
        rows.append(("", _word("out_of", shop, r=_fmt_number(p.rating, shop.locale, 1)) + count))
    cells = "\n".join(f'<tr><td class="lbl">{label}</td><td>{value}</td></tr>' for label, value in rows)
    crumbs = ""
    if p.categories:
        crumbs = '<tr><td colspan="2"><small>' + " &gt; ".join(p.categories) + "</small></td></tr>\n"
    image = f'<img src="{p.image_url}" border="0" width="300">' if p.image_url else "&nbsp;"
    return (
        f'<table width="100%" border="0" cellpadding="2" cellspacing="0">\n{crumbs}'
        f'<tr><td colspan="2"><font size="4"><b>{p.title}</b></font></td></tr>\n'
        f'<tr><td valign="top">{image}</td><td valign="top"><table cellpadding="3">\n{cells}\n</table>\n'
        f'<input type="image" src="/images/buttons/buy.gif" alt="{_word("add_to_cart", shop)}"></td></tr>\n'
        f'<tr><td colspan="2">{_description(rng, shop)}</td></tr></table>'
    )


def _core_opengraph(p: Product, shop: Shop, rng: random.Random) -> str:
    metas = [("og:type", "product"), ("og:title", p.title), ("og:url", p.url)]
    if p.image_url:
        metas.append(("og:image", p.image_url))
    if p.brand:
        metas.append(("product:brand", p.brand))
    metas += [("product:price:amount", f"{p.price:.2f}"), ("product:price:currency", p.currency)]
    if p.availability:
        metas.append(("product:availability", _OG_AVAILABILITY[p.availability]))
    if p.sku:
        metas.append(("product:retailer_item_id", p.sku))
    if p.categories:
        metas.append(("product:category", " > ".join(p.categories)))
    head = "\n".join(f'<meta property="{prop}" content="{value}">' for prop, value in metas)
    body = [
        f'</head><body class="pdp"><h1>{p.title}</h1>',
        _price_block(p, shop),
        _rating_html(p, shop),
        f'<span class="availability">{_availability_text(p, shop)}</span>' if p.availability else "",
        f"<button>{_word('add_to_cart', shop)}</button><p>{_description(rng, shop)}</p>",
    ]
    return head + "\n" + "\n".join(part for part in body if part)


_CORE_BUILDERS = {
    "microdata": _core_microdata,
    "jsonld": _core_jsonld,
    "divs": _core_divs,
    "table": _core_table,
    "opengraph": _core_opengraph,
}

# --- page boilerplate and mutilation ----------------------------------------


def _head_junk(rng: random.Random, shop: Shop) -> str:
    return (
        f'<!DOCTYPE html><html lang="{shop.locale}"><head><meta charset="utf-8">'
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
        f'<header class="hdr"><a class="logo" href="/"><img src="/logo.svg" alt="{shop.domain}"></a>'
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


def _inline_styles(html: str, rng: random.Random, rate: float) -> str:
    styles = ("margin:0 4px", "display:none", "color:#333;font-size:13px", "padding:2px")
    return _TAG_RE.sub(
        lambda m: f'<{m.group(1)} style="{rng.choice(styles)}"' if rng.random() < rate else m.group(0), html
    )


def _mutilate(rng: random.Random, shop: Shop, core: str) -> str:
    """Boilerplate around the core, cut mid-tag at both ends; the core is never cut."""
    before = [_head_junk(rng, shop)] + [b(shop) for b in (_cookie_banner, _nav_menu) if rng.random() < 0.8]
    after = [b(shop) for b in (_newsletter, _footer) if rng.random() < 0.7] + [_tracking(rng, shop)]
    rng.shuffle(after)
    before[0] = before[0][rng.randrange(1, len(before[0]) - 1) :]
    after[-1] = after[-1][: rng.randrange(1, len(after[-1]) - 1)]
    if rng.random() < 0.4:  # minified page: no line breaks in the template
        core = re.sub(r"\n\s*", "", core)
    html = "".join(part + rng.choice(_JOINERS) for part in [*before, core, *after])
    html = _drop_attributes(html, rng, rate=rng.uniform(0.1, 0.5))
    return _inline_styles(html, rng, rate=0.05).strip()


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


def _product_row(rng: random.Random, shop: Shop) -> tuple[str, str, str]:
    product = _make_product(rng, shop)
    core = _CORE_BUILDERS[shop.layout](product, shop, rng)
    if rng.random() < RELATED_SHARE:  # other titles and prices on the page: distractors
        core += (
            f"\n<h3>{_word('related', shop)}</h3>" + _card_grid(rng, shop, product.kind, rng.randint(2, 4))[1]
        )
    html = _mutilate(rng, shop, core)
    return product.url, _product_prompt(product.url, html), _product_response(product.answer(), rng)


# --- nav rows ---------------------------------------------------------------

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


if __name__ == "__main__":
    main()
