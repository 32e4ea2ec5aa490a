"""The identity graph on Spark: the same guard, components and cuts as :func:`resolve_graph`.

:func:`resolve_graph_spark` takes the graph as two Spark DataFrames (nodes with
their trust rank, edges with their kind and weight) and gives the same answer
as :func:`cip.profiles.identity._graph.resolve_graph` on the same arrays: the
same persons (components), the same blocked identifiers (with the same guard
report) and the same edge statuses. The test suite checks this on random
graphs.

Where the work runs
-------------------
* **Executors** -- connected components, by the alternating *large-star /
  small-star* algorithm of Kiveris et al. (2014, "Connected Components in
  MapReduce and Beyond"): O(log^2 n) rounds, each a ``groupBy`` (min
  neighbour) and a join; long chains need a few rounds, not one per hop as
  min-label propagation would. Every round's edges are checkpointed
  (``checkpoint()`` when the context has a checkpoint directory, else
  ``localCheckpoint()``) so the lineage stays one round long. The over-merge
  guard's touch counts are joins and aggregations: per identifier type with a
  limit, the candidate values (record-edge degree above the limit), the
  components of the more trusted identifiers, and the distinct persons each
  candidate touches (``groupBy`` + ``count``); then the edge statuses and the
  components of the active edges.
* **Driver** -- the small things: any component search over at most
  ``local_edges`` edges (default 1 M, ~16 MB collected; a collect and
  ``scipy`` beat a dozen distributed rounds there), the guard report (the few blocked values,
  with a sample of the persons each one touches), and the operator's
  forbidden-pair *min cuts*. Only the components that hold both ends of a
  forbidden pair are collected (their nodes and active edges), cut there with
  the very same code as the single-machine path (``scipy``'s Dinic max-flow),
  and their new component ids are joined back. A forbidden pair is an
  operator's split, so these are few components of a few identifiers each.
* **Shuffles** -- per large-star/small-star round: one ``groupBy`` on the
  node and one join on the node (plus the convergence check, a ``groupBy``
  and a join); per guarded identifier type: the anti-joins with the blocked
  values, the ``groupBy`` of the candidates and the components of the
  stronger identifiers (as above); at the end one join of the edges with the
  blocked values, the components of the active edges and one global sort of
  the component roots (to number persons 0..k-1 in the order of their
  smallest node, like ``scipy``'s ``connected_components``). Everything is
  keyed by the integer node id: partition edges by node for locality.

A component's id inside Spark is its smallest node id (``component``);
``label`` numbers the persons 0..k-1 in that order, and is -1 for a blocked
node, exactly the ``labels`` of :func:`resolve_graph` when node ids are the
positions 0..n-1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from cip.profiles.errors import DataError
from cip.profiles.identity._graph import GraphResult, _min_cut, components

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["SparkGraphResult", "connected_components_spark", "resolve_graph_spark"]

log = logging.getLogger(__name__)

#: Safety stop of the large-star / small-star loop (O(log^2 n) rounds are needed).
MAX_ROUNDS = 200

#: Graphs of at most this many edges are solved on the driver (``scipy``, ~16 bytes an
#: edge): a collect costs less than the dozen distributed rounds a long chain needs.
LOCAL_EDGES = 1_000_000


@dataclass
class SparkGraphResult:
    """Output of :func:`resolve_graph_spark`.

    ``labels``: Spark DataFrame ``node, component, label`` (``component``: the
    smallest node of the person, ``label``: persons numbered 0..k-1 in that
    order; both -1 for blocked nodes). ``edge_status``: Spark DataFrame
    ``edge, status`` (0 active, 1 blocked, 2 cut; see ``EDGE_STATUSES``).
    ``blocked``: the guard report as in :class:`GraphResult` (pandas, small).
    """

    labels: DataFrame
    edge_status: DataFrame
    blocked: pd.DataFrame

    def collect(self, n_nodes: int, n_edges: int) -> GraphResult:
        """The result as the arrays of :class:`GraphResult` (node / edge ids are positions).

        For callers that continue on the driver (e.g. ``unify``'s id assignment),
        when the nodes are numbered ``0..n_nodes-1`` and the edges ``0..n_edges-1``.
        """
        lab = self.labels.select("node", "label").toPandas()
        labels = np.full(n_nodes, -1, np.int64)
        labels[lab["node"].to_numpy(np.int64)] = lab["label"].to_numpy(np.int64)
        st = self.edge_status.toPandas()
        status = np.zeros(n_edges, np.int8)
        status[st["edge"].to_numpy(np.int64)] = st["status"].to_numpy(np.int8)
        return GraphResult(labels=labels, blocked=self.blocked, edge_status=status)


def _cut_lineage(df: DataFrame) -> DataFrame:
    """Materialise ``df`` and drop its lineage (reliable checkpoint when a dir is set)."""
    if df.sparkSession.sparkContext.getCheckpointDir():
        return df.checkpoint(eager=True)
    return df.localCheckpoint(eager=True)


def _large_star(e: DataFrame) -> DataFrame:
    """Each node links its larger neighbours to the smallest of its neighbourhood."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    both = e.select("u", "v").union(e.select(F.col("v").alias("u"), F.col("u").alias("v")))
    m = F.least(F.min("v").over(Window.partitionBy("u")), F.col("u"))
    return (
        both.withColumn("m", m)
        .where(F.col("v") > F.col("u"))
        .select(F.col("v").alias("u"), F.col("m").alias("v"))
    )


def _small_star(e: DataFrame) -> DataFrame:
    """Each node links itself and its smaller neighbours to the smallest of them.

    The output is oriented ``u > v`` (``v`` the smaller end) and has no duplicates.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    o = e.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).withColumn(
        "m", F.min("v").over(Window.partitionBy("u"))
    )
    spokes = o.where(F.col("v") != F.col("m")).select(F.col("v").alias("u"), F.col("m").alias("v"))
    return spokes.union(o.select("u", F.col("m").alias("v"))).distinct()


def _is_star_forest(e: DataFrame) -> bool:
    """Whether every node has one parent and no parent has a parent (``u > v`` edges)."""
    from pyspark.sql import functions as F

    multi = e.groupBy("u").count().where(F.col("count") > 1).select("u")
    chained = e.join(e.select(F.col("u").alias("v")), "v", "left_semi").select("u")
    return multi.union(chained).isEmpty()


def connected_components_spark(
    edges: DataFrame, a: str = "a", b: str = "b", *, local_edges: int = LOCAL_EDGES
) -> DataFrame:
    """Component of every node that occurs in ``edges``: DataFrame ``node, component``.

    ``component`` is the smallest node id of the component (large-star /
    small-star, Kiveris et al. 2014; self-loops are ignored, but their node
    still gets a row). Nodes must be integers (``long``). A graph of at most
    ``local_edges`` distinct edges is collected and solved on the driver with
    ``scipy`` instead (one collect beats a dozen distributed rounds); 0 always
    runs the distributed rounds.
    """
    from pyspark.sql import functions as F

    ends = edges.select(F.col(a).cast("long").alias("u"), F.col(b).cast("long").alias("v"))
    nodes = ends.select(F.col("u").alias("node")).union(ends.select(F.col("v").alias("node")))
    e = _cut_lineage(ends.where(F.col("u") != F.col("v")).distinct())
    if local_edges > 0 and e.count() <= local_edges:
        return _components_on_driver(nodes.distinct(), e)
    for rounds in range(1, MAX_ROUNDS + 1):
        e = _cut_lineage(_small_star(_large_star(e)))
        if _is_star_forest(e):
            log.debug("connected components converged after %d rounds", rounds)
            break
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    parent = e.select(F.col("u").alias("node"), F.col("v").alias("component"))
    return (
        nodes.distinct()
        .join(parent, "node", "left")
        .select("node", F.coalesce("component", "node").alias("component"))
    )


def _components_on_driver(nodes: DataFrame, e: DataFrame) -> DataFrame:
    """Components of a small edge list with ``scipy`` (smallest node id per component)."""
    ids = np.sort(nodes.toPandas()["node"].to_numpy(np.int64))
    pdf = e.toPandas()
    u = np.searchsorted(ids, pdf["u"].to_numpy(np.int64))
    v = np.searchsorted(ids, pdf["v"].to_numpy(np.int64))
    lab = components(len(ids), u, v)
    root = np.full(int(lab.max(initial=-1)) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(root, lab, ids)
    return nodes.sparkSession.createDataFrame(
        pd.DataFrame({"node": ids, "component": root[lab]}), "node long, component long"
    )


def _check_columns(df: DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{what} DataFrame lacks column(s) {', '.join(missing)}; has {df.columns}")


def resolve_graph_spark(
    nodes: DataFrame,
    edges: DataFrame,
    *,
    limits: Sequence[int | None],
    manual_blocked: Sequence[int] | np.ndarray = (),
    forbidden_pairs: Sequence[tuple[int, int]] = (),
    samples: int = 10,
    local_edges: int = LOCAL_EDGES,
) -> SparkGraphResult:
    """Guard, components and cuts of :func:`resolve_graph`, on Spark DataFrames.

    Parameters
    ----------
    nodes : DataFrame ``node`` (long, unique), ``rank`` (trust rank of the
        identifier type, 0 = most trusted).
    edges : DataFrame ``edge`` (long, unique), ``a``, ``b`` (node ids),
        ``record_edge`` (True: co-occurrence in a record, the guard looks at
        these only; False: probabilistic), ``weight`` (supporting records, the
        cut capacity).
    limits : maximum persons per identifier value, per rank (None: no limit).
    manual_blocked : node ids an operator forbade for linking.
    forbidden_pairs : node id pairs that must not end up in one person (cut on
        the driver, see the module docstring).
    samples : persons listed per blocked value in the report.
    local_edges : component searches over at most this many edges run on the
        driver (see :func:`connected_components_spark`); 0: always distributed.
    """
    from pyspark.sql import functions as F

    _check_columns(nodes, ("node", "rank"), "nodes")
    _check_columns(edges, ("edge", "a", "b", "record_edge", "weight"), "edges")
    spark = nodes.sparkSession
    node_rank = nodes.select(F.col("node").cast("long"), F.col("rank").cast("long"))
    ra = node_rank.select(F.col("node").alias("a"), F.col("rank").alias("rank_a"))
    rb = node_rank.select(F.col("node").alias("b"), F.col("rank").alias("rank_b"))
    raw = (
        edges.select(
            F.col("edge").cast("long"),
            F.col("a").cast("long"),
            F.col("b").cast("long"),
            F.col("record_edge").cast("boolean").alias("rec"),
            F.col("weight").cast("long"),
        )
        .join(ra, "a", "left")
        .join(rb, "b", "left")
    )
    if not raw.where(F.col("rank_a").isNull() | F.col("rank_b").isNull()).isEmpty():
        raise DataError("edges refer to node ids that are not in the nodes DataFrame")
    swap = F.col("rank_a") > F.col("rank_b")  # orient strong -> weak, as resolve_graph does
    e = _cut_lineage(
        raw.select(
            "edge",
            F.when(swap, F.col("b")).otherwise(F.col("a")).alias("ea"),
            F.when(swap, F.col("a")).otherwise(F.col("b")).alias("eb"),
            F.least("rank_a", "rank_b").alias("ra"),
            F.greatest("rank_a", "rank_b").alias("rb"),
            "rec",
            "weight",
        )
    )
    manual = sorted({int(v) for v in np.asarray(manual_blocked, np.int64).ravel()})
    blocked = spark.createDataFrame([(v,) for v in manual], "node long")
    rows = [
        pd.DataFrame(
            {
                "node": np.asarray(manual, np.int64),
                "reason": "forbidden",
                "persons": 0,
                "limit": 0,
                "touched": [[] for _ in manual],
            }
        )
    ]
    max_rank = node_rank.agg(F.max("rank")).first()[0]
    for t in range(1, int(max_rank or 0) + 1):
        limit = limits[t] if t < len(limits) else None
        if limit is None:
            continue
        over = _guard_rank(e, blocked, t, int(limit), samples, local_edges)
        if over is None:
            continue
        rows.append(over)
        add = spark.createDataFrame([(int(v),) for v in over["node"]], "node long")
        blocked = _cut_lineage(blocked.union(add))
    bl = blocked.select("node", F.lit(True).alias("bl"))
    status = (
        e.join(bl.withColumnRenamed("node", "ea"), "ea", "left")
        .join(bl.withColumnRenamed("node", "eb").withColumnRenamed("bl", "bl2"), "eb", "left")
        .select(
            "edge",
            "ea",
            "eb",
            "weight",
            F.when(F.col("bl").isNotNull() | F.col("bl2").isNotNull(), 1)
            .otherwise(0)
            .cast("byte")
            .alias("status"),
        )
    )
    status = _cut_lineage(status)
    active = status.where(F.col("status") == 0)
    comp = connected_components_spark(active, "ea", "eb", local_edges=local_edges)
    comp = (
        node_rank.select("node")
        .join(comp, "node", "left")
        .join(bl, "node", "left")
        .select(
            "node",
            F.when(F.col("bl").isNotNull(), F.lit(-1).cast("long"))
            .otherwise(F.coalesce("component", "node"))
            .alias("component"),
        )
    )
    comp = _cut_lineage(comp)
    comp, status = _forbidden_cuts(comp, status, forbidden_pairs)
    roots = comp.where(F.col("component") >= 0).select("component").distinct()
    numbered = (
        roots.orderBy("component")
        .rdd.map(lambda r: r[0])
        .zipWithIndex()
        .toDF("component long, label long")
    )
    labels = comp.join(numbered, "component", "left").select(
        "node", "component", F.coalesce("label", F.lit(-1).cast("long")).alias("label")
    )
    blocked_df = pd.concat(rows, ignore_index=True)
    return SparkGraphResult(
        labels=labels, edge_status=status.select("edge", "status"), blocked=blocked_df
    )


def _guard_rank(
    e: DataFrame, blocked: DataFrame, t: int, limit: int, samples: int, local_edges: int
) -> pd.DataFrame | None:
    """Values of rank ``t`` touching more than ``limit`` stronger persons (report rows), or None."""
    from pyspark.sql import functions as F

    ok = (
        e.where(F.col("rec"))
        .join(blocked.withColumnRenamed("node", "ea"), "ea", "left_anti")
        .join(blocked.withColumnRenamed("node", "eb"), "eb", "left_anti")
    )
    sel = ok.where((F.col("rb") == t) & (F.col("ra") < t))
    # a value's degree bounds the persons it touches: components only when it could exceed
    cand = sel.groupBy("eb").count().where(F.col("count") > limit).select("eb")
    cand = _cut_lineage(cand)
    if cand.isEmpty():
        return None
    comp = connected_components_spark(
        ok.where(F.col("rb") < t), "ea", "eb", local_edges=local_edges
    )
    pairs = (
        sel.join(cand, "eb")
        .join(comp.withColumnRenamed("node", "ea"), "ea", "left")
        .select("eb", F.coalesce("component", "ea").alias("person"))
        .distinct()
    )
    over = (
        pairs.groupBy("eb")
        .agg(
            F.count("*").alias("persons"),
            F.slice(F.array_sort(F.collect_list("person")), 1, samples).alias("touched"),
        )
        .where(F.col("persons") > limit)
        .orderBy("eb")
        .toPandas()
    )
    if over.empty:
        return None
    return pd.DataFrame(
        {
            "node": over["eb"].to_numpy(np.int64),
            "reason": "guard",
            "persons": over["persons"].to_numpy(np.int64),
            "limit": limit,
            "touched": [[int(v) for v in lst] for lst in over["touched"]],
        }
    )


def _forbidden_cuts(
    comp: DataFrame, status: DataFrame, pairs: Sequence[tuple[int, int]]
) -> tuple[DataFrame, DataFrame]:
    """Cut the components holding both ends of a forbidden pair (on the driver)."""
    from pyspark.sql import functions as F

    pairs = [(int(x), int(y)) for x, y in pairs if int(x) != int(y)]
    if not pairs:
        return comp, status
    spark = comp.sparkSession
    ends = sorted({v for p in pairs for v in p})
    end_df = spark.createDataFrame([(v,) for v in ends], "node long")
    comp_of = dict(comp.join(end_df, "node").select("node", "component").toPandas().values)
    hit = sorted(
        {
            comp_of[x]
            for x, y in pairs
            if comp_of.get(x, -1) >= 0 and comp_of.get(x) == comp_of.get(y, -2)
        }
    )
    if not hit:
        return comp, status
    hit_df = spark.createDataFrame([(int(c),) for c in hit], "component long")
    members = comp.join(hit_df, "component").select("node").toPandas()
    node_ids = np.sort(members["node"].to_numpy(np.int64))
    edges = (
        status.where(F.col("status") == 0)
        .join(comp.withColumnRenamed("node", "ea").join(hit_df, "component"), "ea")
        .select("edge", "ea", "eb", "weight")
        .toPandas()
        .sort_values("edge")
    )
    log.info(
        "forbidden pairs: cutting %d component(s) on the driver (%d nodes, %d edges)",
        len(hit),
        len(node_ids),
        len(edges),
    )
    la = np.searchsorted(node_ids, edges["ea"].to_numpy(np.int64))
    lb = np.searchsorted(node_ids, edges["eb"].to_numpy(np.int64))
    weight = edges["weight"].to_numpy(np.int64)
    m = len(node_ids)
    local_status = np.zeros(len(edges), np.int8)
    labels = components(m, la, lb)
    pos = {int(v): i for i, v in enumerate(node_ids)}
    for x, y in pairs:
        lx, ly = pos.get(x), pos.get(y)
        if lx is None or ly is None or labels[lx] != labels[ly]:
            continue
        cut = _min_cut(labels, la, lb, weight, local_status == 0, lx, ly)
        local_status[cut] = 2
        active = local_status == 0
        labels = components(m, la[active], lb[active])
    # new component id: the smallest node of each local component
    root = np.full(int(labels.max(initial=-1)) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(root, labels, node_ids)
    relabel = spark.createDataFrame(
        pd.DataFrame({"node": node_ids, "new": root[labels]}), "node long, new long"
    )
    comp = _cut_lineage(
        comp.join(relabel, "node", "left").select(
            "node", F.coalesce("new", "component").alias("component")
        )
    )
    cut_ids = edges["edge"].to_numpy(np.int64)[local_status == 2]
    cut_df = spark.createDataFrame([(int(v), True) for v in cut_ids], "edge long, cut boolean")
    status = _cut_lineage(
        status.join(cut_df, "edge", "left").select(
            "edge",
            "ea",
            "eb",
            "weight",
            F.when(F.col("cut").isNotNull(), F.lit(2).cast("byte"))
            .otherwise(F.col("status"))
            .alias("status"),
        )
    )
    return comp, status


def graph_frames(
    spark: Any,
    ranks: np.ndarray,
    edge_a: np.ndarray,
    edge_b: np.ndarray,
    record_edge: np.ndarray,
    weight: np.ndarray,
) -> tuple[DataFrame, DataFrame]:
    """The ``nodes`` and ``edges`` DataFrames of :func:`resolve_graph_spark` from driver arrays."""
    n, m = len(ranks), len(edge_a)
    nodes = spark.createDataFrame(
        pd.DataFrame({"node": np.arange(n, dtype=np.int64), "rank": np.asarray(ranks, np.int64)}),
        "node long, rank long",
    )
    edges = spark.createDataFrame(
        pd.DataFrame(
            {
                "edge": np.arange(m, dtype=np.int64),
                "a": np.asarray(edge_a, np.int64),
                "b": np.asarray(edge_b, np.int64),
                "record_edge": np.asarray(record_edge, bool),
                "weight": np.asarray(weight, np.int64),
            }
        ),
        "edge long, a long, b long, record_edge boolean, weight long",
    )
    return nodes, edges
