"""Tables written by activation, and small SQL helpers shared by its modules.

All SQL here runs on DuckDB and PostgreSQL (the two store backends); the few
dialect differences (JSON lists) live in :func:`json_list`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from cip.profiles.contracts import Column, TableSchema
from cip.profiles.errors import DataError
from cip.profiles.store import Store

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


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


MEMBERS = TableSchema(
    "segment_members",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "Snapshot the membership was computed for."),
        _c("score", "DOUBLE", "The segment's score column for this member (may be null)."),
        _c("reasons", "VARCHAR", "JSON list of readable reasons."),
        _c("model_version", "VARCHAR", "Version of the models whose scores were used."),
    ),
    "Members of every segment per build (as_of).",
    key=("segment", "as_of", "unified_id"),
)
CHANGES = TableSchema(
    "segment_changes",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "The build in which the change was seen."),
        _c("change", "VARCHAR", "entered | exited."),
        _c("previous_as_of", "TIMESTAMP", "The build compared with (null: first build)."),
    ),
    "Entries and exits between a build and the previous build of the same segment.",
    key=("segment", "as_of", "unified_id"),
)
BUILDS = TableSchema(
    "segment_builds",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Snapshot."),
        _c("kind", "VARCHAR", "rfm | predictive | rule."),
        _c("purpose", "VARCHAR", "Consent purpose of exports (email | sms | push), or null."),
        _c("description", "VARCHAR", "The definition as one readable line."),
        _c("members", "BIGINT", "Members."),
        _c("entered", "BIGINT", "Members that entered since the previous build."),
        _c("exited", "BIGINT", "Members that left since the previous build."),
        _c("previous_as_of", "TIMESTAMP", "The previous build of this segment (null: first)."),
        _c("digest", "VARCHAR", "MD5 of the build's changes (part of webhook batch keys)."),
        _c("built_at", "TIMESTAMP", "When the build ran (UTC)."),
    ),
    "One row per segment per build.",
    key=("segment", "as_of"),
)
DELIVERIES = TableSchema(
    "webhook_deliveries",
    (
        _c("destination", "VARCHAR", "Webhook destination name."),
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Build whose changes the batch carries."),
        _c("digest", "VARCHAR", "Digest of that build's changes."),
        _c("batch_index", "BIGINT", "0-based batch number."),
        _c("idempotency_key", "VARCHAR", "Sent as the Idempotency-Key header."),
        _c("n_changes", "BIGINT", "Changes planned in the batch."),
        _c("status", "VARCHAR", "pending | delivered | failed | empty | superseded."),
        _c("attempts", "BIGINT", "HTTP attempts so far."),
        _c("http_status", "BIGINT", "Status code of the last attempt (null: no response)."),
        _c("error", "VARCHAR", "Last error (no personal data)."),
        _c("updated_at", "TIMESTAMP", "Last change of this row (UTC)."),
    ),
    "Delivery log of webhook batches; a re-run sends only batches not delivered.",
    key=("idempotency_key",),
)
BATCHES = TableSchema(
    "webhook_batches",
    (
        _c("destination", "VARCHAR", "Webhook destination name."),
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Build."),
        _c("digest", "VARCHAR", "Digest of the build's changes when planned."),
        _c("batch_index", "BIGINT", "Batch the change belongs to."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("change", "VARCHAR", "entered | exited."),
    ),
    "The frozen plan of webhook batches (which change goes in which batch).",
    key=("destination", "segment", "as_of", "unified_id"),
)


def ensure_tables(store: Store, schemas: Sequence[TableSchema] | None = None) -> None:
    """Create the activation tables that do not exist yet."""
    for sch in schemas or (MEMBERS, CHANGES, BUILDS, DELIVERIES, BATCHES):
        store.execute(sch.ddl(dialect=store.dialect))


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
