"""What the blocks are fitted from, cut at ``as_of``: purchases, baskets, views, catalogue.

Inputs (pandas DataFrames, ids of any type, read as strings):

* ``lines``: order lines ``user_id, item_id, ts[, order_id]`` (completed lines
  only; without ``order_id`` one person's lines at one ``ts`` form a basket);
* ``events`` (optional): ``user_id, item_id, ts[, event_type]`` item views for
  ``recently_viewed`` (``event_type`` other than ``product_view`` are ignored when given);
* ``products`` (optional): the catalogue (:mod:`.._catalog`).

Only rows strictly before ``as_of`` are used (point in time). Per (person, item)
the history keeps the number of distinct orders and the age of the last
purchase in days before ``as_of``, as CSR matrices sharing one structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender.blocks._catalog import Catalog, build_catalog
from cip.profiles.errors import DataError

__all__ = ["History", "build_history", "DAY"]

DAY = np.timedelta64(86_400_000_000, "us")


@dataclass(eq=False)
class History:
    """Fitted inputs of every block (treat as immutable).

    Attributes:
        as_of: the cut-off; nothing at or after it was read.
        catalog: the item side.
        users: person ids (str) by row.
        counts: persons x items, number of distinct orders holding the item.
        last_age: persons x items, days from the last purchase to ``as_of``
            (same sparsity structure as ``counts``).
        baskets: orders x items 0/1 matrix.
        basket_age: days from each order to ``as_of``.
        views: persons x items, days from the last view to ``as_of`` plus one
            (``None`` without events).
        purchases: one row per (order, item): ``u`` (person row), ``i`` (item
            position), ``age`` (days before ``as_of``).
    """

    as_of: pd.Timestamp
    catalog: Catalog
    users: pd.Index
    counts: sp.csr_matrix
    last_age: sp.csr_matrix
    baskets: sp.csr_matrix
    basket_age: np.ndarray
    views: sp.csr_matrix | None
    purchases: pd.DataFrame

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Person id -> row (the per-request fast path)."""
        return dict(zip(self.users.tolist(), range(len(self.users)), strict=True))

    def user_rows(self, user_ids: Any) -> np.ndarray:
        """Rows of ``user_ids`` (``-1`` for people without history)."""
        if isinstance(user_ids, list) and len(user_ids) <= 64:
            get = self.row_of.get
            return np.array([get(str(u), -1) for u in user_ids], dtype=np.int64)
        s = pd.Series(user_ids if not isinstance(user_ids, str) else [user_ids], dtype=object)
        return self.users.get_indexer(s.astype(str)).astype(np.int64)

    def purchased(self, row: int) -> np.ndarray:
        """Item positions the person at ``row`` bought (empty for ``-1``)."""
        if row < 0:
            return np.zeros(0, dtype=np.int64)
        return self.counts.indices[self.counts.indptr[row] : self.counts.indptr[row + 1]].astype(
            np.int64
        )


def _frame(df: pd.DataFrame, name: str, as_of: pd.Timestamp) -> pd.DataFrame:
    missing = [c for c in ("user_id", "item_id", "ts") if c not in df.columns]
    if missing:
        raise DataError(f"{name} lack the column(s) {', '.join(missing)}")
    ts = pd.to_datetime(df["ts"]).astype("datetime64[us]")
    keep = (ts < as_of) & df["user_id"].notna() & df["item_id"].notna()
    out = pd.DataFrame(
        {
            "user_id": df.loc[keep, "user_id"].astype(str).to_numpy(dtype=object),
            "item_id": df.loc[keep, "item_id"].astype(str).to_numpy(dtype=object),
            "ts": ts[keep].to_numpy(),
        }
    )
    if "order_id" in df.columns:
        out["order_id"] = df.loc[keep, "order_id"].astype(str).to_numpy(dtype=object)
    if "event_type" in df.columns:
        out["event_type"] = df.loc[keep, "event_type"].astype(str).to_numpy(dtype=object)
    return out


def build_history(
    lines: pd.DataFrame,
    products: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    as_of: Any = None,
) -> History:
    """Build the :class:`History` of ``lines`` / ``events`` before ``as_of`` (default: after the last line).

    Raises:
        DataError: missing columns, or no order line before ``as_of``.
    """
    if as_of is None:
        if "ts" not in lines.columns or lines.empty:
            raise DataError("order lines are empty (or lack 'ts'): nothing to fit the blocks on")
        as_of = pd.to_datetime(lines["ts"]).max() + pd.Timedelta(microseconds=1)
    as_of = pd.Timestamp(as_of).as_unit("us")
    ln = _frame(lines, "order lines", as_of)
    if ln.empty:
        raise DataError(f"no order line before as_of {as_of}: nothing to fit the blocks on")
    ev = None
    if events is not None and not events.empty:
        ev = _frame(events, "events", as_of)
        if "event_type" in ev.columns:
            ev = ev[ev["event_type"] == "product_view"]
    extra = pd.concat([ln["item_id"], ev["item_id"] if ev is not None else pd.Series(dtype=object)])
    catalog = build_catalog(products, extra.unique())
    users = pd.Index(
        pd.concat(
            [ln["user_id"], ev["user_id"] if ev is not None else pd.Series(dtype=object)]
        ).unique()
    )
    u = users.get_indexer(ln["user_id"])
    i = catalog.index.get_indexer(ln["item_id"])
    age = (as_of.to_datetime64() - ln["ts"].to_numpy()) / DAY
    basket_key = (
        ln["order_id"] if "order_id" in ln.columns else ln["user_id"] + "@" + ln["ts"].astype(str)
    )
    order, _ = pd.factorize(basket_key)
    # one row per (order, item): an item on two lines of one order counts once
    per_order = pd.DataFrame({"o": order, "u": u, "i": i, "age": age}).drop_duplicates(["o", "i"])
    baskets = sp.csr_matrix(
        (np.ones(len(per_order), np.float32), (per_order["o"], per_order["i"])),
        shape=(int(order.max()) + 1, catalog.size),
    )
    basket_age = per_order.groupby("o")["age"].min().to_numpy()
    pair = per_order.groupby(["u", "i"], sort=True).agg(n=("o", "size"), last=("age", "min"))
    pu = pair.index.get_level_values(0).to_numpy()
    pi = pair.index.get_level_values(1).to_numpy()
    shape = (len(users), catalog.size)
    counts = sp.csr_matrix((pair["n"].to_numpy(np.float64), (pu, pi)), shape=shape)
    last_age = sp.csr_matrix((pair["last"].to_numpy(np.float64) + 1e-9, (pu, pi)), shape=shape)
    views = None
    if ev is not None and not ev.empty:
        vu = users.get_indexer(ev["user_id"])
        vi = catalog.index.get_indexer(ev["item_id"])
        vage = (as_of.to_datetime64() - ev["ts"].to_numpy()) / DAY
        last = pd.DataFrame({"u": vu, "i": vi, "a": vage}).groupby(["u", "i"])["a"].min()
        views = sp.csr_matrix(
            (
                last.to_numpy() + 1.0,
                (last.index.get_level_values(0), last.index.get_level_values(1)),
            ),
            shape=shape,
        )
    return History(
        as_of,
        catalog,
        users,
        counts,
        last_age,
        baskets,
        basket_age,
        views,
        per_order[["u", "i", "age"]].reset_index(drop=True),
    )
