"""``unify``: identity resolution for the store, full or incremental.

Reads ``customers``, ``orders`` (the view) and ``events``; writes, in one
transaction, ``identity_map`` (identifier -> person), ``identity_links``
(evidence edges), ``identity_blocked`` (over-merge guard report),
``identity_history`` (merges, splits; appended), ``record_map`` (record ->
person), ``profiles`` and the internal ``_identity_records``.

Incremental runs read and normalise only records not yet in
``_identity_records``; the graph (integer arrays of identifiers and edges, far
smaller than the records) is then resolved as a whole, so guard decisions,
merges and splits are those a full run would make, and only changed rows are
written. A full run happens on the first run, when normalisation options
changed, or when records were deleted (e.g. by an erasure).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from cip.profiles.identity._extract import RECORDS, Extract, extract, local_db, read_raw
from cip.profiles.identity._graph import resolve_graph
from cip.profiles.identity._ids import assign_ids, history_codes, new_ids
from cip.profiles.identity._links import forbidden_rules, fuzzy_edges
from cip.profiles.identity._state import State, merge_state
from cip.profiles.identity._stored import load_stored, node_strings, store_lookup
from cip.profiles.identity._write import Resolved, links_table, write_outputs
from cip.profiles.identity.normalise import ID_TYPES
from cip.profiles.identity.options import IdentityOptions
from cip.profiles.store import Store

__all__ = ["UnifyResult", "unify"]

log = logging.getLogger(__name__)

#: Bump when the layout of the identity tables changes (forces a full run).
LAYOUT = "1"


@dataclass
class UnifyResult:
    """Counts of one ``unify`` run (no PII)."""

    run_id: str
    mode: str  # "full" | "incremental"
    records_new: int
    persons: int
    identifiers: int
    merges: int
    splits: int
    blocked: int
    probabilistic_links: int
    invalid: dict[str, int] = field(default_factory=dict)
    records_mapped: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def as_dict(self) -> dict:
        """The ``--json`` output of ``cip unify`` (same as :meth:`to_dict`)."""
        return asdict(self)


def _meta(store: Store) -> dict[str, str]:
    if not store.has_table("_identity_meta"):
        return {}
    df = store.sql("SELECT key, value FROM _identity_meta")
    return dict(zip(df["key"], df["value"], strict=True))


def _raw_count(store: Store) -> int:
    q = " + ".join(f"(SELECT count(*) FROM {t})" for t in ("customers", "orders", "events"))
    return int(store.sql(f"SELECT {q} AS n")["n"].iloc[0])


def _lookup_with_batch(store: Store, batch: Extract) -> Callable[[pa.Table], pa.Table]:
    stored = store_lookup(store)

    def lookup(values: pa.Table) -> pa.Table:
        bn = batch.nodes.select(["node_id", "identifier_type", "identifier_value"])
        keys = pc.binary_join_element_wise(
            values.column("identifier_type"), values.column("identifier_value"), "\x1f"
        )
        bkeys = pc.binary_join_element_wise(
            bn.column("identifier_type"), bn.column("identifier_value"), "\x1f"
        )
        return pa.concat_tables(
            [bn.filter(pc.is_in(bkeys, value_set=keys.combine_chunks())), stored(values)]
        )

    return lookup


def unify(
    store: Store,
    options: IdentityOptions | None = None,
    *,
    incremental: bool = True,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> UnifyResult:
    """Resolve identities in ``store`` and update ``record_map`` and ``profiles``.

    Parameters
    ----------
    store : an open :class:`profiles.store.Store` (DuckDB or PostgreSQL).
    options : normalisation, guard limits, forbidden links, survivorship and
        probabilistic matching (defaults: :class:`IdentityOptions`).
    incremental : process only records not seen by an earlier run (falls back
        to a full run when that cannot be trusted); False forces a full run.
    now : the run's timestamp (UTC, naive), for history and ``updated_at``.
    progress : called with a short stage name as the run advances.
    **overrides : option fields to change, e.g. ``max_persons_per_identifier={...}``.

    Examples
    --------
    >>> from profiles.store import open_store
    >>> with open_store("duckdb") as store:
    ...     unify(store, default_region="US").persons
    0
    """
    opts = options or IdentityOptions()
    if overrides:
        opts = IdentityOptions.from_mapping({**asdict(opts), **overrides})
    t0 = time.perf_counter()
    now = now or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    run_id = f"unify-{now:%Y%m%dT%H%M%S}-{uuid4().hex[:6]}"
    step = progress or (lambda _msg: None)
    meta = _meta(store)
    salt = meta.get("salt") or opts.id_salt or secrets.token_hex(16)
    fingerprint = f"{LAYOUT}:{opts.normaliser_fingerprint()}"
    have_state = all(store.has_table(t) for t in ("identity_map", "identity_links", RECORDS))
    full = not (incremental and have_state and meta.get("normaliser") == fingerprint)
    step("reading records")
    raw = read_raw(store, only_new=not full)
    if not full and store.count(RECORDS) + raw.num_rows != _raw_count(store):
        log.info("records were deleted since the last run: running a full unify")
        full = True
        raw = read_raw(store, only_new=False)
    old = load_stored(store, with_edges=not full)
    next_id = int(old.node_id.max(initial=0)) + 1
    with local_db(opts.memory_limit) as con:
        step("normalising identifiers")
        batch = extract(con, raw, opts, store_lookup(store), next_id)
    del raw
    step("probabilistic matching")
    prob, prob_replaced = fuzzy_edges(store, opts, batch, full=full)
    st = merge_state(old, batch, prob, full=full)
    del old
    step("resolving the identity graph")
    manual, pairs = forbidden_rules(store, opts, st.node_id, _lookup_with_batch(store, batch))
    graph = resolve_graph(
        st.rank,
        st.edge_a,
        st.edge_b,
        record_edge=st.edge_kind == 0,
        weight=st.edge_count,
        limits=opts.limits(),
        manual_blocked=manual,
        forbidden_pairs=pairs,
    )
    step("assigning stable ids")
    label = graph.labels
    n_codes = len(st.uid_strings)
    code_of = assign_ids(label, st.prev, st.birth, st.first, n_codes)
    need = np.flatnonzero(code_of < 0)
    fresh = _fresh_ids(store, batch, st, label, need, salt)
    code_of[fresh["label"].to_numpy(np.int64)] = n_codes + np.arange(len(fresh))
    uid_strings = np.concatenate([st.uid_strings, fresh["unified_id"].to_numpy(dtype=object)])
    uid = np.where(label >= 0, code_of[np.maximum(label, 0)], -1)
    status = np.where(label >= 0, 0, 1)
    status[graph.blocked.loc[graph.blocked["reason"] == "forbidden", "node"].to_numpy(np.int64)] = 2
    edge_status = graph.edge_status.astype(np.int64)
    hist = history_codes(
        st.prev,
        uid,
        st.edge_a,
        st.edge_b,
        edge_status == 0,
        edge_status == 2,
        st.edge_last,
        graph.blocked["node"].to_numpy(np.int64),
        graph.blocked["reason"].to_numpy(object),
        len(uid_strings),
    )
    res = Resolved(
        uid=uid,
        status=status,
        edge_status=edge_status,
        uid_strings=uid_strings,
        blocked=pa.table({}),
        history=pa.table({}),
    )
    res.blocked = _blocked_table(store, batch, st, graph.blocked, res, run_id)
    res.history = _history_table(store, batch, prob, st, res, hist, run_id, now)
    step("writing identity tables, record_map and profiles")
    kinds = hist["kind"].value_counts()
    with store.transaction():
        write_outputs(
            store,
            st,
            res,
            batch,
            prob,
            full=full,
            prob_replaced=prob_replaced,
            survivorship={k: tuple(v) for k, v in opts.survivorship.items()},
            now=now,
        )
        result = UnifyResult(
            run_id=run_id,
            mode="full" if full else "incremental",
            records_new=batch.records.num_rows,
            persons=int(np.unique(uid[uid >= 0]).size),
            identifiers=int(np.count_nonzero(label >= 0)),
            merges=int(kinds.get("merge", 0)),
            splits=int(kinds.get("split", 0)),
            blocked=res.blocked.num_rows,
            probabilistic_links=int(np.count_nonzero((st.edge_kind == 1) & (edge_status == 0))),
            invalid=batch.invalid,
            records_mapped=store.count("record_map"),
        )
        result.seconds = round(time.perf_counter() - t0, 3)
        meta.update(salt=salt, normaliser=fingerprint, last_run=run_id)
        store.load_arrow(
            "_identity_meta",
            pd.DataFrame({"key": list(meta), "value": [str(v) for v in meta.values()]}),
            mode="replace",
        )
        row = {k: v for k, v in result.to_dict().items() if k != "invalid"}
        row.update({f"invalid_{t}": int(result.invalid.get(t, 0)) for t in ID_TYPES})
        # the wall-clock end with microseconds (``now`` is whole seconds and may be
        # given by the caller): two runs within one second still order correctly
        row["finished_at"] = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
        store.load_arrow(
            "_identity_runs",
            pd.DataFrame([row]),
            mode="append" if store.has_table("_identity_runs") else "create",
        )
    log.info(
        "unify %s (%s): %d new records, %d persons, %d merges, %d splits, %d blocked, %.1fs",
        run_id,
        result.mode,
        result.records_new,
        result.persons,
        result.merges,
        result.splits,
        result.blocked,
        result.seconds,
    )
    return result


def _fresh_ids(
    store: Store, batch: Extract, st: State, label: np.ndarray, need: np.ndarray, salt: str
) -> pd.DataFrame:
    """New ids for components ``need`` (seeded by each one's most trusted identifier)."""
    if not len(need):
        return pd.DataFrame({"label": np.zeros(0, np.int64), "unified_id": []})
    pos = np.flatnonzero(np.isin(label, need))
    names = node_strings(store, batch, st.node_id[pos]).to_pandas()
    seeds = pd.DataFrame({"node_id": st.node_id[pos], "label": label[pos], "rank": st.rank[pos]})
    seeds = seeds.merge(names, on="node_id")
    return new_ids(seeds, salt, st.uid_strings)


def _blocked_table(
    store: Store, batch: Extract, st: State, blocked: pd.DataFrame, res: Resolved, run_id: str
) -> pa.Table:
    pos = blocked["node"].to_numpy(np.int64)
    names = node_strings(store, batch, st.node_id[pos]).to_pandas()
    uid = res.uid
    sample = [
        ",".join(sorted({str(res.uid_strings[uid[i]]) for i in reps if uid[i] >= 0}))
        for reps in blocked["touched"]
    ]
    df = pd.DataFrame(
        {
            "node_id": st.node_id[pos],
            "reason": blocked["reason"].to_numpy(object),
            "persons": blocked["persons"].to_numpy(np.int64),
            "max_persons": blocked["limit"].to_numpy(np.int64),
            "record_count": st.count[pos],
            "unified_ids": sample,
            "run_id": run_id,
        }
    ).merge(names, on="node_id", how="left")
    cols = [
        "identifier_type",
        "identifier_value",
        "node_id",
        "reason",
        "persons",
        "max_persons",
        "record_count",
        "unified_ids",
        "run_id",
    ]
    df = df.sort_values(["persons", "node_id"], ascending=[False, True])[cols]
    return pa.Table.from_pandas(
        df.astype({c: "string" for c in cols[:2] + ["reason", "unified_ids", "run_id"]}),
        preserve_index=False,
    )


def _history_table(
    store: Store,
    batch: Extract,
    prob: pa.Table | None,
    st: State,
    res: Resolved,
    hist: pd.DataFrame,
    run_id: str,
    now: datetime,
) -> pa.Table:
    h = hist.reset_index(drop=True)
    names = node_strings(store, batch, st.node_id[h.loc[h["node"] >= 0, "node"]]).to_pandas()
    h["node_id"] = np.where(h["node"] >= 0, st.node_id[np.maximum(h["node"], 0)], -1)
    h = h.merge(names, on="node_id", how="left")
    ev = _edge_evidence(store, batch, prob, st, res, h["edge"].to_numpy(np.int64))
    us = res.uid_strings
    out = pd.DataFrame(
        {
            "run_id": run_id,
            "ts": pd.Timestamp(now),
            "kind": h["kind"],
            "unified_id": np.where(h["u"] >= 0, us[np.maximum(h["u"], 0)], None),
            "other_id": np.where(h["w"] >= 0, us[np.maximum(h["w"], 0)], None),
            "identifier_type": h["identifier_type"],
            "identifier_value": h["identifier_value"],
            "evidence_table": ev["evidence_table"],
            "evidence_record_id": ev["evidence_record_id"],
            "reason": h["reason"],
        }
    )
    str_cols = [c for c in out.columns if c != "ts"]
    return pa.Table.from_pandas(out.astype({c: "string" for c in str_cols}), preserve_index=False)


def _edge_evidence(
    store: Store,
    batch: Extract,
    prob: pa.Table | None,
    st: State,
    res: Resolved,
    edges: np.ndarray,
) -> pd.DataFrame:
    """Evidence record of a few edges (this batch, else the stored link)."""
    pos = np.maximum(edges, 0)
    got = links_table(st, res, pos, batch, prob).to_pandas()
    got.loc[edges < 0, ["evidence_table", "evidence_record_id"]] = None
    miss = (edges >= 0) & got["evidence_record_id"].isna().to_numpy()
    if miss.any() and store.has_table("identity_links"):
        keys = got.loc[miss, ["node_a", "node_b", "kind"]]
        stage = "_stage_identity_edges"
        store.load_arrow(stage, keys, mode="replace")
        try:
            found = store.sql(
                f"SELECT l.node_a, l.node_b, l.kind, l.evidence_table, l.evidence_record_id "
                f"FROM identity_links l JOIN {stage} s ON s.node_a = l.node_a "
                "AND s.node_b = l.node_b AND s.kind = l.kind"
            )
        finally:
            store.execute(f"DROP TABLE IF EXISTS {stage}")
        filled = keys.merge(found, on=["node_a", "node_b", "kind"], how="left")
        got.loc[miss, "evidence_table"] = filled["evidence_table"].to_numpy()
        got.loc[miss, "evidence_record_id"] = filled["evidence_record_id"].to_numpy()
    return got[["evidence_table", "evidence_record_id"]]
