"""Versioned catalog: products as facts with ``valid_from`` / ``valid_to``, and their changes.

The canonical ``products`` table is a snapshot that ingest overwrites, so a
price drop or a restock cannot be seen in it. :func:`record_catalog` compares
a new snapshot with the open versions of ``product_history``
(:func:`diff_catalog`, pure), closes the versions that changed (``valid_to``
= the snapshot time), opens new ones and appends the derived changes to
``product_changes`` - all in one transaction, so recording the same snapshot
twice changes nothing.

Change kinds: ``new``, ``removed``, ``price_drop``, ``price_rise``,
``back_in_stock``, ``out_of_stock`` (an item can have two at once, e.g. back
in stock at a lower price). ``pct`` is the relative price change in percent
(positive for a drop).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from cip.activation._tables import to_timestamp
from cip.activation.triggers._tables import CHANGES, HISTORY, ensure_trigger_tables
from cip.profiles.errors import DataError
from cip.profiles.store import Store

__all__ = [
    "CATALOG_COLUMNS",
    "CHANGE_COLUMNS",
    "diff_catalog",
    "current_catalog",
    "record_catalog",
    "products_snapshot",
    "snapshot_catalog",
    "catalog_changes_since",
]

CATALOG_COLUMNS: tuple[str, ...] = ("item_id", "title", "category", "price", "in_stock")
CHANGE_COLUMNS: tuple[str, ...] = ("item_id", "ts", "kind", "old_price", "new_price", "pct")


def _normalise(df: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in ("item_id",) if c not in df.columns]
    if missing:
        raise DataError(f"{what}: missing column item_id")
    out = pd.DataFrame({"item_id": df["item_id"].astype("string")})
    for c in CATALOG_COLUMNS[1:]:
        out[c] = df[c] if c in df.columns else None
    out["price"] = pd.to_numeric(out["price"], errors="coerce").astype("float64")
    out["in_stock"] = out["in_stock"].astype("boolean")
    if out["item_id"].isna().any():
        raise DataError(f"{what}: item_id is missing in {int(out['item_id'].isna().sum())} row(s)")
    if out["item_id"].duplicated().any():
        dup = out.loc[out["item_id"].duplicated(), "item_id"].iloc[0]
        raise DataError(f"{what}: item_id {dup!r} appears more than once")
    return out.reset_index(drop=True)


def diff_catalog(
    previous: pd.DataFrame, current: pd.DataFrame, ts: dt.datetime | str
) -> pd.DataFrame:
    """The changes from ``previous`` to ``current`` (both one row per ``item_id``) at ``ts``.

    Returns a frame of :data:`CHANGE_COLUMNS`, sorted by item and kind. A null
    price or stock flag on either side is "unknown" and never makes a change.
    """
    at = to_timestamp(ts, what="ts")
    prev = _normalise(previous, "previous catalog")
    cur = _normalise(current, "current catalog")
    m = prev.merge(cur, on="item_id", how="outer", suffixes=("_old", "_new"), indicator=True)
    po, pn = m["price_old"], m["price_new"]
    so, sn = m["in_stock_old"], m["in_stock_new"]
    both = (m["_merge"] == "both").to_numpy()
    kinds = {
        "new": (m["_merge"] == "right_only").to_numpy(),
        "removed": (m["_merge"] == "left_only").to_numpy(),
        "price_drop": both & (pn < po).fillna(False).to_numpy(bool),
        "price_rise": both & (pn > po).fillna(False).to_numpy(bool),
        "back_in_stock": both & ((so == False) & (sn == True)).fillna(False).to_numpy(bool),  # noqa: E712
        "out_of_stock": both & ((so == True) & (sn == False)).fillna(False).to_numpy(bool),  # noqa: E712
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = ((po - pn) / po * 100.0).where(po > 0)
    parts = [
        pd.DataFrame(
            {
                "item_id": m.loc[mask, "item_id"].astype("string"),
                "ts": pd.Timestamp(at),
                "kind": kind,
                "old_price": po[mask].astype("float64"),
                "new_price": pn[mask].astype("float64"),
                "pct": pct[mask].astype("float64").round(4),
            }
        )
        for kind, mask in kinds.items()
        if mask.any()
    ]
    if not parts:
        return pd.DataFrame(
            {
                "item_id": pd.Series(dtype="string"),
                "ts": pd.Series(dtype="datetime64[us]"),
                "kind": pd.Series(dtype="string"),
                "old_price": pd.Series(dtype="float64"),
                "new_price": pd.Series(dtype="float64"),
                "pct": pd.Series(dtype="float64"),
            }
        )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["item_id", "kind"], ignore_index=True)


def current_catalog(store: Store) -> pd.DataFrame:
    """The open versions of ``product_history`` (one row per item)."""
    ensure_trigger_tables(store)
    cols = ", ".join(CATALOG_COLUMNS)
    return store.sql(f"SELECT {cols} FROM {HISTORY} WHERE valid_to IS NULL ORDER BY item_id")


def products_snapshot(store: Store) -> pd.DataFrame:
    """The latest record of each item in the canonical ``products`` table (the ingest snapshot)."""
    cols = ", ".join(CATALOG_COLUMNS)
    return store.sql(
        f"SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY item_id "
        "ORDER BY ingested_at DESC, record_id DESC) AS rn FROM products "
        "WHERE item_id IS NOT NULL) p WHERE rn = 1 ORDER BY item_id"
    )


def record_catalog(store: Store, snapshot: pd.DataFrame, ts: dt.datetime | str) -> pd.DataFrame:
    """Record a catalog snapshot taken at ``ts``; returns the changes it made (maybe none).

    Changed and removed items get ``valid_to = ts``; new and changed items a new
    open version from ``ts``. A snapshot older than the open versions is refused.
    """
    at = to_timestamp(ts, what="ts")
    ensure_trigger_tables(store)
    cur = _normalise(snapshot, "catalog snapshot")
    with store.transaction():
        last = store.sql(f"SELECT max(valid_from) AS t FROM {HISTORY}")["t"].iloc[0]
        if last is not None and not pd.isna(last) and pd.Timestamp(last) > pd.Timestamp(at):
            raise DataError(f"catalog snapshot at {at} is older than the history ({last})")
        prev = current_catalog(store)
        changes = diff_catalog(prev, cur, at)
        if changes.empty:
            return changes
        changed = set(changes["item_id"].astype(str))
        closing = sorted(changed & set(prev["item_id"].astype(str)))
        for i in range(0, len(closing), 500):
            chunk = closing[i : i + 500]
            ph = ", ".join("?" for _ in chunk)
            store.execute(
                f"UPDATE {HISTORY} SET valid_to = CAST(? AS TIMESTAMP) "
                f"WHERE valid_to IS NULL AND item_id IN ({ph})",
                [at, *chunk],
            )
        opened = cur[cur["item_id"].astype(str).isin(changed)].copy()
        opened["valid_from"] = pd.Timestamp(at)
        opened["valid_to"] = pd.Series(pd.NaT, index=opened.index, dtype="datetime64[us]")
        if len(opened):
            store.load_arrow(HISTORY, _plain(opened))
        store.load_arrow(CHANGES, _plain(changes))
    return changes


def snapshot_catalog(store: Store, ts: dt.datetime | str) -> pd.DataFrame:
    """Record the canonical ``products`` table as the catalog at ``ts`` (call after ingest);
    returns the changes."""
    return record_catalog(store, products_snapshot(store), ts)


def catalog_changes_since(store: Store, since: dt.datetime | str) -> pd.DataFrame:
    """The recorded changes with ``ts > since`` (feeding them to the engine again is safe:
    journey starts are idempotent)."""
    ensure_trigger_tables(store)
    cols = ", ".join(CHANGE_COLUMNS)
    return store.sql(
        f"SELECT {cols} FROM {CHANGES} WHERE ts > CAST(? AS TIMESTAMP) ORDER BY ts, item_id, kind",
        [to_timestamp(since, what="since")],
    )


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Numpy-backed columns (object strings, float prices) for the store's loaders."""
    out = df.copy()
    for c in out.columns:
        if str(out[c].dtype) in ("string", "str", "boolean"):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out
