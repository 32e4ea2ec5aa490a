"""Stable unified ids across runs, and the merge / split history.

Each node (identifier) remembers the id of the person it belonged to in the
previous run (``prev``) and the id it was first given (``birth``). After the
graph is recomputed, every component gets an id from its candidates (the
``prev`` and ``birth`` ids of its nodes) by rounds of mutual best choice:

* a component prefers the *oldest* candidate id (earliest first_seen of the
  person, then the id itself), so on a merge the older id survives;
* an id prefers the component holding most nodes *born* with it, then most
  nodes that had it last run, so after a split the original part keeps it and
  the split-off part gets its own former id back (``birth``) when it has one.

With one global order of ids a mutual best pair always exists (the best id
overall and its favourite component), so every round makes progress.
Components left without an id get a new one: ``u_`` + 16 hex chars of
``md5(salt | type | value)`` of their most trusted identifier, where the salt is
a random secret of the store (so an id reveals nothing about the e-mail).
All bookkeeping runs on integer codes; strings stay in DuckDB.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["assign_ids", "new_ids", "history_codes"]

_MAX = np.iinfo(np.int64).max


def assign_ids(
    label: np.ndarray,
    prev_code: np.ndarray,
    birth_code: np.ndarray,
    first_seen: np.ndarray,
    n_codes: int,
) -> np.ndarray:
    """Id code per component (``-1``: needs a new id); ``label`` is -1 for blocked nodes."""
    n_labels = int(label.max(initial=-1)) + 1
    # age of an id: earliest first_seen of its nodes; global order (age, code) = (age, id string)
    age = np.full(n_codes, _MAX, np.int64)
    for c in (prev_code, birth_code):
        ok = c >= 0
        np.minimum.at(age, c[ok], first_seen[ok])
    age_rank = np.empty(n_codes, np.int64)
    age_rank[np.lexsort((np.arange(n_codes), age))] = np.arange(n_codes)
    lab = label >= 0
    parts = []
    for c, name in ((prev_code, "n_prev"), (birth_code, "n_birth")):
        ok = lab & (c >= 0)
        parts.append(pd.DataFrame({"label": label[ok], "uid": c[ok]}).value_counts().rename(name))
    cand = pd.concat(parts, axis=1).fillna(0).reset_index()
    cand["age_rank"] = age_rank[cand["uid"].to_numpy(np.int64)]
    code_of = np.full(n_labels, -1, np.int64)
    while len(cand):
        comp_best = cand.sort_values("age_rank", kind="stable").drop_duplicates("label")
        id_best = cand.sort_values(
            ["n_birth", "n_prev", "label"], ascending=[False, False, True], kind="stable"
        ).drop_duplicates("uid")
        mutual = comp_best.merge(id_best[["label", "uid"]], on=["label", "uid"])
        if mutual.empty:  # impossible with a global id order; stay safe
            break
        code_of[mutual["label"].to_numpy(np.int64)] = mutual["uid"].to_numpy(np.int64)
        cand = cand[~cand["label"].isin(mutual["label"]) & ~cand["uid"].isin(mutual["uid"])]
    return code_of


def new_ids(seeds: pd.DataFrame, salt: str, taken: np.ndarray) -> pd.DataFrame:
    """``label, unified_id`` for new components, seeded by their most trusted identifier.

    ``seeds``: ``label, rank, identifier_type, identifier_value`` of the nodes
    of the components that need an id. A new id that clashes with a ``taken``
    one or another new one is re-derived with an extra separator (practically
    never happens).
    """
    seed = seeds.sort_values(["label", "rank", "identifier_value"]).drop_duplicates("label")
    frame = pa.table(
        {
            "label": seed["label"].to_numpy(np.int64),
            "seed": (
                seed["identifier_type"].astype(str) + "|" + seed["identifier_value"].astype(str)
            ).to_numpy(dtype=object),
        }
    )
    used = set(np.asarray(taken, dtype=object).tolist())
    out, attempt = [], 0
    con = duckdb.connect()
    try:
        while frame.num_rows:
            con.register("seeds", frame)
            got = con.execute(
                "SELECT label, 'u_' || substr(md5(? || '|' || seed || repeat('|', ?)), 1, 16) "
                "AS unified_id FROM seeds",
                [salt, attempt],
            ).df()
            con.unregister("seeds")
            uid = pd.Series(got["unified_id"].to_numpy(dtype=object), dtype=object)
            clash = (uid.duplicated(keep=False) | uid.isin(used)).to_numpy()
            out.append(got[~clash])
            used.update(uid[~clash].tolist())
            frame = frame.filter(pa.array(clash))
            attempt += 1
    finally:
        con.close()
    res = (
        pd.concat(out, ignore_index=True) if out else pd.DataFrame({"label": [], "unified_id": []})
    )
    res["label"] = res["label"].astype(np.int64)
    return res


def history_codes(
    prev: np.ndarray,
    uid: np.ndarray,
    edge_a: np.ndarray,
    edge_b: np.ndarray,
    edge_active: np.ndarray,
    edge_cut: np.ndarray,
    edge_last_seen: np.ndarray,
    blocked_pos: np.ndarray,
    blocked_reason: np.ndarray,
    n_codes: int,
) -> pd.DataFrame:
    """Merges, splits and dissolved ids since the previous run, as codes and positions.

    Columns: ``kind``, ``u`` (surviving / kept id), ``w`` (merged / split-off id),
    ``node`` (the linking or separating identifier, -1 if none), ``edge`` (its
    evidence edge, -1 if none), ``reason``.
    """
    assigned = np.zeros(n_codes, bool)
    assigned[uid[uid >= 0]] = True
    was = np.zeros(n_codes, bool)
    was[prev[prev >= 0]] = True
    retired = was & ~assigned
    pa_, pb_, ua, ub = prev[edge_a], prev[edge_b], uid[edge_a], uid[edge_b]
    eidx = np.arange(len(edge_a))
    rows = []
    if retired.any():
        frames = []
        for m, pm_other, other, surv in ((pa_, pb_, edge_b, ua), (pb_, pa_, edge_a, ub)):
            ok = edge_active & (m >= 0) & retired[np.maximum(m, 0)] & (pm_other != m)
            frames.append(
                pd.DataFrame(
                    {
                        "w": m[ok],
                        "u": surv[ok],
                        "node": other[ok],
                        "edge": eidx[ok],
                        "t": edge_last_seen[ok],
                    }
                )
            )
        link = pd.concat(frames).sort_values(["t", "edge"], ascending=False).drop_duplicates("w")
        rows.append(link.assign(kind="merge", reason="new evidence links the persons"))
        gone = np.setdiff1d(np.flatnonzero(retired), link["w"].to_numpy(np.int64))
        rows.append(
            pd.DataFrame(
                {
                    "w": gone,
                    "u": -1,
                    "node": -1,
                    "edge": -1,
                    "kind": "dissolved",
                    "reason": "its identifiers are blocked or gone",
                }
            )
        )
    moved = (prev >= 0) & (uid >= 0) & (prev != uid) & assigned[np.maximum(prev, 0)]
    if moved.any():
        pairs = pd.DataFrame({"u": prev[moved], "w": uid[moved]}).drop_duplicates()
        reason_of = np.full(len(prev), "", dtype=object)
        reason_of[blocked_pos] = blocked_reason
        text = {
            "guard": "over-merge guard blocked the identifier",
            "forbidden": "an operator forbade the identifier",
        }
        removed = ~edge_active
        frames = []
        for side, other in ((edge_a, edge_b), (edge_b, edge_a)):
            w, uo = uid[side], uid[other]
            u = np.where(uo >= 0, uo, prev[other])
            node = np.where(uo >= 0, side, other)
            ok = removed & (w >= 0) & (u >= 0) & (u != w)
            why = np.where(
                edge_cut[ok],
                "an operator forbade the link (cut)",
                pd.Series(reason_of[node[ok]]).map(text).fillna("").to_numpy(),
            )
            frames.append(
                pd.DataFrame(
                    {
                        "u": u[ok],
                        "w": w[ok],
                        "node": node[ok],
                        "edge": eidx[ok],
                        "t": edge_last_seen[ok],
                        "reason": why,
                    }
                )
            )
        why = pd.concat(frames).sort_values(["t", "edge"], ascending=False)
        why = why.drop_duplicates(["u", "w"])
        split = pairs.merge(why, how="left", on=["u", "w"])
        split["reason"] = split["reason"].fillna("the evidence linking them is gone")
        rows.append(split.assign(kind="split"))
    cols = ["kind", "u", "w", "node", "edge", "reason"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = pd.concat(rows, ignore_index=True)[cols]
    for c in ("u", "w", "node", "edge"):
        out[c] = out[c].fillna(-1).astype(np.int64)
    return out
