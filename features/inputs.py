"""The inputs of the feature definitions: canonical tables keyed by ``unified_id``.

:func:`load_inputs` is the ONE place that decides who a person is. When the
identity step has written ``record_map(source_table, record_id, unified_id)``
(rows for ``customers``, ``orders`` -- the view's record ids -- and ``events``),
orders and events are joined to it; otherwise a person is the shop
``customer_id`` and rows without one are dropped. Order lines take the person
of their order (joined on ``source, order_id``). Everything downstream only sees
``unified_id``.

Tables that are absent or empty are ``None`` in :class:`FeatureInputs`; the
feature groups that need them are then left out (their columns are absent, not
errors). That is decided here, once, so :func:`features.compute_features`
stays a pure function of its inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
from cip.profiles.errors import DataError
from cip.profiles.sql import quote_ident

__all__ = ["FeatureInputs", "load_inputs", "inputs_from_ibis", "restrict_persons", "RECORD_MAP"]

log = logging.getLogger(__name__)

#: Name of the identity step's record -> person table.
RECORD_MAP = "record_map"

_ORDER_COLS = ("unified_id", "source", "order_id", "ts", "amount", "status", "channel")
_LINE_COLS = ("unified_id", "order_id", "ts", "item_id", "quantity", "unit_price", "status")
_HAS_CATEGORY = "category IS NOT NULL AND item_id IS NOT NULL"
_EVENT_COLS = ("unified_id", "ts", "event_type", "session_id", "item_id", "rating")


@dataclass(frozen=True)
class FeatureInputs:
    """Ibis tables the feature definitions read (``None`` = absent or empty).

    Attributes:
        orders: ``unified_id, source, order_id, ts, amount, status, channel``;
            ``status`` defaults to ``completed`` and ``amount`` to 0.
        order_lines: ``unified_id, order_id, ts, item_id, quantity, unit_price, status``.
        events: ``unified_id, ts, event_type, session_id, item_id, rating``.
        products: ``item_id, category``, one row per item with a known category.
    """

    orders: Any
    order_lines: Any = None
    events: Any = None
    products: Any = None

    @property
    def has_events(self) -> bool:
        return self.events is not None

    @property
    def has_categories(self) -> bool:
        return self.products is not None and self.order_lines is not None


def load_inputs(store: Any) -> FeatureInputs:
    """Feature inputs over a :class:`profiles.store.Store` (DuckDB or PostgreSQL).

    Raises:
        DataError: when the store has no ``orders``.
    """

    def has_rows(table: str, where: str | None) -> bool:
        cond = f" WHERE {where}" if where else ""
        return len(store.sql(f"SELECT 1 AS one FROM {quote_ident(table)}{cond} LIMIT 1")) > 0

    return inputs_from_ibis(store.ibis(), tables=set(store.table_names()), has_rows=has_rows)


def inputs_from_ibis(
    con: Any,
    *,
    tables: set[str] | None = None,
    has_rows: Callable[[str, str | None], bool] | None = None,
) -> FeatureInputs:
    """Feature inputs over any Ibis backend holding the canonical tables.

    This is how the same definitions run on Spark: register ``orders``,
    ``order_lines``, ``events``, ``products`` (and optionally ``record_map``)
    as tables or temporary views and pass ``ibis.pyspark.connect(spark)``.

    Args:
        con: An Ibis backend.
        tables: Names of the tables that exist (default: ``con.list_tables()``).
        has_rows: ``has_rows(table, sql_condition)``: whether the table has a row
            (matching the condition); default: a ``LIMIT 1`` query through Ibis.
    """
    names = set(tables) if tables is not None else set(con.list_tables())
    if "orders" not in names:
        raise DataError("the store has no 'orders' table: ingest orders or order lines first")
    raw = {n: con.table(n) for n in ("orders", "order_lines", "events", "products") if n in names}
    has_rows = has_rows or _ibis_has_rows(raw)
    present = {n: t for n, t in raw.items() if n == "orders" or has_rows(n, None)}
    use_map = RECORD_MAP in names
    if use_map:
        rm = con.table(RECORD_MAP).select("source_table", "record_id", "unified_id")
        log.info("features: persons from %s", RECORD_MAP)
    else:
        rm = None
        log.info("features: no %s table, a person is the shop customer_id", RECORD_MAP)

    orders = _person(raw["orders"], "orders", rm)
    orders = orders.mutate(
        status=orders.status.fill_null("completed"),
        amount=orders.amount.fill_null(0.0).cast("float64"),
    ).select(*_ORDER_COLS)

    lines = None
    if "order_lines" in present:
        lt = present["order_lines"]
        if rm is None:
            lt = lt.filter(lt.customer_id.notnull()).mutate(unified_id=lt.customer_id)
        else:
            owner = orders.group_by("source", "order_id").aggregate(
                unified_id=orders.unified_id.max()
            )
            lt = lt.join(owner, ["source", "order_id"])
        lines = lt.mutate(status=lt.status.fill_null("completed")).select(*_LINE_COLS)

    events = None
    if "events" in present:
        events = _person(present["events"], "events", rm).select(*_EVENT_COLS)

    products = None
    if "products" in present and has_rows("products", _HAS_CATEGORY):
        p = present["products"]
        p = p.filter(p.category.notnull() & p.item_id.notnull())
        products = p.group_by("item_id").aggregate(category=p.category.max())
    return FeatureInputs(orders=orders, order_lines=lines, events=events, products=products)


def restrict_persons(inputs: FeatureInputs, keep: Callable[[Any], Any] | None) -> FeatureInputs:
    """``inputs`` with only the rows of persons for whom ``keep(unified_id)`` holds.

    ``keep`` maps an Ibis ``unified_id`` column to a boolean Ibis expression (e.g.
    a deterministic hash sample, :mod:`models.clv.sampling`); it is applied to the
    orders, order lines and events *before* anything is aggregated, so the engine
    computes features and labels only for those persons. Every feature is a
    function of the person's own rows, except the RFM quintile scores, which are
    then quintiles of the kept buyers (for a random sample, an estimate of the
    same cut points). ``keep=None`` returns ``inputs`` unchanged.
    """
    if keep is None:
        return inputs

    def only(t: Any) -> Any:
        return None if t is None else t.filter(keep(t.unified_id))

    return FeatureInputs(
        orders=only(inputs.orders),
        order_lines=only(inputs.order_lines),
        events=only(inputs.events),
        products=inputs.products,
    )


def _ibis_has_rows(raw: dict[str, Any]) -> Callable[[str, str | None], bool]:
    """``has_rows`` through Ibis (the only condition used is "has a category")."""

    def has_rows(table: str, where: str | None) -> bool:
        t = raw[table]
        if where:
            t = t.filter(t.category.notnull() & t.item_id.notnull())
        return len(t.select(ibis.literal(1).name("one")).limit(1).to_pyarrow()) > 0

    return has_rows


def _person(t: Any, table: str, rm: Any) -> Any:
    """Add ``unified_id`` to a raw table (record_map join, else customer_id)."""
    if rm is None:
        return t.filter(t.customer_id.notnull()).mutate(unified_id=t.customer_id)
    m = rm.filter(rm.source_table == table).select(
        record_id_m=rm.record_id, unified_id=rm.unified_id
    )
    return t.join(m, t.record_id == m.record_id_m).drop("record_id_m")
