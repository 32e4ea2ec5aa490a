"""Access requests (GDPR art. 15): everything the store holds on a person, as one document.

:func:`export_person` resolves the request exactly as erasure does
(:mod:`profiles._person`: through the identity graph, so one identifier finds
all of the person's identifiers and records) and collects, read-only:

* ``profiles`` and ``identifiers`` (the identity map rows);
* ``records``: the person's source records in ``customers``, ``orders``,
  ``order_lines`` and ``events``;
* ``quarantine``: rejected rows holding one of their identifiers;
* ``features``, ``scores``, ``segments`` (members and changes),
  ``identity_history`` and ``other`` (any other table keyed by their ids).

The audit log gets one row with counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from cip.profiles._person import TEMP_TABLES, plan_persons
from cip.profiles._person_sql import base_tables, columns_of, drop, values_withheld
from cip.profiles.identity.options import IdentityOptions
from cip.profiles.privacy import audit
from cip.profiles.sql import quote_ident
from cip.profiles.store import Store

__all__ = ["export_person"]

_UIDS = "(SELECT unified_id FROM _er_uids)"
_HANDLED = {
    "profiles",
    "scores",
    "segment_members",
    "segment_changes",
    "identity_map",
    "identity_history",
    "record_map",
    "customers",
    "events",
    "order_lines",
    "_orders_src",
    "quarantine",
    "_identity_records",
}


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records (timestamps ISO 8601, NaN as null), converted column-wise."""
    if df.empty:
        return []
    return json.loads(df.to_json(orient="records", date_format="iso", default_handler=str))


def _by_uid(store: Store, table: str, order: str = "") -> list[dict[str, Any]]:
    if not store.has_table(table):
        return []
    return _rows(
        store.sql(f"SELECT * FROM {quote_ident(table)} WHERE unified_id IN {_UIDS}{order}")
    )


def export_person(
    store: Store,
    identifiers: Sequence[str] = (),
    unified_ids: Sequence[str] = (),
    *,
    options: IdentityOptions | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """The access-request document of the persons named by ``identifiers`` / ``unified_ids``.

    Raises:
        NotFoundError: an input is not known in the store.
        DataError: an identifier value is not valid for its type.
    """
    with values_withheld("the access request"), store.transaction():
        plan = plan_persons(store, identifiers, unified_ids, options=options)
        doc = _collect(store, plan.unified_ids, plan.former_ids)
        counts = {
            "persons": len(plan.unified_ids),
            "records": {k: len(v) for k, v in doc["records"].items()},
            "quarantine": len(doc["quarantine"]),
            "features": sum(len(v) for v in doc["features"].values()),
            "scores": len(doc["scores"]),
        }
        audit(store, "access", counts, actor=actor)
        drop(store, *TEMP_TABLES)  # on an error the rollback removes them
    return doc


def _collect(store: Store, persons: list[str], former: list[str]) -> dict[str, Any]:
    rec = "record_id IN (SELECT record_id FROM _er_rec WHERE source_table = '{}')"
    records: dict[str, list[dict[str, Any]]] = {}
    for t in ("customers", "events"):
        if store.has_table(t):
            records[t] = _rows(store.sql(f"SELECT * FROM {t} WHERE {rec.format(t)} ORDER BY ts"))
    if store.has_table("order_lines"):
        records["orders"] = _rows(
            store.sql(f"SELECT * FROM orders WHERE {rec.format('orders')} ORDER BY ts")
        )
        records["order_lines"] = _rows(
            store.sql(
                "SELECT l.* FROM order_lines l WHERE EXISTS (SELECT 1 FROM _er_orders o WHERE "
                "o.source = l.source AND o.order_id = l.order_id) ORDER BY l.ts, l.order_id"
            )
        )
    quarantine = (
        _rows(
            store.sql(
                "SELECT * FROM quarantine WHERE record_id IN (SELECT record_id FROM _er_quar) "
                "ORDER BY ingested_at, file, row_number"
            )
        )
        if store.has_table("quarantine")
        else []
    )
    identifiers = (
        _rows(
            store.sql(
                "SELECT identifier_type, identifier_value, unified_id, status, first_seen, "
                "last_seen, record_count FROM identity_map WHERE node_id IN "
                "(SELECT node_id FROM _er_nodes) ORDER BY identifier_type, identifier_value"
            )
        )
        if store.has_table("identity_map")
        else []
    )
    history = (
        _rows(
            store.sql(
                f"SELECT * FROM identity_history WHERE unified_id IN {_UIDS} OR other_id IN "
                f"{_UIDS} ORDER BY ts"
            )
        )
        if store.has_table("identity_history")
        else []
    )
    features: dict[str, list[dict[str, Any]]] = {}
    other: dict[str, list[dict[str, Any]]] = {}
    for t in base_tables(store):
        if t in _HANDLED or t.startswith("_") or "unified_id" not in columns_of(store, t):
            continue
        rows = _by_uid(store, t, " ORDER BY as_of" if "as_of" in columns_of(store, t) else "")
        if rows:
            (features if t.startswith("features_") else other)[t] = rows
    return {
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "persons": persons,
        "former_ids": former,
        "profiles": _by_uid(store, "profiles"),
        "identifiers": identifiers,
        "records": records,
        "quarantine": quarantine,
        "features": features,
        "scores": _by_uid(store, "scores", " ORDER BY as_of"),
        "segments": {
            "members": _by_uid(store, "segment_members", " ORDER BY as_of, segment"),
            "changes": _by_uid(store, "segment_changes", " ORDER BY as_of, segment"),
        },
        "identity_history": history,
        "other": other,
    }
