"""The simulated shop's world: product catalog, people and their latent traits.

Everything here is vectorised numpy over arrays of people or items. People are
simulated in chunks (see :mod:`pipelines.simulator`); a chunk's arrays carry the
global person index so identifiers stay unique across chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "Kitchen", "Dining", "Bedding", "Bath", "Lighting", "Furniture", "Garden", "Outdoor",
    "Tools", "Toys", "Baby", "Books", "Stationery", "Art Supplies", "Music", "Electronics",
    "Phone Accessories", "Computers", "Gaming", "Sports", "Fitness", "Cycling", "Camping",
    "Beauty", "Fragrance", "Health", "Pet Supplies", "Womenswear", "Menswear", "Shoes",
    "Jewellery", "Food and Drink",
)  # fmt: skip
STYLES: tuple[str, ...] = ("Classic", "Modern", "Vintage", "Eco")
_NOUNS = ("Set", "Kit", "Pack", "Bundle", "Essentials", "Collection", "Box", "Edition")
FIRST_NAMES: tuple[str, ...] = (
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar",
    "William", "James", "Leo", "Alfie", "Henry", "Joshua", "Freddie", "Archie", "Ethan",
    "Isaac", "Alexander", "Joseph", "Edward", "Samuel", "Max", "Daniel", "Arthur", "Lucas",
    "Mohammed", "Logan", "Theo", "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia",
    "Grace", "Mia", "Poppy", "Ella", "Lily", "Evie", "Isabella", "Sophie", "Ivy", "Freya",
    "Harper", "Willow", "Charlotte", "Jessica", "Daisy", "Florence", "Ruby", "Chloe", "Alice",
    "Sienna", "Phoebe", "Matilda", "Rosie", "Emma", "Priya", "Aisha", "Fatima", "Zara",
    "Hannah", "Sarah", "Laura", "Rachel", "David", "Michael", "Paul", "Mark", "Andrew",
    "Richard", "Peter", "Stephen", "Susan", "Karen", "Helen", "Claire",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards",
    "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood",
    "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King",
    "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis",
    "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter",
    "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards",
    "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson",
    "Foster", "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali",
)  # fmt: skip
#: (city, postcode area, share of people, probability that a delivery is late)
CITIES: tuple[tuple[str, str, float, float], ...] = (
    ("London", "SW", 0.20, 0.05), ("London", "N", 0.08, 0.05), ("Birmingham", "B", 0.07, 0.08),
    ("Manchester", "M", 0.07, 0.07), ("Leeds", "LS", 0.05, 0.08), ("Glasgow", "G", 0.05, 0.15),
    ("Liverpool", "L", 0.04, 0.08), ("Bristol", "BS", 0.04, 0.06), ("Sheffield", "S", 0.04, 0.09),
    ("Edinburgh", "EH", 0.04, 0.12), ("Cardiff", "CF", 0.03, 0.10), ("Leicester", "LE", 0.03, 0.08),
    ("Nottingham", "NG", 0.03, 0.08), ("Newcastle", "NE", 0.03, 0.12), ("Brighton", "BN", 0.03, 0.06),
    ("Southampton", "SO", 0.03, 0.07), ("Norwich", "NR", 0.02, 0.14), ("Exeter", "EX", 0.02, 0.16),
    ("Belfast", "BT", 0.03, 0.30), ("Aberdeen", "AB", 0.02, 0.32), ("Inverness", "IV", 0.02, 0.40),
    ("Truro", "TR", 0.02, 0.28),
)  # fmt: skip
STREETS: tuple[str, ...] = (
    "High Street", "Station Road", "Main Street", "Park Road", "Church Road", "Church Street",
    "London Road", "Victoria Road", "Green Lane", "Manor Road", "Church Lane", "Park Avenue",
    "The Avenue", "Queens Road", "New Road", "Grange Road", "Kings Road", "Albert Road",
)  # fmt: skip
EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "hotmail.co.uk", "yahoo.co.uk", "outlook.com", "btinternet.com",
    "icloud.com", "sky.com", "live.co.uk", "aol.com", "virginmedia.com",
)  # fmt: skip
_DOMAIN_P = np.array([0.34, 0.14, 0.1, 0.1, 0.07, 0.08, 0.05, 0.05, 0.03, 0.04])
CONSENT_P: dict[str, float] = {
    "email": 0.72,
    "sms": 0.38,
    "push": 0.55,
    "personalization": 0.8,
    "profiling": 0.6,
}
N_ITEMS = 1500
N_STYLES = len(STYLES)
TASTE_WEIGHTS = np.array([0.6, 0.28, 0.12])  # favourite, second, third category
P_EXPLORE = 0.1  # a draw from global popularity instead of the person's taste
P_OWN_STYLE = 0.85


@dataclass
class Catalog:
    """Products, grouped by (category, style) for fast taste-driven sampling."""

    sku: np.ndarray  # str
    title: np.ndarray  # str
    category: np.ndarray  # int, index into CATEGORIES
    style: np.ndarray  # int
    price: np.ndarray  # float, list price
    in_stock: np.ndarray  # bool
    cat_pop: np.ndarray  # category popularity (sums to 1)
    group_items: np.ndarray  # item indices sorted by group (category * N_STYLES + style)
    group_key: np.ndarray  # group + within-group cumulative weight, for searchsorted
    global_cum: np.ndarray  # cumulative global popularity over items


def build_catalog(rng: np.random.Generator, n_items: int = N_ITEMS) -> Catalog:
    """Draw the product catalog: categories, styles, prices and popularity."""
    n_cat = len(CATEGORIES)
    cat_pop = rng.dirichlet(np.full(n_cat, 2.0))
    # every (category, style) group gets items; bigger categories get more
    base = np.full(n_cat, N_STYLES * 3)
    extra = rng.multinomial(n_items - base.sum(), 0.5 * cat_pop + 0.5 / n_cat)
    per_cat = base + extra
    category = np.repeat(np.arange(n_cat), per_cat)
    within = np.arange(n_items) - np.repeat(np.cumsum(per_cat) - per_cat, per_cat)
    style = within % N_STYLES
    cat_price = np.exp(rng.normal(3.0, 0.6, n_cat))
    price = np.round(np.floor(cat_price[category] * np.exp(rng.normal(0, 0.45, n_items))) + 0.99, 2)
    pop = np.exp(rng.normal(0.0, 1.1, n_items))
    in_stock = rng.random(n_items) > 0.06
    sku = _cat("SKU", (10000 + 7 * np.arange(n_items)).astype(str))
    nouns = np.array(_NOUNS)[rng.integers(0, len(_NOUNS), n_items)]
    title = _cat(
        np.array(STYLES)[style], " ", np.array(CATEGORIES)[category], " ", nouns, " No. ",
        (within // N_STYLES + 1).astype(str),
    )  # fmt: skip
    group = category * N_STYLES + style
    order = np.lexsort((-pop, group))
    g_sorted = group[order]
    w = pop[order]
    gsum = np.bincount(g_sorted, weights=w, minlength=n_cat * N_STYLES)
    cum = np.cumsum(w)
    start = np.cumsum(gsum) - gsum
    within_cum = (cum - start[g_sorted]) / gsum[g_sorted]
    within_cum[np.r_[np.diff(g_sorted) != 0, True]] = 1.0  # exact group ends
    gpop = pop * cat_pop[category]
    return Catalog(
        sku=sku,
        title=title,
        category=category,
        style=style,
        price=price,
        in_stock=in_stock,
        cat_pop=cat_pop,
        group_items=order,
        group_key=g_sorted + within_cum,
        global_cum=np.cumsum(gpop) / gpop.sum(),
    )


def sample_items(
    rng: np.random.Generator,
    catalog: Catalog,
    fav_cats: np.ndarray,
    style: np.ndarray,
) -> np.ndarray:
    """One item per row from each row's latent taste.

    ``fav_cats`` is ``(n, 3)`` (favourite categories, best first) and ``style``
    ``(n,)``; a draw picks a favourite category with :data:`TASTE_WEIGHTS`, the
    person's style with probability :data:`P_OWN_STYLE`, then an item by
    popularity within the (category, style) group. With probability
    :data:`P_EXPLORE` the draw comes from global popularity instead.
    """
    n = len(style)
    slot = np.searchsorted(np.cumsum(TASTE_WEIGHTS), rng.random(n) * TASTE_WEIGHTS.sum())
    slot = np.minimum(slot, fav_cats.shape[1] - 1)
    cat = fav_cats[np.arange(n), slot]
    sty = np.where(rng.random(n) < P_OWN_STYLE, style, rng.integers(0, N_STYLES, n))
    key = cat * N_STYLES + sty + rng.random(n) * (1 - 1e-9) + 1e-12
    pos = np.minimum(np.searchsorted(catalog.group_key, key), len(catalog.group_items) - 1)
    items = catalog.group_items[pos]
    explore = rng.random(n) < P_EXPLORE
    if explore.any():
        g = np.searchsorted(catalog.global_cum, rng.random(int(explore.sum())))
        items[explore] = np.minimum(g, len(catalog.sku) - 1)
    return items


def affine_ids(index: np.ndarray, modulus: int, seed: int) -> np.ndarray:
    """A bijection of ``[0, modulus)``: unique, random-looking numbers for unique indices."""
    mult = 2_654_435_761 % modulus
    while np.gcd(mult, modulus) != 1:
        mult += 1
    return (index.astype(np.int64) * mult + (seed * 7919 + 104_729_173) % modulus) % modulus


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    """Element-wise string concatenation of arrays and constants."""
    out = np.asarray(parts[0]).astype(str)
    for p in parts[1:]:
        out = np.char.add(out, np.asarray(p).astype(str))
    return out
