"""The stored identity graph, read back as integer arrays, and lookups in the store.

Strings (identifier values, evidence record ids) stay in the store; an
incremental run reads the previous nodes and edges as integers (ids become
integer codes in id order, timestamps microseconds since the epoch) and looks
up only the values it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cip.profiles.identity._extract import Extract
from cip.profiles.identity.normalise import ID_TYPES
from cip.profiles.store import Store

__all__ = ["STATUSES", "Stored", "load_stored", "store_lookup", "node_strings", "ints", "codes"]

STATUSES = ("linked", "blocked", "forbidden")
TS_NONE = np.iinfo(np.int64).max
TS_LOW = np.iinfo(np.int64).min


def ints(col: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.int64())
    return np.asarray(pc.fill_null(col, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def codes(col: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    return ints(pc.index_in(col, value_set=values), -1)


@dataclass
class Stored:
    """The stored graph (previous run), as arrays sorted by node id / edge key."""

    node_id: np.ndarray
    rank: np.ndarray
    uid: np.ndarray  # code into uid_strings, -1 none
    birth: np.ndarray
    status: np.ndarray  # index into STATUSES, -1 none
    first: np.ndarray
    last: np.ndarray
    count: np.ndarray
    uid_strings: np.ndarray  # sorted object array
    edge_a: np.ndarray
    edge_b: np.ndarray
    edge_kind: np.ndarray  # 0 record, 1 probabilistic
    edge_count: np.ndarray
    edge_first: np.ndarray
    edge_last: np.ndarray
    edge_prob: np.ndarray
    edge_status: np.ndarray


def _epoch_us(col: str, dialect: str, fill: int) -> str:
    expr = (
        f"CAST(EXTRACT(EPOCH FROM {col}) * 1000000 AS BIGINT)"
        if dialect == "postgres"
        else f"epoch_us({col})"
    )
    return f"COALESCE({expr}, {fill})"


def _case(col: str, values: tuple[str, ...]) -> str:
    whens = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(values))
    return f"COALESCE(CASE {col} {whens} END, -1)"


def _np(tbl: pa.Table) -> dict[str, np.ndarray]:
    return {
        c: np.asarray(tbl.column(c).to_numpy(), dtype=np.float64 if c == "prob" else np.int64)
        for c in tbl.column_names
    }


def load_stored(store: Store, *, with_edges: bool) -> Stored:
    """Integer arrays of ``identity_map`` (and ``identity_links``) as stored.

    Ids become integer codes in id order (computed in the store's SQL engine);
    timestamps become microseconds since the epoch.
    """
    d = store.dialect
    z = np.zeros(0, np.int64)
    nodes = dict(node_id=z, rank=z, uid=z, birth=z, status=z, first=z, last=z, count=z)
    uids: list[str] = []
    if store.has_table("identity_map"):
        codes = (
            "SELECT uid, ROW_NUMBER() OVER (ORDER BY uid) - 1 AS code FROM (SELECT unified_id AS "
            "uid FROM identity_map WHERE unified_id IS NOT NULL UNION SELECT birth_id FROM "
            "identity_map WHERE birth_id IS NOT NULL) x"
        )
        store.execute("DROP TABLE IF EXISTS _stage_identity_codes")
        store.execute(f"CREATE TEMP TABLE _stage_identity_codes AS {codes}")
        try:
            m = store.arrow(
                f"SELECT m.node_id, {_case('m.identifier_type', ID_TYPES)} AS rank, "
                "COALESCE(p.code, -1) AS uid, COALESCE(b.code, -1) AS birth, "
                f"{_case('m.status', STATUSES)} AS status, "
                f"{_epoch_us('m.first_seen', d, TS_NONE)} AS first, "
                f"{_epoch_us('m.last_seen', d, TS_LOW)} AS last, m.record_count AS count "
                "FROM identity_map m LEFT JOIN _stage_identity_codes p ON p.uid = m.unified_id "
                "LEFT JOIN _stage_identity_codes b ON b.uid = m.birth_id"
            )
            uids = store.sql("SELECT uid FROM _stage_identity_codes ORDER BY code")["uid"].tolist()
        finally:
            store.execute("DROP TABLE IF EXISTS _stage_identity_codes")
        if m.num_rows:
            arr = _np(m)
            order = np.argsort(arr["node_id"], kind="stable")
            nodes = {k: v[order] for k, v in arr.items()}
    edges = dict(
        edge_a=z,
        edge_b=z,
        edge_kind=z,
        edge_count=z,
        edge_first=z,
        edge_last=z,
        edge_prob=np.zeros(0),
        edge_status=z,
    )
    if with_edges and store.has_table("identity_links"):
        e = store.arrow(
            f"SELECT node_a AS edge_a, node_b AS edge_b, "
            f"{_case('kind', ('record', 'probabilistic'))} AS edge_kind, "
            f"record_count AS edge_count, {_epoch_us('first_seen', d, TS_NONE)} AS edge_first, "
            f"{_epoch_us('last_seen', d, TS_LOW)} AS edge_last, "
            f"CAST(COALESCE(match_probability, 1.0) AS DOUBLE PRECISION) AS prob, "
            f"{_case('status', ('active', 'blocked', 'cut'))} AS edge_status FROM identity_links"
        )
        if e.num_rows:
            edges = _np(e)
            edges["edge_prob"] = edges.pop("prob")
    return Stored(**nodes, uid_strings=np.asarray(uids, dtype=object), **edges)


def store_lookup(store: Store) -> Callable[[pa.Table], pa.Table]:
    """A lookup of stored nodes by ``(identifier_type, identifier_value)``, joined in the store."""

    def lookup(values: pa.Table) -> pa.Table:
        empty = pa.table(
            {
                "node_id": pa.array([], pa.int64()),
                "identifier_type": pa.array([], pa.string()),
                "identifier_value": pa.array([], pa.string()),
            }
        )
        if values.num_rows == 0 or not store.has_table("identity_map"):
            return empty
        stage = "_stage_identity_values"
        store.load_arrow(
            stage, values.select(["identifier_type", "identifier_value"]), mode="replace"
        )
        try:
            got = store.arrow(
                f"SELECT m.node_id, m.identifier_type, m.identifier_value FROM {stage} s "
                "JOIN identity_map m ON m.identifier_type = s.identifier_type "
                "AND m.identifier_value = s.identifier_value"
            )
        finally:
            store.execute(f"DROP TABLE IF EXISTS {stage}")
        if got.num_rows == 0:
            return empty
        return pa.table(
            {
                "node_id": got.column("node_id").cast(pa.int64()),
                "identifier_type": got.column("identifier_type").cast(pa.string()),
                "identifier_value": got.column("identifier_value").cast(pa.string()),
            }
        )

    return lookup


def node_strings(store: Store, batch: Extract, node_ids: np.ndarray) -> pa.Table:
    """``node_id, identifier_type, identifier_value`` of a few nodes (batch first, then store)."""
    ids = pa.array(np.unique(node_ids).astype(np.int64))
    bn = batch.nodes.select(["node_id", "identifier_type", "identifier_value"])
    got = bn.filter(pc.is_in(bn.column("node_id"), value_set=ids))
    rest = pc.filter(
        ids, pc.invert(pc.is_in(ids, value_set=got.column("node_id").combine_chunks()))
    )
    if len(rest) and store.has_table("identity_map"):
        stage = "_stage_identity_ids"
        store.load_arrow(stage, pa.table({"node_id": rest}), mode="replace")
        try:
            more = store.arrow(
                "SELECT m.node_id, m.identifier_type, m.identifier_value FROM identity_map m "
                f"JOIN {stage} s ON s.node_id = m.node_id"
            )
        finally:
            store.execute(f"DROP TABLE IF EXISTS {stage}")
        more = pa.table(
            {
                "node_id": more.column("node_id").cast(pa.int64()),
                "identifier_type": more.column("identifier_type").cast(pa.string()),
                "identifier_value": more.column("identifier_value").cast(pa.string()),
            }
        )
        got = pa.concat_tables([got.cast(more.schema), more])
    return got
