"""The identity graph's working state as integer arrays.

Strings (identifier values, evidence record ids) stay in Arrow tables of the
batch or in the store; the graph, the guard and the id assignment only see
integer arrays. An incremental run loads the stored nodes and edges as
integers, folds the batch in with sorted-key lookups, and knows exactly which
rows changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from profiles.identity._extract import Extract
from profiles.identity._normalise import ID_TYPES
from profiles.store import Store

__all__ = [
    "STATUSES",
    "Stored",
    "State",
    "load_stored",
    "merge_state",
    "store_lookup",
    "node_strings",
]

STATUSES = ("linked", "blocked", "forbidden")
_TS_NONE = np.iinfo(np.int64).max
_TS_LOW = np.iinfo(np.int64).min


def _ints(col: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.int64())
    return np.asarray(pc.fill_null(col, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes(col: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    return _ints(pc.index_in(col, value_set=values), -1)


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
                f"{_epoch_us('m.first_seen', d, _TS_NONE)} AS first, "
                f"{_epoch_us('m.last_seen', d, _TS_LOW)} AS last, m.record_count AS count "
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
            f"record_count AS edge_count, {_epoch_us('first_seen', d, _TS_NONE)} AS edge_first, "
            f"{_epoch_us('last_seen', d, _TS_LOW)} AS edge_last, "
            f"CAST(COALESCE(match_probability, 1.0) AS DOUBLE PRECISION) AS prob, "
            f"{_case('status', ('active', 'blocked', 'cut'))} AS edge_status FROM identity_links"
        )
        if e.num_rows:
            edges = _np(e)
            edges["edge_prob"] = edges.pop("prob")
    return Stored(**nodes, uid_strings=np.asarray(uids, dtype=object), **edges)


def store_lookup(store: Store):
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


@dataclass
class State:
    """Nodes and edges of this run (positions = array indexes)."""

    node_id: np.ndarray
    rank: np.ndarray
    prev: np.ndarray
    birth: np.ndarray
    prev_status: np.ndarray
    first: np.ndarray
    last: np.ndarray
    count: np.ndarray
    touched: np.ndarray
    new: np.ndarray
    edge_a: np.ndarray  # positions
    edge_b: np.ndarray
    edge_kind: np.ndarray
    edge_count: np.ndarray
    edge_first: np.ndarray
    edge_last: np.ndarray
    edge_prob: np.ndarray
    edge_prev_status: np.ndarray
    edge_touched: np.ndarray
    edge_new: np.ndarray
    edge_batch_row: np.ndarray  # row of the batch edges / prob table holding its evidence, -1
    uid_strings: np.ndarray


def _key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.int64) << 32) | b.astype(np.int64)


def merge_state(old: Stored, batch: Extract, prob: pa.Table | None, *, full: bool) -> State:
    """Fold the batch (and probabilistic links) into the stored graph."""
    bn, be = batch.nodes, batch.edges
    b_id = _ints(bn.column("node_id"), -1)
    b_rank = _codes(bn.column("identifier_type"), pa.array(ID_TYPES))
    b_first, b_last = (
        _ints(bn.column("first_seen"), _TS_NONE),
        _ints(bn.column("last_seen"), _TS_LOW),
    )
    b_count = _ints(bn.column("record_count"), 0)
    b_new = np.asarray(bn.column("is_new").to_numpy(zero_copy_only=False), bool)
    n_old = len(old.node_id)
    if full:
        node_id, rank, first, last, count = b_id, b_rank, b_first, b_last, b_count
        at = np.searchsorted(old.node_id, node_id)
        found = (
            (at < n_old) & (old.node_id[np.minimum(at, max(n_old - 1, 0))] == node_id)
            if n_old
            else np.zeros(len(node_id), bool)
        )
        at = np.minimum(at, max(n_old - 1, 0))

        def carry(x: np.ndarray) -> np.ndarray:
            return np.where(found, x[at], -1) if n_old else np.full(len(node_id), -1, np.int64)

        prev, birth, prev_status = carry(old.uid), carry(old.birth), carry(old.status)
        touched, new = np.ones(len(node_id), bool), ~found
    else:
        at = np.searchsorted(old.node_id, b_id[~b_new])
        first, last, count = old.first.copy(), old.last.copy(), old.count.copy()
        np.minimum.at(first, at, b_first[~b_new])
        np.maximum.at(last, at, b_last[~b_new])
        np.add.at(count, at, b_count[~b_new])
        touched = np.zeros(n_old, bool)
        touched[at] = True
        k = int(b_new.sum())
        minus = np.full(k, -1, np.int64)
        node_id = np.concatenate([old.node_id, b_id[b_new]])
        rank = np.concatenate([old.rank, b_rank[b_new]])
        first = np.concatenate([first, b_first[b_new]])
        last = np.concatenate([last, b_last[b_new]])
        count = np.concatenate([count, b_count[b_new]])
        prev = np.concatenate([old.uid, minus])
        birth = np.concatenate([old.birth, minus])
        prev_status = np.concatenate([old.status, minus])
        touched = np.concatenate([touched, np.ones(k, bool)])
        new = np.concatenate([np.zeros(n_old, bool), np.ones(k, bool)])
        assert np.all(np.diff(node_id) > 0), "node ids must stay sorted"
    # record edges: the stored ones plus the batch's
    ea, eb = _ints(be.column("node_a"), -1), _ints(be.column("node_b"), -1)
    e_first, e_last = (
        _ints(be.column("first_seen"), _TS_NONE),
        _ints(be.column("last_seen"), _TS_LOW),
    )
    e_count = _ints(be.column("record_count"), 0)
    rows = np.arange(len(ea))
    rec = old.edge_kind == 0
    if full or not rec.any():
        cols = [
            ea,
            eb,
            e_count,
            e_first,
            e_last,
            np.full(len(ea), -1),
            np.ones(len(ea), bool),
            np.ones(len(ea), bool),
            rows,
        ]
    else:
        oa, ob = old.edge_a[rec], old.edge_b[rec]
        okey = _key(oa, ob)
        order = np.argsort(okey, kind="stable")
        skey = okey[order]
        bkey = _key(ea, eb)
        pos = np.searchsorted(skey, bkey)
        hit = (pos < len(skey)) & (skey[np.minimum(pos, len(skey) - 1)] == bkey)
        tgt = order[pos[hit]]
        cnt, fst, lst = (
            old.edge_count[rec].copy(),
            old.edge_first[rec].copy(),
            old.edge_last[rec].copy(),
        )
        ev = np.full(len(oa), -1, np.int64)
        newer = e_last[hit] >= lst[tgt]
        ev[tgt[newer]] = rows[hit][newer]
        cnt[tgt] += e_count[hit]
        fst[tgt] = np.minimum(fst[tgt], e_first[hit])
        lst[tgt] = np.maximum(lst[tgt], e_last[hit])
        tch = np.zeros(len(oa), bool)
        tch[tgt] = True
        m = ~hit
        cols = [
            np.concatenate(x)
            for x in (
                (oa, ea[m]),
                (ob, eb[m]),
                (cnt, e_count[m]),
                (fst, e_first[m]),
                (lst, e_last[m]),
                (old.edge_status[rec], np.full(m.sum(), -1)),
                (tch, np.ones(m.sum(), bool)),
                (np.zeros(len(oa), bool), np.ones(m.sum(), bool)),
                (ev, rows[m]),
            )
        ]
    a_id, b_id2, cnt, fst, lst, pst, tch, nw, evr = cols
    kind = np.zeros(len(a_id), np.int64)
    probab = np.ones(len(a_id))
    if prob is not None and prob.num_rows:
        pa_, pb_ = _ints(prob.column("node_a"), -1), _ints(prob.column("node_b"), -1)
        p_status = _codes(prob.column("prev_status"), pa.array(["active", "blocked", "cut"]))
        p_touched = np.asarray(prob.column("touched").to_numpy(zero_copy_only=False), bool)
        k = len(pa_)
        a_id, b_id2 = np.concatenate([a_id, pa_]), np.concatenate([b_id2, pb_])
        cnt = np.concatenate([cnt, _ints(prob.column("record_count"), 1)])
        fst = np.concatenate([fst, np.full(k, _TS_NONE)])
        lst = np.concatenate([lst, np.full(k, _TS_LOW)])
        pst = np.concatenate([pst, p_status])
        tch = np.concatenate([tch, p_touched])
        nw = np.concatenate([nw, p_touched])
        evr = np.concatenate([evr, np.where(p_touched, np.arange(k), -1)])
        kind = np.concatenate([kind, np.ones(k, np.int64)])
        probab = np.concatenate(
            [probab, np.asarray(prob.column("match_probability").to_numpy(), np.float64)]
        )
    # positions (edges to nodes that vanished are dropped)
    pa_pos, pb_pos = np.searchsorted(node_id, a_id), np.searchsorted(node_id, b_id2)
    ok = (pa_pos < len(node_id)) & (pb_pos < len(node_id))
    ok[ok] &= (node_id[pa_pos[ok]] == a_id[ok]) & (node_id[pb_pos[ok]] == b_id2[ok])
    return State(
        node_id=node_id,
        rank=rank,
        prev=prev,
        birth=birth,
        prev_status=prev_status,
        first=first,
        last=last,
        count=count,
        touched=touched,
        new=new,
        edge_a=pa_pos[ok],
        edge_b=pb_pos[ok],
        edge_kind=kind[ok],
        edge_count=cnt[ok],
        edge_first=fst[ok],
        edge_last=lst[ok],
        edge_prob=probab[ok],
        edge_prev_status=pst[ok],
        edge_touched=tch[ok],
        edge_new=nw[ok],
        edge_batch_row=evr[ok],
        uid_strings=old.uid_strings,
    )


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
