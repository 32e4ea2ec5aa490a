"""Catalog changes of the simulated shop: price drops and restocks after the history ends.

:func:`catalog_update` reads the simulated ``products.csv`` and writes a newer
export of the same shape (``catalog_update.csv``) in which a share of the items
is cheaper (by 15-35 %) and the items out of stock are back; ingesting it as a
second ``products`` source makes the versioned catalog (``product_history``)
record price drops and restocks, which the catalog triggers turn into messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["catalog_update", "update_declaration", "UPDATE_SOURCE"]

UPDATE_SOURCE = "catalog_update"


def catalog_update(
    products_csv: Path, out_csv: Path, *, seed: int = 0, drop_share: float = 0.1
) -> dict[str, int]:
    """Write the updated catalog; returns how many items got cheaper and how many restocked."""
    rng = np.random.default_rng(seed + 7919)
    cat = pd.read_csv(products_csv, dtype=str, keep_default_na=False)
    price = pd.to_numeric(cat["price_gbp"], errors="coerce")
    drop = (rng.random(len(cat)) < drop_share) & price.notna().to_numpy()
    cut = 1.0 - rng.uniform(0.15, 0.35, len(cat))
    new = price.where(~drop, (price * cut).round(2))
    cat["price_gbp"] = [
        c if not d else f"{p:.2f}" for c, d, p in zip(cat["price_gbp"], drop, new, strict=True)
    ]
    out_of_stock = cat["stock_status"].str.lower() != "in stock"
    cat.loc[out_of_stock, "stock_status"] = "in stock"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_suffix(".tmp")
    cat.to_csv(tmp, index=False)
    tmp.replace(out_csv)
    return {"price_drops": int(drop.sum()), "restocks": int(out_of_stock.sum())}


def update_declaration(products_decl: dict[str, Any], path: str) -> dict[str, Any]:
    """The ``cip.yaml`` source of the update: the products source's columns, another file."""
    return {**products_decl, "name": UPDATE_SOURCE, "path": path}
