"""The identity graph on Spark gives exactly the answer of the single-machine resolve_graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.profiles.errors import DataError
from cip.profiles.identity._graph import components, resolve_graph
from cip.profiles.identity._spark_graph import (
    connected_components_spark,
    graph_frames,
    resolve_graph_spark,
)

pytestmark = pytest.mark.spark


class _Builder:
    """A disjoint union of small graphs with known shapes (node / edge arrays)."""

    def __init__(self) -> None:
        self.ranks: list[int] = []
        self.a: list[int] = []
        self.b: list[int] = []
        self.rec: list[bool] = []
        self.w: list[int] = []

    def nodes(self, ranks: list[int]) -> list[int]:
        start = len(self.ranks)
        self.ranks += ranks
        return list(range(start, len(self.ranks)))

    def edge(self, x: int, y: int, rec: bool = True, w: int = 1) -> None:
        self.a.append(x)
        self.b.append(y)
        self.rec.append(rec)
        self.w.append(w)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (
            np.array(self.ranks, np.int64),
            np.array(self.a, np.int64),
            np.array(self.b, np.int64),
            np.array(self.rec, bool),
            np.array(self.w, np.int64),
        )


def _compare(spark, ranks, a, b, rec, w, limits, manual=(), pairs=(), local_edges=None):
    want = resolve_graph(
        ranks,
        a,
        b,
        record_edge=rec,
        weight=w,
        limits=limits,
        manual_blocked=np.asarray(manual, np.int64),
        forbidden_pairs=pairs,
    )
    nodes, edges = graph_frames(spark, ranks, a, b, rec, w)
    kw = {} if local_edges is None else {"local_edges": local_edges}
    got = resolve_graph_spark(
        nodes, edges, limits=limits, manual_blocked=manual, forbidden_pairs=pairs, **kw
    ).collect(len(ranks), len(a))
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.edge_status, want.edge_status)
    cols = ["node", "reason", "persons", "limit"]
    pd.testing.assert_frame_equal(
        got.blocked[cols].reset_index(drop=True),
        want.blocked[cols].reset_index(drop=True),
        check_dtype=False,
    )
    assert [list(map(int, t)) for t in got.blocked["touched"]] == [
        list(map(int, t)) for t in want.blocked["touched"]
    ]
    return want


@pytest.mark.parametrize(
    "local_edges", [pytest.param(0, marks=pytest.mark.slow, id="distributed"), 10_000]
)
def test_components_of_long_chains_and_stars(spark, local_edges) -> None:
    rng = np.random.default_rng(3)
    # a 200-node chain in shuffled order, a 60-leaf star, 50 pairs, a self-loop
    chain = rng.permutation(200)
    a = list(chain[:-1]) + [565]
    b = list(chain[1:]) + [565]
    a += [400] * 60
    b += list(range(401, 461))
    a += list(range(461, 561, 2))
    b += list(range(462, 562, 2))
    n = 570
    a, b = np.array(a), np.array(b)
    want = components(n, a, b)
    edges = spark.createDataFrame(pd.DataFrame({"a": a, "b": b}).astype("int64"), "a long, b long")
    got = connected_components_spark(edges, local_edges=local_edges).toPandas().sort_values("node")
    nodes = got["node"].to_numpy()
    assert set(nodes) == set(a) | set(b)  # nodes without edges are not in an edge list
    # same partition, and the id is the smallest node of the component
    smallest = pd.Series(nodes).groupby(want[nodes]).transform("min").to_numpy()
    np.testing.assert_array_equal(got["component"].to_numpy(), smallest)


def _random_part(g: _Builder, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A random graph with hub values of weak types; two forbidden pairs inside big persons."""
    n, m = 300, 330
    ranks = rng.choice(5, size=n, p=[0.15, 0.35, 0.25, 0.1, 0.15])
    hubs = rng.choice(np.flatnonzero(ranks >= 2), size=4, replace=False)
    a = rng.integers(0, n, m)
    b = np.where(rng.random(m) < 0.25, rng.choice(hubs, m), rng.integers(0, n, m))
    keep = a != b
    pairs = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b)})[keep].drop_duplicates()
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    rec = rng.random(len(a)) < 0.85
    w = rng.integers(1, 5, len(a))
    alone = resolve_graph(
        ranks, a, b, record_edge=rec, weight=w, limits=[None, 5, 3, 3, 3], manual_blocked=[]
    )
    big = np.flatnonzero(np.bincount(alone.labels[alone.labels >= 0]) > 3)
    inside = np.flatnonzero(np.isin(alone.labels, big))
    ids = np.asarray(g.nodes([int(r) for r in ranks]))
    for x, y, r, c in zip(a, b, rec, w, strict=True):
        g.edge(int(ids[x]), int(ids[y]), rec=bool(r), w=int(c))
    return [tuple(int(v) for v in ids[rng.choice(inside, 2, replace=False)]) for _ in range(2)]


@pytest.mark.slow  # ~25 distributed component rounds: minutes on a busy 2-core machine
def test_shapes_guard_and_forbidden_pair_match_resolve_graph(spark) -> None:
    """Hand-made shapes and a random graph, as one disjoint graph (one Spark run)."""
    g = _Builder()
    # a chain of e-mails over customer ids (ranks 0-1), edges given in a scrambled order
    chain = g.nodes([0, 1] * 40)
    order = np.random.default_rng(0).permutation(len(chain) - 1)
    for i in order:
        g.edge(chain[i], chain[i + 1])
    # a placeholder phone (rank 2) on the records of 7 e-mail persons: over the limit of 3
    emails = g.nodes([1] * 7)
    phone = g.nodes([2])[0]
    for e in emails:
        g.edge(phone, e)  # weak end first: resolve_graph orients it
    # a phone shared by 2 persons (under the limit) joins them
    two = g.nodes([1, 1, 2])
    g.edge(two[0], two[2])
    g.edge(two[1], two[2])
    # a star of anonymous ids around one e-mail with a probabilistic edge to another e-mail
    star = g.nodes([1] + [4] * 12 + [1])
    for leaf in star[1:-1]:
        g.edge(star[0], leaf, w=2)
    g.edge(star[0], star[-1], rec=False, w=1)
    # a forbidden pair joined by a strong (3 records) and a weak (1 record) path
    fp = g.nodes([1, 3, 3, 1, 2])
    g.edge(fp[0], fp[1], w=3)
    g.edge(fp[1], fp[3], w=3)
    g.edge(fp[0], fp[4], w=1)
    g.edge(fp[4], fp[3], w=1)
    # an operator-blocked identifier in the middle of a pair, and isolated nodes
    mb = g.nodes([1, 3, 1])
    g.edge(mb[0], mb[1])
    g.edge(mb[2], mb[1])
    g.nodes([1, 2, 3])
    rand_pairs = _random_part(g, np.random.default_rng(1))
    ranks, a, b, rec, w = g.arrays()
    want = _compare(
        spark,
        ranks,
        a,
        b,
        rec,
        w,
        limits=[None, 5, 3, 3, 3],
        manual=[mb[1]],
        pairs=[(fp[0], fp[3]), (emails[0], emails[1]), *rand_pairs],
        local_edges=0,  # the distributed component search, not the driver's
    )
    # the cases did what they are here for
    assert want.labels[phone] == -1 and len(set(want.labels[emails])) == 7
    assert len(set(want.labels[two])) == 1
    assert want.labels[fp[0]] != want.labels[fp[3]]
    assert want.labels[mb[0]] != want.labels[mb[2]]
    assert len(set(want.labels[chain])) == 1
    assert (want.blocked["persons"] > 3).sum() > 1  # the random part's hubs are blocked too
    assert (want.edge_status == 2).sum() > 2  # and its forbidden pairs are cut


def test_bad_input_is_a_clear_error(spark) -> None:
    nodes, edges = graph_frames(
        spark, np.array([0, 1]), np.array([0]), np.array([5]), np.array([True]), np.array([1])
    )
    with pytest.raises(DataError, match="not in the nodes"):
        resolve_graph_spark(nodes, edges, limits=[None, 3])
    with pytest.raises(DataError, match="lacks column"):
        resolve_graph_spark(nodes, edges.drop("weight"), limits=[None, 3])
