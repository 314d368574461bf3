"""Per-locale words and sentences, product kinds, colours, brands, number formats and dirty-row data."""

from __future__ import annotations

from typing import NamedTuple

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
    "recently_viewed": _words(
        "Recently viewed", "Zuletzt angesehen", "Vus récemment", "Vistos recientemente", "Laatst bekeken",
        "Visti di recente", "Ostatnio oglądane",
    ),
    "notify": _words(
        "Notify me when available", "Benachrichtigen, wenn verfügbar", "M'alerter du retour",
        "Avisarme cuando vuelva", "Mail mij bij terugkomst", "Avvisami al riassortimento",
        "Powiadom o dostawie",
    ),
    "wishlist": _words(
        "Add to wishlist", "Auf den Merkzettel", "Ajouter à mes envies", "Añadir a favoritos",
        "Op mijn verlanglijst", "Aggiungi ai preferiti", "Dodaj do ulubionych",
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
    # Ratings on another scale than the catalog's 0-5: the label is normalised (8.6/10 and 86% -> 4.3).
    "out_of_10": _words(
        "{r}/10", "{r} von 10", "{r}/10", "{r} de 10", "{r} van 10", "{r} su 10", "{r}/10",
    ),
    "rating_percent": _words(
        "Rated {p}%", "Bewertung: {p} %", "Note : {p} %", "Valoración: {p} %", "Beoordeling: {p}%",
        "Valutazione: {p}%", "Ocena: {p}%",
    ),
    # Prices beside the main one: bundles, instalments, thresholds and savings are not the price.
    "bundle": _words(
        "Frequently bought together", "Wird oft zusammen gekauft", "Souvent achetés ensemble",
        "Comprados juntos habitualmente", "Vaak samen gekocht", "Spesso comprati insieme",
        "Często kupowane razem",
    ),
    "this_item": _words(
        "This item", "Dieser Artikel", "Cet article", "Este artículo", "Dit artikel", "Questo articolo",
        "Ten produkt",
    ),
    "bundle_total": _words(
        "Total price", "Gesamtpreis", "Prix total", "Precio total", "Totaalprijs", "Prezzo totale",
        "Cena łączna",
    ),
    "bundle_add": _words(
        "Add all {n} to basket", "Alle {n} kaufen", "Acheter les {n}", "Comprar los {n}", "Alle {n} kopen",
        "Acquista tutti e {n}", "Kup wszystkie {n}",
    ),
    "installments": _words(
        "or {n} payments of {x}", "oder {n} Raten à {x}", "ou {n} fois {x}", "o {n} cuotas de {x}",
        "of {n} termijnen van {x}", "o {n} rate da {x}", "lub {n} rat po {x}",
    ),
    "free_shipping": _words(
        "Free delivery on orders over {x}", "Versandkostenfrei ab {x}", "Livraison offerte dès {x}",
        "Envío gratis a partir de {x}", "Gratis verzending vanaf {x}", "Spedizione gratuita da {x}",
        "Darmowa dostawa od {x}",
    ),
    "you_save": _words(
        "You save {x}", "Sie sparen {x}", "Vous économisez {x}", "Ahorras {x}", "Je bespaart {x}",
        "Risparmi {x}", "Oszczędzasz {x}",
    ),
}

# Text of image-gallery widgets that real pages put before the product name; never the title.
GALLERY_HINTS: dict[str, tuple[str, ...]] = {
    "en": ("Roll over image to zoom in", "Click image to open expanded view", "Tap image to enlarge"),
    "de": ("Zum Vergrößern über das Bild fahren", "Zum Vergrößern auf das Bild klicken", "Bild vergrößern"),
    "fr": ("Passez la souris sur l'image pour zoomer", "Cliquez sur l'image pour l'agrandir", "Agrandir l'image"),
    "es": ("Pasa el ratón por encima de la imagen para ampliarla", "Haz clic para ampliar", "Ampliar imagen"),
    "nl": ("Beweeg over de afbeelding om in te zoomen", "Klik om te vergroten", "Afbeelding vergroten"),
    "it": ("Passa il mouse sull'immagine per ingrandirla", "Clicca per ingrandire", "Ingrandisci immagine"),
    "pl": ("Najedź na zdjęcie, aby powiększyć", "Kliknij, aby powiększyć", "Powiększ zdjęcie"),
}
GALLERY_VIDEO = _words("Video", "Video", "Vidéo", "Vídeo", "Video", "Video", "Wideo")

# Free-text stock lines, several per state and locale; the label is the state (the catalog's enum).
# No phrase of one state may read as another (tests/scripts/test_sample_labels.py checks with its
# own reader); `limited` phrases may contain an in-stock phrase: a reader takes `limited` first.
STOCK_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "in_stock": {
        "en": ("In stock", "Ready to ship", "Ships in 1-2 business days", "Available for delivery in 3-5 days"),
        "de": ("Auf Lager", "Sofort lieferbar", "Lieferzeit 1-3 Werktage", "Versandfertig in 24 Stunden"),
        "fr": ("En stock", "Expédié sous 24h", "Livraison en 3 à 5 jours", "Disponible immédiatement"),
        "es": ("En stock", "Envío en 24/48 horas", "Entrega en 3-5 días laborables", "Disponible en almacén"),
        "nl": ("Op voorraad", "Voor 23:00 besteld, morgen in huis", "Levertijd 1-2 werkdagen", "Direct leverbaar"),
        "it": ("Disponibile", "Spedizione in 24 ore", "Consegna in 3-5 giorni lavorativi", "Pronta consegna"),
        "pl": ("Dostępny", "Wysyłka w 24 godziny", "Dostawa w 3-5 dni roboczych", "Produkt dostępny od ręki"),
    },
    "out_of_stock": {
        "en": ("Out of stock", "Currently unavailable", "Sold out", "Temporarily out of stock"),
        "de": ("Nicht vorrätig", "Derzeit nicht verfügbar", "Ausverkauft", "Leider vergriffen"),
        "fr": ("Rupture de stock", "Actuellement indisponible", "Épuisé", "Momentanément épuisé"),
        "es": ("Agotado", "No disponible temporalmente", "Sin existencias", "Fuera de stock"),
        "nl": ("Uitverkocht", "Tijdelijk niet leverbaar", "Niet op voorraad", "Niet meer leverbaar"),
        "it": ("Esaurito", "Non disponibile", "Temporaneamente esaurito", "Prodotto esaurito"),
        "pl": ("Niedostępny", "Chwilowo niedostępny", "Wyprzedany", "Brak w magazynie"),
    },
    "preorder": {
        "en": ("Pre-order now", "Pre-order: ships on release", "Coming soon - reserve yours", "Available for pre-order"),
        "de": ("Jetzt vorbestellen", "Vorbestellung möglich", "Erscheint in Kürze - jetzt reservieren",
               "Vorbestellbar"),
        "fr": ("Précommande", "Précommander maintenant", "Bientôt disponible - réservez", "En précommande"),
        "es": ("Reserva ya", "Preventa", "Próximamente - resérvalo", "Disponible en preventa"),
        "nl": ("Nu pre-orderen", "Reserveer nu", "Binnenkort verwacht - reserveer", "Pre-order"),
        "it": ("Preordina ora", "In preordine", "Prossimamente - prenotalo", "Prenotabile"),
        "pl": ("Przedsprzedaż", "Zamów przedpremierowo", "Wkrótce - zarezerwuj", "W przedsprzedaży"),
    },
    "limited": {
        "en": ("Only {n} left", "Only {n} left in stock - order soon", "Low stock: {n} items", "Hurry, just {n} left"),
        "de": ("Nur noch {n} Stück", "Nur noch {n} auf Lager", "Geringer Bestand: {n} Stück", "Fast weg: {n} übrig"),
        "fr": ("Plus que {n} en stock", "Stock limité : {n} articles", "Dépêchez-vous, plus que {n}",
               "Il ne reste que {n} exemplaires"),
        "es": ("Últimas {n} unidades", "Solo quedan {n}", "Stock limitado: {n} unidades", "¡Date prisa, quedan {n}!"),
        "nl": ("Nog maar {n} op voorraad", "Laatste {n} stuks", "Beperkte voorraad: {n} stuks", "Op = op, nog {n}"),
        "it": ("Solo {n} rimasti", "Ultimi {n} pezzi", "Scorte limitate: {n} pezzi", "Affrettati, ne restano {n}"),
        "pl": ("Zostało tylko {n} szt.", "Ostatnie {n} sztuki", "Ograniczona ilość: {n} szt.", "Pospiesz się, zostało {n}"),
    },
}

BREADCRUMB_SEPARATORS = ("&rsaquo;", "/", "&raquo;", "&gt;", "|", "›", "→")
# a number in some shops' names ("Bergsport 24"): a number that is neither a price nor a rating
SHOP_NAME_NUMBERS = ("24", "365", "1998", "360", "4U", "2000")

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
    # brand words with numbers, as on real pages ("365 by Whole Foods Market"): never a price
    "365 by Marlow Market", "Atelier 1907", "Nordic 360", "Studio 54", "Linea 8",
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
_OG_STATES = {"in stock": "in_stock", "out of stock": "out_of_stock", "preorder": "preorder"}  # og -> catalog

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
