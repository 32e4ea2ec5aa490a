"""The identity graph's working state as integer arrays.

The graph, the guard and the id assignment only see integer arrays; the
batch's strings stay in its Arrow tables. An incremental run folds the batch
into the stored graph with sorted-key lookups and knows exactly which nodes and
edges changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from cip.profiles.identity._extract import Extract
from cip.profiles.identity._stored import TS_LOW, TS_NONE, Stored, codes, ints
from cip.profiles.identity.normalise import ID_TYPES

__all__ = ["State", "merge_state"]


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
    """One int64 per edge (node ids stay far below 2**31)."""
    return (a.astype(np.int64) << 32) | b.astype(np.int64)


def merge_state(old: Stored, batch: Extract, prob: pa.Table | None, *, full: bool) -> State:
    """Fold the batch (and probabilistic links) into the stored graph."""
    bn, be = batch.nodes, batch.edges
    b_id = ints(bn.column("node_id"), -1)
    b_rank = codes(bn.column("identifier_type"), pa.array(ID_TYPES))
    b_first, b_last = (
        ints(bn.column("first_seen"), TS_NONE),
        ints(bn.column("last_seen"), TS_LOW),
    )
    b_count = ints(bn.column("record_count"), 0)
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
        if len(node_id) > 1 and not np.all(np.diff(node_id) > 0):
            raise RuntimeError("identity_map node ids are not unique; run `cip unify --full`")
    # record edges: the stored ones plus the batch's
    ea, eb = ints(be.column("node_a"), -1), ints(be.column("node_b"), -1)
    e_first, e_last = (
        ints(be.column("first_seen"), TS_NONE),
        ints(be.column("last_seen"), TS_LOW),
    )
    e_count = ints(be.column("record_count"), 0)
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
        pa_, pb_ = ints(prob.column("node_a"), -1), ints(prob.column("node_b"), -1)
        p_status = codes(prob.column("prev_status"), pa.array(["active", "blocked", "cut"]))
        p_touched = np.asarray(prob.column("touched").to_numpy(zero_copy_only=False), bool)
        k = len(pa_)
        a_id, b_id2 = np.concatenate([a_id, pa_]), np.concatenate([b_id2, pb_])
        cnt = np.concatenate([cnt, ints(prob.column("record_count"), 1)])
        fst = np.concatenate([fst, np.full(k, TS_NONE)])
        lst = np.concatenate([lst, np.full(k, TS_LOW)])
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
