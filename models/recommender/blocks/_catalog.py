"""The item side of the blocks: one position per item, with the product fields rules read.

Items are the union of the ``products`` table and every item seen in the order
lines and events (an item sold but missing from the catalogue can still be
recommended; rules that need a field treat a missing value as "does not match").
Ids are strings. Every field is an array aligned with :attr:`Catalog.ids`, so a
rule is one vectorised comparison over the catalogue.

Products columns read (all optional but ``item_id``): ``title``, ``category``,
``brand``, ``price``, ``in_stock``, ``description``, ``tags`` (a list, or a
string split on ``,``, ``|`` or ``;``) and any numeric column (``margin``,
``promotion``...) a boost may name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.profiles.errors import DataError

__all__ = ["Catalog", "build_catalog"]

_TEXT = ("title", "description")
#: Up to this many ids are looked up in a dict (a request) rather than with pandas (a batch).
_FEW = 64
_TAG_SPLIT = r"\s*[,|;]\s*"


@dataclass(eq=False)
class Catalog:
    """Item arrays aligned by position (treat as immutable).

    Attributes:
        ids: item ids (str), one per position.
        index: ``pd.Index`` of ``ids`` for look-ups.
        category: category code per item (``-1``: none); names in ``categories``.
        brand: brand code per item (``-1``: none); names in ``brands``.
        price: list price (``nan``: unknown).
        in_stock: whether the item can be bought now (unknown counts as in stock).
        tags: items x tags 0/1 matrix; names in ``tag_names``.
        in_products: whether the item is in the products table.
        fields: numeric product columns by name (for boosts).
        text: title and description joined (for content similarity).
    """

    ids: np.ndarray
    index: pd.Index
    category: np.ndarray
    categories: np.ndarray
    brand: np.ndarray
    brands: np.ndarray
    price: np.ndarray
    in_stock: np.ndarray
    tags: sp.csr_matrix
    tag_names: np.ndarray
    in_products: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    text: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @property
    def size(self) -> int:
        return len(self.ids)

    @cached_property
    def category_matrix(self) -> sp.csr_matrix:
        """Items x categories 0/1 matrix (items without a category have an empty row)."""
        ok = self.category >= 0
        return sp.csr_matrix(
            (np.ones(int(ok.sum())), (np.flatnonzero(ok), self.category[ok])),
            shape=(self.size, max(1, len(self.categories))),
        )

    @cached_property
    def position_of(self) -> dict[str, int]:
        """Item id -> position (the per-request fast path)."""
        return dict(zip(self.ids.tolist(), range(self.size), strict=True))

    def positions(self, item_ids: Any) -> np.ndarray:
        """Positions of ``item_ids`` (``-1`` for ids not in the catalogue)."""
        if isinstance(item_ids, list) and len(item_ids) <= _FEW:
            get = self.position_of.get
            return np.array([get(str(i), -1) for i in item_ids], dtype=np.int64)
        values = pd.Series(item_ids if not isinstance(item_ids, str) else [item_ids])
        if values.empty:
            return np.zeros(0, dtype=np.int64)
        return self.index.get_indexer(values.astype(str)).astype(np.int64)

    def codes(self, kind: str, names: Any, keep_unknown: bool = False) -> np.ndarray:
        """Codes of category / brand / tag ``names`` (unknown names: dropped, or -1 if kept)."""
        table = {"category": self.categories, "brand": self.brands, "tag": self.tag_names}[kind]
        lookup = {str(v): i for i, v in enumerate(table)}  # a few hundred names at most
        idx = np.array([lookup.get(str(v), -1) for v in names], dtype=np.int64)
        return idx if keep_unknown else idx[idx >= 0]

    def has_any_tag(self, codes: np.ndarray) -> np.ndarray:
        """Mask of items carrying at least one of the tag ``codes``."""
        if len(codes) == 0:
            return np.zeros(self.size, dtype=bool)
        return np.asarray(self.tags[:, codes].sum(axis=1)).ravel() > 0


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    clean = values.astype("string").str.strip()
    clean = clean.where(clean != "")
    codes, uniques = pd.factorize(clean, use_na_sentinel=True)
    return codes.astype(np.int32), np.asarray(uniques, dtype=object)


def _tag_matrix(tags: pd.Series) -> tuple[sp.csr_matrix, np.ndarray]:
    n = len(tags)
    s = pd.Series(tags.to_numpy(dtype=object), dtype=object)
    split = s.str.split(_TAG_SPLIT, regex=True)  # strings; lists and arrays give NaN here
    exploded = split.where(split.notna(), s).explode()
    exploded = exploded[exploded.notna()].astype(str).str.strip()
    exploded = exploded[exploded != ""]
    codes, names = pd.factorize(exploded)
    rows = exploded.index.to_numpy(dtype=np.int64)
    m = sp.csr_matrix(
        (np.ones(len(codes), np.float32), (rows, codes)), shape=(n, len(names)), dtype=np.float32
    )
    m.data[:] = 1.0  # duplicates summed by the constructor count once
    return m, np.asarray(names, dtype=object)


def build_catalog(products: pd.DataFrame | None, extra_items: Any = ()) -> Catalog:
    """The catalogue of ``products`` plus any ``extra_items`` (ids seen in lines or events).

    Raises:
        DataError: ``products`` lacks ``item_id`` or has null ids.
    """
    if products is None:
        products = pd.DataFrame({"item_id": pd.Series(dtype=str)})
    if "item_id" not in products.columns:
        raise DataError("products lack the column 'item_id'")
    if products["item_id"].isna().any():
        raise DataError(
            f"products column 'item_id' has {int(products['item_id'].isna().sum())} null(s)"
        )
    prod = products.assign(item_id=products["item_id"].astype(str))
    prod = prod.drop_duplicates("item_id", keep="last").reset_index(drop=True)
    extra = pd.Index(pd.Series(list(extra_items), dtype=object).astype(str).unique())
    extra = extra[~extra.isin(prod["item_id"])]
    in_products = np.concatenate([np.ones(len(prod), bool), np.zeros(len(extra), bool)])
    prod = pd.concat([prod, pd.DataFrame({"item_id": extra.to_numpy()})], ignore_index=True)

    def col(name: str) -> pd.Series:
        return prod[name] if name in prod.columns else pd.Series([None] * len(prod), dtype=object)

    category, categories = _codes(col("category"))
    brand, brands = _codes(col("brand"))
    price = pd.to_numeric(col("price"), errors="coerce").to_numpy(dtype=np.float64)
    stock = col("in_stock").astype(object).where(col("in_stock").notna(), True).astype(bool)
    tags, tag_names = _tag_matrix(col("tags"))
    skip = {"item_id", "price", "in_stock", "category", "brand", "tags", *_TEXT}
    fields = {
        c: pd.to_numeric(prod[c], errors="coerce").to_numpy(dtype=np.float64)
        for c in prod.columns
        if c not in skip and pd.api.types.is_numeric_dtype(prod[c])
    }
    text = col("title").fillna("").astype(str) + " " + col("description").fillna("").astype(str)
    ids = prod["item_id"].to_numpy(dtype=object)
    return Catalog(
        ids=ids,
        index=pd.Index(ids),
        category=category,
        categories=categories,
        brand=brand,
        brands=brands,
        price=price,
        in_stock=stock.to_numpy(dtype=bool),
        tags=tags,
        tag_names=tag_names,
        in_products=in_products,
        fields=fields,
        text=text.str.strip().to_numpy(dtype=object),
    )
