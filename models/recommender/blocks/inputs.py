"""The blocks' inputs read from the profile store: order lines, item views and the catalogue.

Like :func:`models.recommender.interactions.interactions_from_store`: completed
order lines only (cancelled and returned lines excluded), the person is the
unified id from ``record_map`` when identity resolution ran (else the shop's
``customer_id``), only rows strictly before ``as_of`` are read, and non-product
codes (postage...) are dropped when the ``products`` table is non-empty. The
SQL runs in the store's engine (DuckDB or PostgreSQL).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

__all__ = ["block_inputs_from_store"]

log = logging.getLogger(__name__)


def _lines_sql(has_map: bool, catalog: bool, as_of: bool) -> str:
    if has_map:
        person = "rm.unified_id"
        joins = (
            "JOIN orders o ON o.source = l.source AND o.order_id = l.order_id "
            "LEFT JOIN record_map rm ON rm.source_table = 'orders' AND rm.record_id = o.record_id"
        )
        status = "coalesce(l.status, o.status, 'completed')"
    else:
        person, joins, status = "l.customer_id", "", "coalesce(l.status, 'completed')"
    where = f"{status} = 'completed' AND l.item_id IS NOT NULL AND {person} IS NOT NULL"
    if catalog:
        where += " AND l.item_id IN (SELECT item_id FROM products)"
    if as_of:
        where += " AND l.ts < ?"
    return (
        f"SELECT CAST({person} AS VARCHAR) AS user_id, "
        f"CAST(l.source AS VARCHAR) || ':' || CAST(l.order_id AS VARCHAR) AS order_id, "
        f"CAST(l.item_id AS VARCHAR) AS item_id, l.ts AS ts "
        f"FROM order_lines l {joins} WHERE {where} ORDER BY l.ts"
    )


def _views_sql(has_map: bool, catalog: bool, as_of: bool) -> str:
    person = "rm.unified_id" if has_map else "e.customer_id"
    joins = (
        "LEFT JOIN record_map rm ON rm.source_table = 'events' AND rm.record_id = e.record_id"
        if has_map
        else ""
    )
    where = f"e.event_type = 'product_view' AND e.item_id IS NOT NULL AND {person} IS NOT NULL"
    if catalog:
        where += " AND e.item_id IN (SELECT item_id FROM products)"
    if as_of:
        where += " AND e.ts < ?"
    return (
        f"SELECT CAST({person} AS VARCHAR) AS user_id, CAST(e.item_id AS VARCHAR) AS item_id, "
        f"e.ts AS ts FROM events e {joins} WHERE {where} ORDER BY e.ts"
    )


def block_inputs_from_store(
    store: Any, as_of: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """``(lines, products, views)`` for :func:`models.recommender.blocks.fit_blocks`.

    Args:
        store: a :class:`profiles.store.Store`.
        as_of: only lines and events strictly before this time are read.

    Returns:
        lines ``user_id, order_id, item_id, ts`` (``order_id`` prefixed with its
        source); the ``products`` table (``None`` when absent or empty); product
        views ``user_id, item_id, ts`` (``None`` without an ``events`` table).
    """
    tables = set(store.table_names())
    has_map = "record_map" in tables
    catalog = "products" in tables and store.count("products") > 0
    params = [] if as_of is None else [pd.Timestamp(as_of).to_pydatetime()]
    empty = pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ("user_id", "order_id", "item_id")}
        | {"ts": pd.Series(dtype="datetime64[us]")}
    )
    lines = (
        store.sql(_lines_sql(has_map, catalog, as_of is not None), params)
        if "order_lines" in tables
        else empty
    )
    views = None
    if "events" in tables:
        views = store.sql(_views_sql(has_map, catalog, as_of is not None), params)
    products = store.sql("SELECT * FROM products") if catalog else None
    log.info(
        "block inputs: %d order lines, %d views, %d products",
        len(lines),
        0 if views is None else len(views),
        0 if products is None else len(products),
    )
    return lines, products, views
