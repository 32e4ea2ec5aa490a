"""Identity graph on Spark vs the single-machine ``resolve_graph`` (same answer, time of each).

Builds an identity-like graph: per person a customer id, one or two e-mails, a
phone and a few anonymous ids (record edges), chains of persons joined by
shared e-mails, a few probabilistic edges, and placeholder phones on the
records of many persons (the guard blocks them). Runs
:func:`profiles.identity._graph.resolve_graph` (scipy) and
:func:`profiles.identity._spark_graph.resolve_graph_spark` on Spark ``local[2]``,
once with the component searches on the driver (the default for graphs under
``local_edges``) and once fully distributed (``local_edges=0``), checks that
the labels and edge statuses are identical, and prints the times.

Usage::

    python -m benchmarks.spark_identity_graph [--persons 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def identity_graph(persons: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Node ranks and edges of a simulated shop's identity graph."""
    rng = np.random.default_rng(seed)
    ranks: list[np.ndarray] = []
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    n = 0

    def new(rank: int, k: int) -> np.ndarray:
        nonlocal n
        ids = np.arange(n, n + k)
        ranks.append(np.full(k, rank))
        n += k
        return ids

    cust = new(0, persons)
    email = new(1, persons)
    phone = new(2, persons)
    a += [cust, cust]
    b += [email, phone]
    second = rng.random(persons) < 0.3
    e2 = new(1, int(second.sum()))
    a.append(cust[second])
    b.append(e2)
    anon = new(4, 3 * persons)
    a.append(np.repeat(cust, 3))
    b.append(anon)
    # households / typos: a person's second e-mail also on the next person's records
    share = rng.random(len(e2)) < 0.5
    a.append(
        cust[np.flatnonzero(second)[share] + 1 - (np.flatnonzero(second)[share] + 1 == persons)]
    )
    b.append(e2[share])
    # placeholder phones on the records of many persons
    fake = new(2, 5)
    who = rng.choice(persons, 400)
    a.append(cust[who])
    b.append(fake[np.arange(400) % 5])
    ea, eb = np.concatenate(a), np.concatenate(b)
    pairs = np.unique(np.stack([ea, eb], 1), axis=0)
    m = len(pairs)
    rec = np.ones(m, bool)
    # a few probabilistic links between e-mails
    k = persons // 50
    pa_, pb_ = rng.choice(email, k), rng.choice(email, k)
    return {
        "ranks": np.concatenate(ranks),
        "a": np.concatenate([pairs[:, 0], pa_]),
        "b": np.concatenate([pairs[:, 1], pb_]),
        "rec": np.concatenate([rec, np.zeros(k, bool)]),
        "w": np.concatenate([np.ones(m, np.int64), np.ones(k, np.int64)]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from cip.profiles.identity._graph import resolve_graph
    from cip.profiles.identity._spark_graph import graph_frames, resolve_graph_spark
    from pyspark.sql import SparkSession

    g = identity_graph(args.persons, args.seed)
    limits = [None, 5, 3, 3, 3]
    t = time.perf_counter()
    want = resolve_graph(
        g["ranks"],
        g["a"],
        g["b"],
        record_edge=g["rec"],
        weight=g["w"],
        limits=limits,
        manual_blocked=[],
    )
    t_np = time.perf_counter() - t
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    nodes, edges = graph_frames(spark, g["ranks"], g["a"], g["b"], g["rec"], g["w"])
    nodes, edges = nodes.cache(), edges.cache()
    nodes.count(), edges.count()
    print(
        f"nodes {len(g['ranks'])}, edges {len(g['a'])}, persons {want.labels.max() + 1}, "
        f"blocked {len(want.blocked)}"
    )
    print(f"resolve_graph (scipy)                      {t_np:8.2f} s")
    for name, local in (("driver components", None), ("distributed components", 0)):
        kw = {} if local is None else {"local_edges": local}
        t = time.perf_counter()
        got = resolve_graph_spark(nodes, edges, limits=limits, **kw).collect(
            len(g["ranks"]), len(g["a"])
        )
        dt = time.perf_counter() - t
        same = np.array_equal(got.labels, want.labels) and np.array_equal(
            got.edge_status, want.edge_status
        )
        print(f"resolve_graph_spark, {name:24s}{dt:8.2f} s  identical: {same}")
    spark.stop()


if __name__ == "__main__":
    main()
