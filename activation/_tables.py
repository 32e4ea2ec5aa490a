"""Tables written by activation (schemas in ``profiles.tables``) and its small SQL helpers.

All SQL here runs on DuckDB and PostgreSQL (the two store backends); the few
dialect differences (JSON lists) live in :func:`json_list`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from cip.profiles.contracts import TableSchema
from cip.profiles.errors import DataError
from cip.profiles.store import Store
from cip.profiles.tables import (
    SEGMENT_BUILDS,
    SEGMENT_CHANGES,
    SEGMENT_MEMBERS,
    WEBHOOK_BATCHES,
    WEBHOOK_DELIVERIES,
)
from cip.profiles.tables import ensure_tables as _ensure

__all__ = [
    "MEMBERS",
    "CHANGES",
    "BUILDS",
    "DELIVERIES",
    "BATCHES",
    "ensure_tables",
    "to_timestamp",
    "not_erased",
    "json_list",
    "sql_type",
]


# The schemas live in the table registry (profiles.tables); the short names stay for activation.
MEMBERS = SEGMENT_MEMBERS
CHANGES = SEGMENT_CHANGES
BUILDS = SEGMENT_BUILDS
DELIVERIES = WEBHOOK_DELIVERIES
BATCHES = WEBHOOK_BATCHES


def ensure_tables(store: Store, schemas: Sequence[TableSchema] | None = None) -> None:
    """Create the activation tables that do not exist yet."""
    _ensure(store, *(schemas or (MEMBERS, CHANGES, BUILDS, DELIVERIES, BATCHES)))


def to_timestamp(
    value: str | dt.date | dt.datetime | pd.Timestamp, *, what: str = "as_of"
) -> dt.datetime:
    """A naive UTC ``datetime`` from a date, datetime or ISO text (a date = midnight UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"{what} {value!r} is not a date or timestamp") from None
    if pd.isna(ts):
        raise DataError(f"{what} is missing")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def not_erased(store: Store, uid_expr: str) -> str:
    """SQL predicate: the person ``uid_expr`` is not in the ``erased`` table (if it exists)."""
    if not store.has_table("erased"):
        return "TRUE"
    return f"NOT EXISTS (SELECT 1 FROM erased x_ WHERE x_.unified_id = {uid_expr})"


def json_list(dialect: str, items: Sequence[tuple[str, str | None]], extra: str | None) -> str:
    """SQL for a JSON text list of strings.

    ``items`` are ``(text_expr, guard)`` pairs (the text is included when the
    guard SQL is true, always when it is None); ``extra`` is an expression
    holding a JSON text list to append (a model's reasons), or None.
    """
    exprs = [e if g is None else f"CASE WHEN COALESCE({g}, FALSE) THEN {e} END" for e, g in items]
    if dialect == "postgres":
        arr = (
            f"array_to_json(array_remove(ARRAY[{', '.join(exprs)}]::text[], NULL))::jsonb"
            if exprs
            else "'[]'::jsonb"
        )
        if extra:
            arr = f"({arr} || COALESCE(({extra})::jsonb, '[]'::jsonb))"
        return f"({arr})::text"
    lst = (
        f"list_filter(list_value({', '.join(exprs)}), lambda x: x IS NOT NULL)"
        if exprs
        else "CAST([] AS VARCHAR[])"
    )
    if extra:
        lst = (
            f"list_concat({lst}, CASE WHEN json_valid({extra}) "
            f"THEN CAST(from_json({extra}, '[\"VARCHAR\"]') AS VARCHAR[]) "
            f"ELSE CAST([] AS VARCHAR[]) END)"
        )
    return f"CAST(to_json({lst}) AS VARCHAR)"


def sql_type(data_type: str, dialect: str) -> str:
    """The CAST target for a column of ``information_schema`` type ``data_type``."""
    t = data_type.upper()
    if any(k in t for k in ("INT", "DOUBLE", "REAL", "FLOAT", "DECIMAL", "NUMERIC", "HUGEINT")):
        return "DOUBLE PRECISION" if dialect == "postgres" else "DOUBLE"
    if "BOOL" in t:
        return "BOOLEAN"
    if "TIMESTAMP" in t:
        return "TIMESTAMP"
    if t == "DATE":
        return "DATE"
    return "TEXT" if dialect == "postgres" else "VARCHAR"
