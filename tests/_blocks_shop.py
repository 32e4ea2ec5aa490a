"""A small shop with eight months of orders, for the block evaluation and the ``blocks`` step.

Four categories of ten items; each customer has a favourite category and three
staple items they buy again in most orders, plus one or two other items of
their category. Seeded, about 2,000 order lines; written straight into a
workspace's store (``order_lines`` and ``products``, no identity run: the person
is the shop's ``customer_id``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ("garden", "kitchen", "toys", "books")


def products() -> pd.DataFrame:
    """40 items: ``<category>-<n>``, titled after their category, prices rising with ``n``."""
    items = [(c, j) for c in CATEGORIES for j in range(10)]
    return pd.DataFrame(
        {
            "source": "catalog",
            "record_id": [f"{c}-{j}" for c, j in items],
            "item_id": [f"{c}-{j}" for c, j in items],
            "title": [f"{c} item {'small' if j < 5 else 'large'} {j}" for c, j in items],
            "category": [c for c, _ in items],
            "price": [2.0 + j for _, j in items],
            "in_stock": True,
            "ingested_at": pd.Timestamp("2024-01-01"),
        }
    )


def order_lines(customers: int = 80, seed: int = 0) -> pd.DataFrame:
    """Orders from 2024-01-01 to about 2024-08-31, every 10 to 40 days per customer."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for c in range(customers):
        cat = CATEGORIES[c % len(CATEGORIES)]
        own = [f"{cat}-{j}" for j in range(10)]
        staples = list(rng.choice(own, 3, replace=False))
        day = float(rng.uniform(0, 20))
        o = 0
        while day < 240:
            basket = {s for s in staples if rng.random() < 0.7}
            basket |= set(rng.choice(own, int(rng.integers(1, 3)), replace=False))
            ts = start + pd.Timedelta(days=day)
            for item in sorted(basket):
                rows.append((f"C{c:03d}", f"o{c:03d}-{o}", ts, item))
            o += 1
            day += float(rng.uniform(10, 40))
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "ts", "item_id"])
    return df.assign(
        source="shop",
        record_id=[f"r{i}" for i in range(len(df))],
        source_record_id=[f"r{i}" for i in range(len(df))],
        quantity=1.0,
        unit_price=3.0,
        status="completed",
    )


def load_shop(ws, customers: int = 80, seed: int = 0) -> pd.DataFrame:
    """Write the shop's order lines and catalogue into ``ws``'s store; returns the lines."""
    lines = order_lines(customers, seed)
    with ws.open_store() as store:
        store.ensure_schema()
        store.load_arrow("order_lines", lines)
        store.load_arrow("products", products())
    return lines
