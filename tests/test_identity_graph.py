"""The identity graph on hand-made fixtures: components, guard, cuts, pairwise scores."""

from __future__ import annotations

import numpy as np
from cip.profiles.identity import pairwise_scores
from cip.profiles.identity._graph import EDGE_STATUSES, components, resolve_graph

LIMITS = [None, 3, 3, 3, 3]  # customer_id, email, phone, loyalty_id, anonymous_id


def _resolve(ranks, edges, *, limits=LIMITS, manual=(), pairs=(), weight=None):
    a = np.array([e[0] for e in edges], np.int64)
    b = np.array([e[1] for e in edges], np.int64)
    w = np.ones(len(edges), np.int64) if weight is None else np.asarray(weight)
    return resolve_graph(
        np.asarray(ranks),
        a,
        b,
        record_edge=np.ones(len(edges), bool),
        weight=w,
        limits=limits,
        manual_blocked=np.asarray(manual, np.int64),
        forbidden_pairs=pairs,
    )


def test_components_of_a_tiny_graph() -> None:
    labels = components(6, np.array([0, 1, 3]), np.array([1, 2, 4]))
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] != labels[5]


def test_guard_blocks_a_phone_shared_by_50_email_persons() -> None:
    ranks = [1] * 50 + [2]  # 50 e-mails, one phone
    r = _resolve(ranks, [(i, 50) for i in range(50)])
    assert len(set(r.labels[:50])) == 50 and r.labels[50] == -1
    row = r.blocked.iloc[0]
    assert (row["node"], row["reason"], row["persons"], row["limit"]) == (50, "guard", 50, 3)
    assert len(row["touched"]) == 10  # a sample of the persons it would join
    assert (np.array(EDGE_STATUSES)[r.edge_status] == "blocked").all()


def test_guard_counts_persons_formed_by_stronger_identifiers_only() -> None:
    # two e-mails of ONE customer (0) plus a phone seen with both: the phone touches
    # one person (through the customer id), not two, so it is not blocked at limit 1
    ranks = [0, 1, 1, 2]
    edges = [(0, 1), (0, 2), (1, 3), (2, 3)]
    r = _resolve(ranks, edges, limits=[None, 1, 1, 1, 1])
    assert r.blocked.empty and len(set(r.labels)) == 1
    # without the customer id the two e-mails are two persons and the phone is blocked
    r = _resolve(ranks, [(1, 3), (2, 3)], limits=[None, 1, 1, 1, 1])
    assert r.blocked["node"].tolist() == [3] and r.labels[1] != r.labels[2]


def test_manual_block_and_min_cut_on_the_weakest_evidence() -> None:
    # c1 - a - P - b - c2 ; forbid a ~ b: the cut removes one edge next to P
    ranks = [0, 1, 2, 1, 0]
    edges = [(0, 1), (1, 2), (3, 2), (4, 3)]
    r = _resolve(ranks, edges, pairs=[(1, 3)], weight=[5, 5, 1, 5])
    assert [EDGE_STATUSES[s] for s in r.edge_status] == ["active", "active", "cut", "active"]
    assert r.labels[0] == r.labels[1] == r.labels[2] != r.labels[3] == r.labels[4]
    r = _resolve(ranks, edges, manual=[2])
    assert r.labels[2] == -1 and r.labels[1] != r.labels[3]
    assert r.blocked["reason"].tolist() == ["forbidden"]


def test_pairwise_scores_from_contingency_counts() -> None:
    # truth {0,1,2} {3,4}; predicted {0,1} {2,3,4}: correct pairs 01 and 34
    s = pairwise_scores([1, 1, 1, 2, 2], ["a", "a", "b", "b", "b"])
    assert (s["correct_pairs"], s["predicted_pairs"], s["true_pairs"]) == (2, 4, 4)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    # unmapped records are singletons
    s = pairwise_scores([1, 1, 2], [None, None, "x"])
    assert s["predicted_pairs"] == 0 and s["recall"] == 0.0
