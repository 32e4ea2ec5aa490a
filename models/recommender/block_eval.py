"""Offline evaluation of recommendation blocks on a time split, one protocol per block.

Every protocol fits on order lines strictly before ``split`` and judges on what
happened from ``split`` to ``end``; hyperparameters are chosen by the caller on
a validation split carved from the training period (:func:`validation_split`),
never on the test period. Metrics at ``k`` follow :mod:`models.evaluation`
(binary relevance; recall = hits / targets; nDCG normalised by the ideal DCG of
``min(k, targets)`` hits; hit rate = share of queries with a hit).

* :func:`eval_buy_again` (next basket): each person with training purchases and
  a test order; the target is their **first** order from ``split`` (all its
  items); the request is made at that order's time with the history before
  ``split``. Baseline :class:`TopFrequency` (P-TopFreq: orders per item, ties by
  recency). Both fill with the same popular fallback.
* :func:`eval_bought_together` (leave one out): test orders with 2+ distinct
  items known before ``split``; one item per order (seeded) is hidden, the
  others are the context (an anonymous cart); the hidden item is the target.
  Baseline: ``measure="count"`` (raw co-occurrence).
* :func:`eval_cold_similar` (cold start): a seeded share of the items sold both
  before and after ``split`` become cold: all their training lines are removed
  before fitting; per cold item, the targets are the items bought with it in
  test orders. Baseline: ``popular`` in the item's category.
* :func:`eval_personal`: known customers' test purchases of items they had not
  bought before (``exclude_purchased``); baseline: the ``popular`` block.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from cip.models.evaluation import per_user_metrics
from cip.models.recommender.blocks import BuyAgainBlock, Queries, Request, fit_blocks
from cip.profiles.errors import DataError

__all__ = [
    "PROTOCOLS",
    "TopFrequency",
    "default_split",
    "eval_bought_together",
    "eval_buy_again",
    "eval_cold_similar",
    "eval_personal",
    "evaluate_blocks",
    "evaluation_figure",
    "grid_search",
    "split_lines",
    "validation_split",
]

log = logging.getLogger(__name__)


class TopFrequency(BuyAgainBlock):
    """P-TopFreq baseline: the person's items by number of orders, ties by the latest purchase."""

    name = "buy_again"

    def __init__(self) -> None:
        super().__init__(half_life_days=None, timing_weight=0.0, rate_weight=0.0)

    @classmethod
    def _param_names(cls) -> list[str]:
        return []

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """One request: the order counts with the same tie-break as :meth:`scores`."""
        col, s = super().candidates(r)
        if len(col):
            a, b = self.last_.indptr[r.row], self.last_.indptr[r.row + 1]
            s = s + 0.5 / (1.0 + self.last_.data[a:b])  # same layout as freq_
        return col, s

    def scores(self, q: Queries) -> np.ndarray:
        s = super().scores(q)  # = order counts (integers >= 1)
        known = np.flatnonzero(q.rows >= 0)
        last = self.last_[q.rows[known]].tocoo()
        s[known[last.row], last.col] += 0.5 / (1.0 + last.data)  # < 1: breaks ties only
        return s


def split_lines(
    lines: pd.DataFrame, split: Any, end: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train: ts < split, test: split <= ts < end)``."""
    ts = pd.to_datetime(lines["ts"])
    s = pd.Timestamp(split)
    test = (ts >= s) & (ts < pd.Timestamp(end)) if end is not None else ts >= s
    train, test_df = lines[ts < s], lines[test]
    if train.empty or test_df.empty:
        raise DataError(f"split at {s} leaves an empty train or test part")
    return train.reset_index(drop=True), test_df.reset_index(drop=True)


def validation_split(train: pd.DataFrame, months: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last ``months`` of the training period as validation, the rest as its training part."""
    cut = pd.to_datetime(train["ts"]).max().normalize() - pd.DateOffset(months=months)
    return split_lines(train, cut)


def _metrics(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> dict[str, float]:
    per = per_user_metrics(recs[["user_id", "item_id", "rank"]], truth, k)
    return {
        "recall": float(per["recall"].mean()),
        "ndcg": float(per["ndcg"].mean()),
        "hit_rate": float((per["hits"] > 0).mean()),
        "queries": float(len(per)),
    }


def eval_buy_again(
    train: pd.DataFrame, test: pd.DataFrame, params: dict[str, Any] | None, k: int = 10
) -> dict[str, float]:
    """Next-basket recall / nDCG at ``k`` of ``buy_again(**params)``; ``None``: P-TopFreq."""
    block = TopFrequency() if params is None else BuyAgainBlock(**params)
    split = pd.to_datetime(test["ts"]).min()
    bs = fit_blocks(train, as_of=split, blocks={"buy_again": block})
    known = test[test["user_id"].astype(str).isin(bs.history.users)]
    first = known.sort_values(["ts", "order_id"], kind="stable").drop_duplicates("user_id")
    truth = known.merge(first[["user_id", "order_id"]], on=["user_id", "order_id"])
    truth = truth[["user_id", "item_id"]].drop_duplicates()
    users = first["user_id"].to_numpy()
    at = first["ts"].to_numpy()
    frames = [
        bs.recommend_many("buy_again", users[s : s + 512], k=k, at=at[s : s + 512])
        for s in range(0, len(users), 512)
    ]
    return _metrics(pd.concat(frames, ignore_index=True), truth, k)


def _loo(train: pd.DataFrame, test: pd.DataFrame, seed: int, max_queries: int | None):
    """Test orders with 2+ distinct known items: (order ids, contexts, hidden targets)."""
    known_items = set(train["item_id"].astype(str))
    t = test.assign(item_id=test["item_id"].astype(str))
    t = t[t["item_id"].isin(known_items)].drop_duplicates(["order_id", "item_id"])
    size = t.groupby("order_id")["item_id"].transform("size")
    t = t[size >= 2]
    orders = np.sort(t["order_id"].unique())
    rng = np.random.default_rng(seed)
    if max_queries is not None and len(orders) > max_queries:
        orders = np.sort(rng.choice(orders, max_queries, replace=False))
    t = t[t["order_id"].isin(orders)].sort_values(["order_id"], kind="stable")
    t = t.assign(r=rng.random(len(t)))
    hidden = t.loc[t.groupby("order_id")["r"].idxmin(), ["order_id", "item_id"]]
    ctx = t.drop(index=hidden.index).groupby("order_id")["item_id"].agg(list)
    ctx = ctx.reindex(hidden["order_id"].to_numpy())
    return hidden["order_id"].to_numpy(), list(ctx.to_numpy()), hidden


def eval_bought_together(
    train: pd.DataFrame,
    test: pd.DataFrame,
    params: dict[str, Any],
    k: int = 10,
    seed: int = 0,
    max_queries: int | None = 5000,
) -> dict[str, float]:
    """Leave-one-out hit rate / nDCG at ``k`` of ``bought_together(**params)`` on test orders."""
    split = pd.to_datetime(test["ts"]).min()
    bs = fit_blocks(train, as_of=split, blocks={"bought_together": params})
    orders, contexts, hidden = _loo(train, test, seed, max_queries)
    carts = [f"cart:{o}" for o in orders]  # anonymous carts: ids no person has
    recs = bs.recommend_many("bought_together", carts, k=k, items=contexts)
    truth = pd.DataFrame({"user_id": carts, "item_id": hidden["item_id"].to_numpy()})
    return _metrics(recs, truth, k)


def cold_items(
    train: pd.DataFrame, test: pd.DataFrame, share: float, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Seeded ``share`` of items sold before and after the split, and their test partners."""
    sold = np.intersect1d(
        train["item_id"].astype(str).unique(), test["item_id"].astype(str).unique()
    )
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(sold, max(1, int(share * len(sold))), replace=False))
    t = test.assign(item_id=test["item_id"].astype(str))[["order_id", "item_id"]].drop_duplicates()
    anchor = t[t["item_id"].isin(cold)].rename(columns={"item_id": "user_id"})
    pairs = anchor.merge(t, on="order_id")
    truth = pairs[pairs["user_id"] != pairs["item_id"]][["user_id", "item_id"]].drop_duplicates()
    return np.sort(truth["user_id"].unique()), truth


def eval_cold_similar(
    train: pd.DataFrame,
    test: pd.DataFrame,
    products: pd.DataFrame,
    params: dict[str, Any] | None,
    k: int = 10,
    share: float = 0.2,
    seed: int = 0,
    hide: bool = True,
) -> dict[str, float]:
    """Cold-item hit rate at ``k``: ``similar(**params)``, or popular-in-category for ``None``.

    ``hide=False`` keeps the anchor items' training lines (the warm-item variant,
    where the CF part of the blend has something to say).
    """
    cold, truth = cold_items(train, test, share, seed)
    warm_train = train[~train["item_id"].astype(str).isin(cold)] if hide else train
    split = pd.to_datetime(test["ts"]).min()
    name = "popular" if params is None else "similar"
    bs = fit_blocks(warm_train, products, as_of=split, blocks={name: params or {}})
    recs = bs.recommend_many(name, list(cold), k=k, items=[[c] for c in cold])
    return _metrics(recs, truth, k)


def eval_personal(
    train: pd.DataFrame, test: pd.DataFrame, block: str, params: dict[str, Any], k: int = 10
) -> dict[str, float]:
    """Known customers' new items after the split: ``personal`` or ``popular`` with ``exclude_purchased``."""
    split = pd.to_datetime(test["ts"]).min()
    bs = fit_blocks(train, as_of=split, blocks={block: params})
    seen = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    t = test[["user_id", "item_id"]].astype(str).drop_duplicates()
    t = t[t["user_id"].isin(bs.history.users)]
    t = t.merge(seen, how="left", indicator=True)
    truth = t[t["_merge"] == "left_only"][["user_id", "item_id"]]
    users = truth["user_id"].unique()
    recs = bs.recommend_many(block, users, k=k, rules={"exclude_purchased": True})
    return _metrics(recs, truth, k)


def grid_search(
    evaluate: Callable[[dict[str, Any]], dict[str, float]],
    grid: dict[str, list[Any]],
    metric: str = "ndcg",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every combination of ``grid`` scored by ``evaluate(params)``; returns (best params, table)."""
    rows = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        m = evaluate(params)
        rows.append({**params, **m})
        log.info("grid %s -> %s %.4f", params, metric, m[metric])
    table = pd.DataFrame(rows)
    best = table.iloc[int(table[metric].to_numpy().argmax())]
    return {k: _plain(best[k]) for k in keys}, table


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


#: Block kinds with an offline protocol: kind -> (protocol, baseline's name).
PROTOCOLS: dict[str, tuple[str, str]] = {
    "buy_again": ("next basket (first test order)", "P-TopFreq"),
    "bought_together": ("leave one out in test orders", "co-occurrence count"),
    "similar": ("cold items (training lines hidden)", "popular in category"),
    "personal": ("new items of known customers", "popular"),
}
METRICS = ("recall", "ndcg", "hit_rate")


def default_split(lines: pd.DataFrame, test_share: float = 0.2) -> pd.Timestamp:
    """The day that leaves the last ``test_share`` of the data's time span as the test period."""
    ts = pd.to_datetime(lines["ts"])
    if ts.empty:
        raise DataError("no order lines to split")
    lo, hi = ts.min(), ts.max()
    return (lo + (hi - lo) * (1.0 - test_share)).normalize()


def _pair(
    kind: str,
    params: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    products: pd.DataFrame | None,
    k: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(block metrics, baseline metrics)`` of one block kind on its protocol."""
    if kind == "buy_again":
        return eval_buy_again(train, test, params, k), eval_buy_again(train, test, None, k)
    if kind == "bought_together":
        return (
            eval_bought_together(train, test, params, k, seed),
            eval_bought_together(train, test, {"measure": "count"}, k, seed),
        )
    if kind == "similar":
        return (
            eval_cold_similar(train, test, products, params, k, seed=seed),
            eval_cold_similar(train, test, products, None, k, seed=seed),
        )
    return (
        eval_personal(train, test, "personal", params, k),
        eval_personal(train, test, "popular", {}, k),
    )


def evaluate_blocks(
    lines: pd.DataFrame,
    products: pd.DataFrame | None,
    blocks: dict[str, dict[str, Any]],
    split: Any = None,
    end: Any = None,
    k: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Each named block against its baseline on a time split at ``split`` (``end`` excluded).

    Args:
        lines: order lines ``user_id, order_id, item_id, ts``.
        products: the catalogue (``similar`` needs it: its protocol hides items' lines).
        blocks: block name -> ``{"kind": ..., "params": {...}}`` (as in ``cip.yaml``);
            kinds without a protocol (:data:`PROTOCOLS`) get a row with ``skipped``.
        split: start of the test period (default :func:`default_split`).
        end: end of the test period (default: after the last line).
        k: the cut-off of the metrics.
        seed: the seed of the sampled queries and hidden items.

    Returns:
        One row per block: ``block, kind, protocol, baseline, queries``, the
        block's ``recall, ndcg, hit_rate`` at ``k``, the baseline's
        (``baseline_recall`` ...), and ``skipped`` (the reason, or ``None``).
        The blocks' parameters are taken as given: tune them on a validation
        split carved from the training period (:func:`validation_split`).
    """
    cut = pd.Timestamp(split) if split is not None else default_split(lines)
    train, test = split_lines(lines, cut, end)
    rows = []
    for name, spec in blocks.items():
        kind = spec.get("kind", name)
        row: dict[str, Any] = {"block": name, "kind": kind, "skipped": None}
        row.update({m: np.nan for m in METRICS})
        row.update({f"baseline_{m}": np.nan for m in METRICS})
        row["queries"] = 0
        if kind not in PROTOCOLS:
            row.update(protocol="", baseline="", skipped=f"no offline protocol for {kind}")
            rows.append(row)
            continue
        row["protocol"], row["baseline"] = PROTOCOLS[kind]
        if kind == "similar" and (products is None or products.empty):
            row["skipped"] = "no products table (the cold-item protocol needs the catalogue)"
            rows.append(row)
            continue
        try:
            mine, base = _pair(kind, dict(spec.get("params") or {}), train, test, products, k, seed)
        except (DataError, ValueError) as exc:  # e.g. no test order of a known customer
            row["skipped"] = f"cannot evaluate: {exc}"
            rows.append(row)
            continue
        if not mine["queries"]:
            row["skipped"] = "no test queries for this protocol"
        else:
            row.update({m: mine[m] for m in METRICS})
            row.update({f"baseline_{m}": base[m] for m in METRICS})
            row["queries"] = int(mine["queries"])
        log.info("block %s (%s): %s vs baseline %s", name, kind, mine, base)
        rows.append(row)
    cols = ["block", "kind", "protocol", "baseline", "queries", *METRICS]
    cols += [f"baseline_{m}" for m in METRICS] + ["skipped"]
    table = pd.DataFrame(rows, columns=cols)
    table.attrs.update(split=str(cut.date()), k=k, train_lines=len(train), test_lines=len(test))
    return table


def evaluation_figure(table: pd.DataFrame, k: int = 10) -> Any:
    """Bars of every evaluated block next to its baseline, one panel per metric."""
    from matplotlib.figure import Figure

    done = table[table["skipped"].isna()]
    fig = Figure(figsize=(4.0 * len(METRICS), 4.0), dpi=100, layout="tight")
    x = np.arange(len(done))
    for i, m in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        ax.bar(x - 0.2, done[m].to_numpy(float), 0.4, label="block")
        ax.bar(x + 0.2, done[f"baseline_{m}"].to_numpy(float), 0.4, label="baseline")
        ax.set_xticks(x, done["block"].tolist(), rotation=30, ha="right")
        ax.set_title(f"{m.replace('_', ' ')}@{k}")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            ax.legend()
    return fig
