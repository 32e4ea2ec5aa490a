"""Write the resolved graph to the store atomically.

A full run replaces every identity table. An incremental run writes only what
changed: new ``identity_map`` / ``identity_links`` rows are inserted, changed
ones updated (``UPDATE ... FROM`` a staged table), new ``_identity_records``
appended, and the ``record_map`` / ``profiles`` rows of the records and
persons involved rebuilt (delete, then insert), all inside one transaction with
SQL that runs on DuckDB and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from cip.profiles.identity._extract import RECORDS, Extract
from cip.profiles.identity._graph import EDGE_STATUSES
from cip.profiles.identity._profiles import (
    affected_records_sql,
    prepare_dialect,
    profiles_sql,
    record_map_sql,
    replace_table_as,
)
from cip.profiles.identity._state import State
from cip.profiles.identity._stored import STATUSES, TS_LOW, TS_NONE
from cip.profiles.store import Store

__all__ = ["Resolved", "write_outputs", "links_table", "EDGE_STATUSES"]

_MAP_COLS = [
    "node_id",
    "identifier_type",
    "identifier_value",
    "unified_id",
    "birth_id",
    "status",
    "first_seen",
    "last_seen",
    "record_count",
]
_LINK_COLS = [
    "node_a",
    "node_b",
    "kind",
    "record_count",
    "first_seen",
    "last_seen",
    "evidence_table",
    "evidence_record_id",
    "evidence_pair_record_id",
    "match_probability",
    "status",
]


@dataclass
class Resolved:
    """Per node and per edge results of this run (aligned with :class:`State`)."""

    uid: np.ndarray  # code into uid_strings, -1 when blocked
    status: np.ndarray  # index into STATUSES
    edge_status: np.ndarray  # index into EDGE_STATUSES
    uid_strings: np.ndarray
    blocked: pa.Table
    history: pa.Table


def _ts(x: np.ndarray) -> pa.Array:
    return pa.array(x, pa.int64(), mask=(x == TS_NONE) | (x == TS_LOW)).cast(pa.timestamp("us"))


def _strs(values: np.ndarray, codes: np.ndarray) -> pa.Array:
    return pa.array(np.where(codes >= 0, values[np.maximum(codes, 0)], None), pa.string())


def map_table(st: State, res: Resolved, pos: np.ndarray, names: pa.Table | None) -> pa.Table:
    """``identity_map`` rows of node positions ``pos`` (``names`` aligned, or None: null)."""
    birth = np.where(st.birth[pos] >= 0, st.birth[pos], res.uid[pos])
    null = pa.nulls(len(pos), pa.string())
    return pa.table(
        {
            "node_id": pa.array(st.node_id[pos], pa.int64()),
            "identifier_type": names.column("identifier_type") if names else null,
            "identifier_value": names.column("identifier_value") if names else null,
            "unified_id": _strs(res.uid_strings, res.uid[pos]),
            "birth_id": _strs(res.uid_strings, birth),
            "status": _strs(np.asarray(STATUSES, dtype=object), res.status[pos]),
            "first_seen": _ts(st.first[pos]),
            "last_seen": _ts(st.last[pos]),
            "record_count": pa.array(st.count[pos], pa.int64()),
        }
    )


def links_table(
    st: State, res: Resolved, pos: np.ndarray, batch: Extract, prob: pa.Table | None
) -> pa.Table:
    """``identity_links`` rows of edge positions ``pos`` (evidence null when not in this batch)."""
    row, kind = st.edge_batch_row[pos], st.edge_kind[pos]
    ev = {
        c: pa.nulls(len(pos), pa.string())
        for c in ("evidence_table", "evidence_record_id", "evidence_pair_record_id")
    }
    for k, table in ((0, batch.edges), (1, prob)):
        sel = (kind == k) & (row >= 0)
        if table is None or not sel.any():
            continue
        idx = pa.array(np.where(sel, row, 0))
        for c in ev:
            if c in table.column_names:
                taken = table.column(c).cast(pa.string()).take(idx)
                ev[c] = pa.array(
                    np.where(
                        sel,
                        taken.to_numpy(zero_copy_only=False),
                        ev[c].to_numpy(zero_copy_only=False),
                    ),
                    pa.string(),
                )
    return pa.table(
        {
            "node_a": pa.array(st.node_id[st.edge_a[pos]], pa.int64()),
            "node_b": pa.array(st.node_id[st.edge_b[pos]], pa.int64()),
            "kind": _strs(np.array(["record", "probabilistic"], dtype=object), kind),
            "record_count": pa.array(st.edge_count[pos], pa.int64()),
            "first_seen": _ts(st.edge_first[pos]),
            "last_seen": _ts(st.edge_last[pos]),
            **ev,
            "match_probability": pa.array(st.edge_prob[pos], pa.float64()),
            "status": _strs(np.asarray(EDGE_STATUSES, dtype=object), res.edge_status[pos]),
        }
    )


def _append(store: Store, table: str, data: pa.Table) -> None:
    if not data.num_rows:
        return
    # the DuckDB store's append path expects a DataFrame
    frame = data.to_pandas(types_mapper=pd.ArrowDtype)
    store.load_arrow(table, frame, mode="append" if store.has_table(table) else "create")


def _update(store: Store, table: str, rows: pa.Table, key: list[str], sets: dict[str, str]) -> None:
    """``UPDATE table SET ... FROM`` the staged ``rows`` matched on ``key``."""
    if not rows.num_rows:
        return
    stage = f"_stage_{table}_rows"
    store.load_arrow(stage, rows, mode="replace")
    assign = ", ".join(f"{c} = {expr}" for c, expr in sets.items())
    match = " AND ".join(f"{table}.{k} = s.{k}" for k in key)
    store.execute(f"UPDATE {table} SET {assign} FROM {stage} s WHERE {match}")
    store.execute(f"DROP TABLE {stage}")


def write_outputs(
    store: Store,
    st: State,
    res: Resolved,
    batch: Extract,
    prob: pa.Table | None,
    *,
    full: bool,
    prob_replaced: bool,
    survivorship: dict,
    now: datetime,
) -> None:
    """Write everything in one transaction (a crash leaves the previous state intact)."""
    uid_changed = res.uid != st.prev
    node_changed = (
        st.touched
        | uid_changed
        | (res.status != st.prev_status)
        | ((st.birth < 0) & (res.uid >= 0))
    )
    edge_changed = st.edge_touched | (res.edge_status != st.edge_prev_status)
    with store.transaction():
        prepare_dialect(store)
        if full:
            store.load_arrow(RECORDS, batch.records, mode="replace")
            names = batch.nodes.select(["identifier_type", "identifier_value"])
            store.load_arrow(
                "identity_map",
                map_table(st, res, np.arange(len(st.node_id)), names),
                mode="replace",
            )
            store.load_arrow(
                "identity_links",
                links_table(st, res, np.arange(len(st.edge_a)), batch, prob),
                mode="replace",
            )
        else:
            _append(store, RECORDS, batch.records)
            new = np.flatnonzero(st.new)
            is_new = np.asarray(batch.nodes.column("is_new").to_numpy(zero_copy_only=False), bool)
            names = batch.nodes.filter(pa.array(is_new)).select(
                ["identifier_type", "identifier_value"]
            )
            _append(store, "identity_map", map_table(st, res, new, names))
            _update(
                store,
                "identity_map",
                map_table(st, res, np.flatnonzero(node_changed & ~st.new), None).drop_columns(
                    ["identifier_type", "identifier_value"]
                ),
                ["node_id"],
                {c: f"s.{c}" for c in _MAP_COLS[3:]},
            )
            if prob_replaced:
                store.execute("DELETE FROM identity_links WHERE kind = 'probabilistic'")
            _append(
                store,
                "identity_links",
                links_table(st, res, np.flatnonzero(st.edge_new), batch, prob),
            )
            sets = {c: f"s.{c}" for c in ("record_count", "first_seen", "last_seen", "status")}
            sets.update(
                {
                    c: f"COALESCE(s.{c}, identity_links.{c})"
                    for c in ("evidence_table", "evidence_record_id")
                }
            )
            _update(
                store,
                "identity_links",
                links_table(st, res, np.flatnonzero(edge_changed & ~st.edge_new), batch, prob),
                ["node_a", "node_b", "kind"],
                sets,
            )
        store.load_arrow("identity_blocked", res.blocked, mode="replace")
        _append(store, "identity_history", res.history)
        ts = str(now)
        if full or not store.has_table("profiles") or not store.has_table("record_map"):
            replace_table_as(store, "record_map", record_map_sql())
            replace_table_as(store, "profiles", profiles_sql(store.dialect, survivorship, now=ts))
            return
        # records to re-map: new ones, and those holding a node that changed person or status
        moved = np.flatnonzero(uid_changed | (res.status != st.prev_status))
        store.load_arrow(
            "_identity_changed",
            pa.table({"node_id": pa.array(st.node_id[moved], pa.int64())}),
            mode="replace",
        )
        replace_table_as(store, "_identity_affected", affected_records_sql("_identity_changed"))
        if batch.records.num_rows:
            store.load_arrow(
                "_identity_changed",
                batch.records.select(["source_table", "record_id"]),
                mode="replace",
            )
            store.execute(
                "INSERT INTO _identity_affected SELECT source_table, record_id "
                "FROM _identity_changed"
            )
        # persons to rebuild: those of touched or changed nodes, before and after
        pos = np.flatnonzero(node_changed)
        persons = np.unique(np.concatenate([st.prev[pos], res.uid[pos]]))
        persons = persons[persons >= 0]
        store.load_arrow(
            "_identity_persons",
            pa.table({"unified_id": pa.array(res.uid_strings[persons], pa.string())}),
            mode="replace",
        )
        store.execute(
            "DELETE FROM record_map WHERE EXISTS (SELECT 1 FROM _identity_affected a WHERE "
            "a.source_table = record_map.source_table AND a.record_id = record_map.record_id)"
        )
        store.execute(f"INSERT INTO record_map {record_map_sql('_identity_affected')}")
        store.execute(
            "DELETE FROM profiles WHERE unified_id IN (SELECT unified_id FROM _identity_persons)"
        )
        store.execute(
            "INSERT INTO profiles "
            + profiles_sql(store.dialect, survivorship, now=ts, restrict="_identity_persons")
        )
        for t in ("_identity_changed", "_identity_affected", "_identity_persons"):
            store.execute(f"DROP TABLE {t}")
