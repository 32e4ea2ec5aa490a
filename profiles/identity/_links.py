"""Extra link rules for the graph: operator-forbidden links and probabilistic links."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from cip.profiles.contracts import schema
from cip.profiles.errors import ConfigError
from cip.profiles.identity._extract import NODE_COLS, RECORDS, Extract
from cip.profiles.identity.normalise import ID_TYPES, normalise_identifier
from cip.profiles.identity.options import IdentityOptions, parse_identifier
from cip.profiles.sql import quote_ident
from cip.profiles.store import Store

__all__ = ["FORBIDDEN", "forbidden_rules", "fuzzy_edges"]

log = logging.getLogger(__name__)

#: Table of links an operator forbade with ``cip identity split``.
FORBIDDEN = "identity_forbidden"


def _canonical(texts: list[str], opts: IdentityOptions) -> pd.DataFrame:
    """``TYPE:VALUE`` texts as ``identifier_type, identifier_value`` (normalised; NA if invalid)."""
    parsed = pd.DataFrame([parse_identifier(t) for t in texts], columns=["identifier_type", "raw"])
    parsed["identifier_value"] = pd.Series(pd.NA, index=parsed.index, dtype="string")
    for t in ID_TYPES:
        sel = parsed["identifier_type"] == t
        if sel.any():
            parsed.loc[sel, "identifier_value"] = normalise_identifier(
                t, parsed.loc[sel, "raw"], **opts.normaliser_kwargs()
            ).to_numpy()
    return parsed[["identifier_type", "identifier_value"]]


def forbidden_rules(
    store: Store, opts: IdentityOptions, node_id: np.ndarray, lookup
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Forbidden identifiers and pairs (config and ``identity_forbidden``) as node positions.

    ``lookup`` maps ``identifier_type, identifier_value`` to stored or batch node ids.
    """
    rules = [(f.a, f.b) for f in opts.forbidden_links]
    if store.has_table(FORBIDDEN):
        stored = store.sql(f"SELECT a, b FROM {FORBIDDEN}")
        rules += [(a, b if isinstance(b, str) else None) for a, b in stored.itertuples(index=False)]
    if not rules:
        return np.zeros(0, np.int64), []
    a = _canonical([r[0] for r in rules], opts)
    b = _canonical([r[1] or r[0] for r in rules], opts)
    single = np.array([r[1] is None for r in rules])
    both = pd.concat([a, b]).dropna().drop_duplicates()
    found = lookup(
        pa.table(
            {
                "identifier_type": pa.array(both["identifier_type"].astype(object), pa.string()),
                "identifier_value": pa.array(both["identifier_value"].astype(object), pa.string()),
            }
        )
    ).to_pandas()
    key = dict(
        zip(
            zip(found["identifier_type"], found["identifier_value"], strict=True),
            found["node_id"],
            strict=True,
        )
    )

    def positions(df: pd.DataFrame) -> np.ndarray:
        ids = np.array(
            [
                key.get((t, v), -1)
                for t, v in zip(df["identifier_type"], df["identifier_value"], strict=True)
            ],
            np.int64,
        )
        at = np.searchsorted(node_id, ids)
        ok = (ids >= 0) & (at < len(node_id))
        ok[ok] &= node_id[at[ok]] == ids[ok]
        return np.where(ok, at, -1)

    pa_, pb_ = positions(a), positions(b)
    manual = np.unique(pa_[single & (pa_ >= 0)])
    pair = ~single & (pa_ >= 0) & (pb_ >= 0)
    return manual, list(zip(pa_[pair].tolist(), pb_[pair].tolist(), strict=True))


def _anchors(records: pd.DataFrame) -> pd.Series:
    """Each record's most trusted node id (the first non-null of the node columns)."""
    return records[NODE_COLS].bfill(axis=1).iloc[:, 0]


def fuzzy_edges(
    store: Store, opts: IdentityOptions, batch: Extract, *, full: bool
) -> tuple[pa.Table, bool]:
    """Probabilistic links between ``customers`` records (Splink), as graph edges.

    Re-scored when customers records arrived (or on a full run); otherwise the
    stored links are reused. Each link joins the two records' most trusted
    identifiers and keeps both records and the match probability as evidence.
    Returns the edges and whether they replace the stored ones.
    """
    f = opts.fuzzy
    have = store.has_table("identity_links")
    if not f.enabled:
        return _edge_table(pd.DataFrame()), have
    recs = batch.records
    new_cust = recs.filter(pc.equal(recs.column("source_table"), "customers")).to_pandas()
    if not full and len(new_cust) == 0 and have:
        old = store.sql(
            "SELECT node_a, node_b, kind, record_count, first_seen, last_seen, evidence_table, "
            "evidence_record_id, evidence_pair_record_id, match_probability, status AS prev_status "
            "FROM identity_links WHERE kind = 'probabilistic'"
        )
        return _edge_table(old.assign(touched=False)), False
    from cip.profiles.identity._fuzzy import fuzzy_pairs

    known = schema("customers").names
    missing = [c for c in f.fields if c not in known]
    if missing:
        raise ConfigError(f"identity.fuzzy.fields: {missing} are not customers columns")
    if not full and store.has_table(RECORDS):
        stored = store.sql(
            f"SELECT record_id, {', '.join(NODE_COLS)} FROM {RECORDS} "
            "WHERE source_table = 'customers'"
        )
        new_cust = pd.concat([stored, new_cust[["record_id", *NODE_COLS]]], ignore_index=True)
    anchors = pd.DataFrame(
        {"record_id": new_cust["record_id"].astype(object), "anchor": _anchors(new_cust)}
    ).dropna()
    cols = ", ".join(quote_ident(c) for c in f.fields)
    cust = store.sql(f"SELECT record_id, {cols} FROM customers")
    cust = cust.astype({"record_id": object}).merge(anchors, on="record_id").reset_index(drop=True)
    pairs = fuzzy_pairs(
        cust[list(f.fields)],
        dict(f.fields),
        threshold=f.threshold,
        seed=f.seed,
        max_pairs_u=f.max_pairs_u,
    )
    anchor = cust["anchor"].to_numpy(np.int64)
    rid = cust["record_id"].to_numpy(dtype=object)
    left, right = pairs["left"].to_numpy(np.int64), pairs["right"].to_numpy(np.int64)
    a, b = anchor[left], anchor[right]
    out = pd.DataFrame(
        {
            "node_a": np.minimum(a, b),
            "node_b": np.maximum(a, b),
            "kind": "probabilistic",
            "record_count": 1,
            "first_seen": pd.NaT,
            "last_seen": pd.NaT,
            "evidence_table": "customers",
            "evidence_record_id": rid[left],
            "evidence_pair_record_id": rid[right],
            "match_probability": pairs["match_probability"].to_numpy(),
            "prev_status": None,
            "touched": True,
        }
    )
    out = out[out["node_a"] != out["node_b"]]
    out = out.sort_values("match_probability", ascending=False).drop_duplicates(
        ["node_a", "node_b"]
    )
    log.info("probabilistic matching: %d links above %.2f", len(out), f.threshold)
    return _edge_table(out), have


def _edge_table(df: pd.DataFrame) -> pa.Table:
    schema_ = pa.schema(
        [
            ("node_a", pa.int64()),
            ("node_b", pa.int64()),
            ("kind", pa.string()),
            ("record_count", pa.int64()),
            ("first_seen", pa.timestamp("us")),
            ("last_seen", pa.timestamp("us")),
            ("evidence_table", pa.string()),
            ("evidence_record_id", pa.string()),
            ("evidence_pair_record_id", pa.string()),
            ("match_probability", pa.float64()),
            ("prev_status", pa.string()),
            ("touched", pa.bool_()),
        ]
    )
    if df.empty:
        return schema_.empty_table()
    return pa.Table.from_pandas(df[schema_.names], schema=schema_, preserve_index=False)
