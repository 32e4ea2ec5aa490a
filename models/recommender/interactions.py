"""Interactions for the recommender, read from the profile store in one SQL query.

Sources: completed order lines (cancelled and returned lines excluded) weighted
as a ``purchase``, and events with an ``item_id`` whose ``event_type`` has a
weight. The person is the unified profile id from ``record_map`` (written by
identity resolution) when that table exists, else the shop's ``customer_id``.
Only items of the ``products`` catalog are kept when it is non-empty, so
non-product codes (postage, bank charges...) never become recommendations.
The SQL runs in the store's engine (DuckDB or PostgreSQL).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

import pandas as pd
from cip.profiles.errors import ConfigError

__all__ = ["DEFAULT_WEIGHTS", "interactions_from_store"]

log = logging.getLogger(__name__)

#: Default weight per interaction type (order lines count as ``purchase``).
DEFAULT_WEIGHTS: dict[str, float] = {"purchase": 5.0, "add_to_cart": 3.0, "product_view": 1.0}


def interactions_from_store(
    store: Any,
    weights: dict[str, float] | None = None,
    half_life_days: float | None = None,
    as_of: Any = None,
) -> pd.DataFrame:
    """Interactions ``user_id, item_id, weight, ts`` (one row per person, item and time).

    Order lines and ``purchase`` events both carry the ``purchase`` weight: a
    shop that records each purchase in both places counts it twice.

    Args:
        store: a :class:`profiles.store.Store`.
        weights: weight per event type; ``purchase`` also weights completed order
            lines. Types without a weight are ignored.
        half_life_days: optional exponential time decay: a weight halves every
            ``half_life_days`` before ``as_of`` (or before the latest interaction).
        as_of: only interactions strictly before this time are read.

    Returns:
        DataFrame with string ids, float ``weight`` and ``ts``, ordered by ``ts``.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"interaction weight of {name!r} must be a number >= 0, not {w!r}")
    if half_life_days is not None and not half_life_days > 0:
        raise ConfigError(f"half_life_days must be > 0, not {half_life_days!r}")
    tables = set(store.table_names())
    has_map = "record_map" in tables
    as_of_ts = None if as_of is None else pd.Timestamp(as_of).to_pydatetime()
    parts, params = [], []
    if "order_lines" in tables and weights.get("purchase", 0) > 0:
        sql, p = _lines_sql(has_map, weights["purchase"], as_of_ts)
        parts.append(sql)
        params += p
    event_weights = {k: float(v) for k, v in weights.items() if v > 0}
    if "events" in tables and event_weights:
        sql, p = _events_sql(has_map, event_weights, as_of_ts)
        parts.append(sql)
        params += p
    empty = pd.DataFrame(
        {
            "user_id": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "weight": pd.Series(dtype=float),
            "ts": pd.Series(dtype="datetime64[us]"),
        }
    )
    if not parts:
        return empty
    catalog = ""
    if "products" in tables and store.count("products") > 0:
        catalog = "AND item_id IN (SELECT item_id FROM products)"
    decay = "1.0"
    if half_life_days is not None:
        ref = "CAST(? AS TIMESTAMP)" if as_of_ts is not None else "(SELECT max(ts) FROM raw)"
        decay = (
            f"power(0.5, (CAST(EXTRACT(EPOCH FROM {ref}) AS DOUBLE PRECISION) "
            f"- CAST(EXTRACT(EPOCH FROM ts) AS DOUBLE PRECISION)) "
            f"/ {86400.0 * float(half_life_days)!r})"
        )
        if as_of_ts is not None:
            params.append(as_of_ts)
    query = (
        f"WITH raw AS ({' UNION ALL '.join(parts)}) "
        f"SELECT user_id, item_id, sum(w * {decay}) AS weight, ts FROM raw "
        f"WHERE user_id IS NOT NULL AND item_id IS NOT NULL {catalog} "
        f"GROUP BY user_id, item_id, ts ORDER BY ts, user_id, item_id"
    )
    df = store.sql(query, params)
    if df.empty:
        return empty
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df["weight"] = df["weight"].astype(float)
    df["ts"] = pd.to_datetime(df["ts"])
    log.info(
        "read %d interactions of %d people on %d items (record_map: %s)",
        len(df),
        df["user_id"].nunique(),
        df["item_id"].nunique(),
        has_map,
    )
    return df


def _lines_sql(has_map: bool, weight: float, as_of: datetime | None) -> tuple[str, list[Any]]:
    """Completed order lines; person via the orders view's record_id when mapped."""
    if has_map:
        person = "rm.unified_id"
        joins = (
            "JOIN orders o ON o.source = l.source AND o.order_id = l.order_id "
            "LEFT JOIN record_map rm ON rm.source_table = 'orders' AND rm.record_id = o.record_id"
        )
        status = "coalesce(l.status, o.status, 'completed')"
    else:
        person, joins, status = "l.customer_id", "", "coalesce(l.status, 'completed')"
    where = f"{status} = 'completed' AND l.item_id IS NOT NULL"
    params: list[Any] = [float(weight)]
    if as_of is not None:
        where += " AND l.ts < ?"
        params.append(as_of)
    sql = (
        f"SELECT CAST({person} AS VARCHAR) AS user_id, CAST(l.item_id AS VARCHAR) AS item_id, "
        f"l.ts AS ts, CAST(? AS DOUBLE PRECISION) AS w FROM order_lines l {joins} WHERE {where}"
    )
    return sql, params


def _events_sql(
    has_map: bool, weights: dict[str, float], as_of: datetime | None
) -> tuple[str, list[Any]]:
    """Events on an item whose type has a weight."""
    person = "rm.unified_id" if has_map else "e.customer_id"
    joins = (
        "LEFT JOIN record_map rm ON rm.source_table = 'events' AND rm.record_id = e.record_id"
        if has_map
        else ""
    )
    names = sorted(weights)
    case = " ".join("WHEN ? THEN CAST(? AS DOUBLE PRECISION)" for _ in names)
    params: list[Any] = [v for n in names for v in (n, weights[n])]
    params += names
    where = f"e.item_id IS NOT NULL AND e.event_type IN ({', '.join('?' for _ in names)})"
    if as_of is not None:
        where += " AND e.ts < ?"
        params.append(as_of)
    sql = (
        f"SELECT CAST({person} AS VARCHAR) AS user_id, CAST(e.item_id AS VARCHAR) AS item_id, "
        f"e.ts AS ts, CASE e.event_type {case} END AS w FROM events e {joins} WHERE {where}"
    )
    return sql, params
