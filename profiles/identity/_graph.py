"""The identity graph: over-merge guard, connected components, operator cuts.

Nodes are distinct normalised identifiers; an edge joins two identifiers that
occur in the same source record (``kind="record"``) or two records matched by
the probabilistic model (``kind="probabilistic"``). Persons are the connected
components (``scipy.sparse.csgraph.connected_components``).

Over-merge guard (hierarchical by trust): identifier types are ranked
``customer_id > email > phone > loyalty_id > anonymous_id``. For each type t
(from the second on), persons are first formed from the identifiers of the
types *more trusted than t* only (with the values blocked so far removed).
An identifier value of type t is blocked when the records carrying it touch
more than ``limit[t]`` of those persons: a placeholder phone on the records of
50 people touches 50 e-mail persons and is not used for linking. The most
trusted type has no stronger evidence to be checked against; block a bad value
of it with a forbidden link (``b`` empty).

Forbidden pairs (an operator's split): if two identifiers that must not be
one person end up in one component, the component is cut along a minimum cut
between them (max-flow / min-cut theorem, Ford & Fulkerson 1956; computed with
``scipy.sparse.csgraph.maximum_flow``, Dinic's algorithm), using the number
of supporting records as edge capacity, so the weakest evidence is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, maximum_flow

__all__ = ["EDGE_STATUSES", "GraphResult", "resolve_graph", "components"]

#: Status of an edge after the guard and the cuts.
EDGE_STATUSES = ("active", "blocked", "cut")


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes given undirected edges ``a``-``b``."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    g = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    _, labels = connected_components(g, directed=False)
    return labels.astype(np.int64)


@dataclass
class GraphResult:
    """Output of :func:`resolve_graph` (arrays indexed like the input nodes / edges)."""

    labels: np.ndarray  # component per node, -1 for blocked nodes
    blocked: (
        pd.DataFrame
    )  # node (position), reason, persons, limit, touched (list of node positions)
    edge_status: np.ndarray  # per edge: index into EDGE_STATUSES (0 active, 1 blocked, 2 cut)


def _touch_counts(
    sel_b: np.ndarray, comp_of_a: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (weak node, stronger person) pairs and the count of persons per weak node."""
    pairs = np.unique(np.stack([sel_b, comp_of_a], axis=1), axis=0)
    counts = np.bincount(pairs[:, 0], minlength=n) if len(pairs) else np.zeros(n, np.int64)
    return pairs[:, 0], pairs[:, 1], counts


def resolve_graph(
    ranks: np.ndarray,
    edge_a: np.ndarray,
    edge_b: np.ndarray,
    *,
    record_edge: np.ndarray,
    weight: np.ndarray,
    limits: Sequence[int | None],
    manual_blocked: np.ndarray,
    forbidden_pairs: Sequence[tuple[int, int]] = (),
    samples: int = 10,
) -> GraphResult:
    """Guard, components and cuts on a graph of ``len(ranks)`` nodes.

    Parameters
    ----------
    ranks : trust rank of each node's identifier type (0 = most trusted).
    edge_a, edge_b : node positions of each edge.
    record_edge : True for edges from co-occurrence in a record (the guard
        looks at these only); False for probabilistic edges.
    weight : supporting record count per edge (the cut capacity).
    limits : maximum persons per identifier value, per rank (None: no limit).
    manual_blocked : node positions an operator forbade for linking.
    forbidden_pairs : node position pairs that must not end up in one person.
    """
    n = len(ranks)
    ranks = np.asarray(ranks, dtype=np.int64)
    ea, eb = np.asarray(edge_a, np.int64), np.asarray(edge_b, np.int64)
    # orient record edges strong -> weak
    swap = ranks[ea] > ranks[eb]
    ea, eb = np.where(swap, eb, ea), np.where(swap, ea, eb)
    ra, rb = ranks[ea], ranks[eb]
    record_edge = np.asarray(record_edge, bool)
    blocked = np.zeros(n, bool)
    blocked[np.asarray(manual_blocked, np.int64)] = True
    rows = [
        pd.DataFrame(
            {
                "node": np.flatnonzero(blocked),
                "reason": "forbidden",
                "persons": 0,
                "limit": 0,
                "touched": [[] for _ in range(int(blocked.sum()))],
            }
        )
    ]
    for t in range(1, int(ranks.max(initial=0)) + 1):
        limit = limits[t] if t < len(limits) else None
        if limit is None:
            continue
        ok = record_edge & ~blocked[ea] & ~blocked[eb]
        sel = ok & (rb == t) & (ra < t)
        # record edges are unique per pair: a value's degree bounds the persons it touches,
        # so components are only needed when some value could exceed the limit
        cand = np.bincount(eb[sel], minlength=n) > limit
        if not cand.any():
            continue
        strong = ok & (rb < t)
        comp = components(n, ea[strong], eb[strong])
        sel &= cand[eb]
        weak, person, counts = _touch_counts(eb[sel], comp[ea[sel]], n)
        over = np.flatnonzero((counts > limit) & (ranks == t))
        if len(over) == 0:
            continue
        blocked[over] = True
        # a sample of the persons each blocked value would join (as a node of each person)
        rep = np.empty(int(comp.max(initial=-1)) + 1, np.int64)
        rep[comp[::-1]] = np.arange(n)[::-1]  # the first node of each component
        hits = pd.DataFrame({"node": weak, "rep": rep[person]})
        touched = (
            hits[np.isin(hits["node"].to_numpy(), over)]
            .groupby("node")["rep"]
            .agg(lambda s: list(s.iloc[:samples]))
        )
        rows.append(
            pd.DataFrame(
                {
                    "node": over,
                    "reason": "guard",
                    "persons": counts[over],
                    "limit": limit,
                    "touched": touched.reindex(over).tolist(),
                }
            )
        )
    status = np.zeros(len(ea), np.int8)  # EDGE_STATUSES
    status[blocked[ea] | blocked[eb]] = 1
    active = status == 0
    labels = components(n, ea[active], eb[active])
    for x, y in forbidden_pairs:
        if blocked[x] or blocked[y] or x == y or labels[x] != labels[y]:
            continue
        cut = _min_cut(labels, ea, eb, np.asarray(weight), status == 0, x, y)
        status[cut] = 2
        active = status == 0
        labels = components(n, ea[active], eb[active])
    labels = labels.copy()
    labels[blocked] = -1
    keep = labels >= 0  # renumber 0..k-1 without the blocked singletons
    labels[keep] = np.unique(labels[keep], return_inverse=True)[1]
    blocked_df = pd.concat(rows, ignore_index=True)
    return GraphResult(labels=labels, blocked=blocked_df, edge_status=status)


def _min_cut(
    labels: np.ndarray,
    ea: np.ndarray,
    eb: np.ndarray,
    weight: np.ndarray,
    active: np.ndarray,
    x: int,
    y: int,
) -> np.ndarray:
    """Positions of the edges of a minimum x-y cut inside x's component."""
    comp = labels[x]
    inside = active & (labels[ea] == comp)
    nodes = np.flatnonzero(labels == comp)
    local = np.full(len(labels), -1, np.int64)
    local[nodes] = np.arange(len(nodes))
    la, lb = local[ea[inside]], local[eb[inside]]
    cap = np.maximum(np.asarray(weight[inside], np.int64), 1).astype(np.int32)
    m = len(nodes)
    graph = csr_matrix(
        (np.concatenate([cap, cap]), (np.concatenate([la, lb]), np.concatenate([lb, la]))),
        shape=(m, m),
    )
    graph.sum_duplicates()
    flow = maximum_flow(graph, int(local[x]), int(local[y]), method="dinic").flow
    residual = (graph - flow).tocsr()
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, int(local[x]), directed=True, return_predecessors=False)
    side = np.zeros(m, bool)
    side[reach] = True
    crossing = side[la] != side[lb]
    return np.flatnonzero(inside)[crossing]
