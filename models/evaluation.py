"""Offline evaluation of top-n recommendations: metrics, splits and one ``evaluate`` helper.

Protocol (what :func:`evaluate` does, and what every benchmark of CIP reports)
-----------------------------------------------------------------------------
1. Split the interactions with :func:`temporal_split` (train before a date, test
   after it, only users with training history), :func:`random_split_per_user`
   (each user's interactions split by ratio with a seed) or
   :func:`leave_last_out` (each user's last interaction is the test).
2. Fit the model on the train part only.
3. Targets are the distinct (user, item) test pairs. With ``exclude_seen=True``
   (the usual protocol) pairs the user already had in train are removed from the
   targets, and the model excludes train items from its candidates, so a model
   is never rewarded for recommending what the user already has.
4. Users left without any target are skipped (they carry no signal); every other
   test user counts, including users the model cannot personalise (they get
   popular items, as in production).
5. For each user the top ``k`` (backfill included) are compared with the targets:

   * precision@k = hits / k;  recall@k = hits / |targets|;  hit rate = [hits > 0]
   * MAP@k: AP@k = sum_i P@i * rel_i / min(k, |targets|)  (Spark / ``recommenders`` map_at_k)
   * NDCG@k with binary gains: DCG = sum_i rel_i / log2(i + 1), normalised by the
     ideal DCG of min(k, |targets|) hits (Jarvelin & Kekalainen 2002)

   and averaged over users. Catalog coverage = distinct recommended items /
   items in the training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cip.models.recommender import normalize_ids
from cip.profiles.errors import DataError

__all__ = [
    "catalog_coverage",
    "evaluate",
    "hit_rate",
    "leave_last_out",
    "map_at_k",
    "ndcg_at_k",
    "per_user_metrics",
    "precision_at_k",
    "random_split_per_user",
    "recall_at_k",
    "temporal_split",
]

_KEY = ["user_id", "item_id"]


def _ids(*frames: pd.DataFrame) -> list[pd.DataFrame]:
    """``user_id`` / ``item_id`` of each frame normalised to one kind (int or str) so merges match.

    Integral floats become ints (``17850.0`` -> ``17850``); when the frames
    disagree on a column's kind, that column becomes ``str`` in all of them.
    """
    outs = [pd.DataFrame(index=f.index) for f in frames]
    for col in _KEY:
        normed = [normalize_ids(f[col]) for f in frames]
        as_str = len({kind for values, kind in normed if len(values)}) > 1
        for out, (values, kind) in zip(outs, normed, strict=True):
            out[col] = values.astype(str) if as_str or kind == "str" else values
    return outs


def per_user_metrics(
    recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10
) -> pd.DataFrame:
    """Per test user: ``n_targets, hits, precision, recall, ap, ndcg`` at ``k``.

    ``recommendations`` has ``user_id, item_id`` and optionally ``rank`` (else the
    row order per user is the rank); ``truth`` has ``user_id, item_id``.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    r, t = _ids(recommendations, truth)
    t = t.drop_duplicates()
    if t.empty:
        raise DataError("no test interactions to evaluate on")
    if "rank" in recommendations.columns:
        r["rank"] = recommendations["rank"].to_numpy()
    else:
        r["rank"] = r.groupby("user_id").cumcount() + 1
    r = r[(r["rank"] <= k) & r["user_id"].isin(t["user_id"])].drop_duplicates(_KEY)
    r = r.sort_values(["user_id", "rank"], kind="stable")
    r["pos"] = r.groupby("user_id").cumcount() + 1  # 1..k after any gaps
    r = r.merge(t.assign(rel=1.0), on=_KEY, how="left")
    r["rel"] = r["rel"].fillna(0.0)
    r["cum_hits"] = r.groupby("user_id")["rel"].cumsum()
    r["prec_at_i"] = r["cum_hits"] / r["pos"] * r["rel"]
    r["gain"] = r["rel"] / np.log2(r["pos"] + 1.0)
    agg = r.groupby("user_id").agg(
        hits=("rel", "sum"), ap_sum=("prec_at_i", "sum"), dcg=("gain", "sum")
    )
    users = t.groupby("user_id").size().rename("n_targets").to_frame()
    out = users.join(agg, how="left").fillna(0.0)
    m = np.minimum(out["n_targets"].to_numpy(), k).astype(int)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    out["precision"] = out["hits"] / k
    out["recall"] = out["hits"] / out["n_targets"]
    out["ap"] = out["ap_sum"] / m
    out["ndcg"] = out["dcg"] / ideal[m - 1]
    return out[["n_targets", "hits", "precision", "recall", "ap", "ndcg"]]


def precision_at_k(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10) -> float:
    """Mean precision@k over test users (hits / k)."""
    return float(per_user_metrics(recommendations, truth, k)["precision"].mean())


def recall_at_k(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10) -> float:
    """Mean recall@k over test users (hits / number of targets)."""
    return float(per_user_metrics(recommendations, truth, k)["recall"].mean())


def map_at_k(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10) -> float:
    """Mean average precision@k (AP normalised by min(k, number of targets))."""
    return float(per_user_metrics(recommendations, truth, k)["ap"].mean())


def ndcg_at_k(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10) -> float:
    """Mean NDCG@k with binary relevance and log2 discounts."""
    return float(per_user_metrics(recommendations, truth, k)["ndcg"].mean())


def hit_rate(recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10) -> float:
    """Share of test users with at least one target in their top k."""
    return float((per_user_metrics(recommendations, truth, k)["hits"] > 0).mean())


def catalog_coverage(recommendations: pd.DataFrame, catalog: Any, k: int = 10) -> float:
    """Distinct items in the top-k lists / catalog size (``catalog``: ids or a count)."""
    size = int(catalog) if np.isscalar(catalog) else len(pd.unique(pd.Series(catalog)))
    if size <= 0:
        raise ValueError("catalog must be non-empty")
    r = recommendations
    if "rank" in r.columns:
        r = r[r["rank"] <= k]
    return float(r["item_id"].nunique() / size)


# -- splits ---------------------------------------------------------------------
def _need(frame: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"interactions lack the column(s) {', '.join(missing)}")


def temporal_split(
    interactions: pd.DataFrame,
    split: Any,
    end: Any = None,
    known_users_only: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time split: train ``ts < split``, test ``split <= ts < end``.

    With ``known_users_only`` the test keeps only users with training history
    (what a recommender for known customers is judged on).
    """
    _need(interactions, ["user_id", "item_id", "ts"])
    ts = pd.to_datetime(interactions["ts"])
    split_ts = pd.Timestamp(split)
    train = interactions[ts < split_ts]
    in_test = ts >= split_ts
    if end is not None:
        in_test &= ts < pd.Timestamp(end)
    test = interactions[in_test]
    if known_users_only:
        test = test[test["user_id"].isin(train["user_id"])]
    if train.empty or test.empty:
        raise DataError(f"temporal split at {split_ts} leaves an empty train or test part")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def random_split_per_user(
    interactions: pd.DataFrame,
    test_size: float = 0.25,
    random_state: int = 0,
    min_interactions: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user stratified random split: ``round(test_size * n_u)`` rows of each user go to test.

    Users with fewer than ``min_interactions`` rows stay wholly in train.
    """
    _need(interactions, ["user_id", "item_id"])
    if not 0 < test_size < 1:
        raise ValueError("test_size must be within (0, 1)")
    rng = np.random.default_rng(random_state)
    df = interactions.reset_index(drop=True)
    order = np.lexsort((rng.random(len(df)), pd.factorize(df["user_id"])[0]))
    shuffled = df.iloc[order]
    pos = shuffled.groupby("user_id", sort=False).cumcount().to_numpy()
    n = shuffled.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    n_test = np.where(n >= min_interactions, n - np.round(n * (1 - test_size)), 0)
    is_test = pos < n_test
    return (
        shuffled[~is_test].reset_index(drop=True),
        shuffled[is_test].reset_index(drop=True),
    )


def leave_last_out(interactions: pd.DataFrame, n: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last ``n`` interactions by ``ts`` form the test (users with more than ``n``)."""
    _need(interactions, ["user_id", "item_id", "ts"])
    df = interactions.reset_index(drop=True)
    df = df.iloc[np.lexsort((np.arange(len(df)), pd.to_datetime(df["ts"]).to_numpy()))]
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    size = df.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    is_test = (from_end < n) & (size > n)
    return df[~is_test].reset_index(drop=True), df[is_test].reset_index(drop=True)


# -- one call -------------------------------------------------------------------
def evaluate(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    exclude_seen: bool = True,
    items: Any = None,
) -> dict[str, float]:
    """Evaluate a fitted recommender on ``test`` following the module's protocol.

    Returns ``precision, recall, map, ndcg, hit_rate`` (all at ``k``), ``coverage``
    and ``users`` (number of users evaluated).
    """
    truth, seen = _ids(test, train)
    truth = truth.drop_duplicates()
    if exclude_seen:
        seen = seen.drop_duplicates()
        truth = truth.merge(seen, on=_KEY, how="left", indicator=True)
        truth = truth[truth["_merge"] == "left_only"][_KEY]
    if truth.empty:
        raise DataError("no test interactions left to evaluate (all were seen in train)")
    users = truth["user_id"].unique()
    recs = model.recommend(users, n=k, exclude_seen=exclude_seen, items=items)
    per_user = per_user_metrics(recs, truth, k)
    return {
        "precision": float(per_user["precision"].mean()),
        "recall": float(per_user["recall"].mean()),
        "map": float(per_user["ap"].mean()),
        "ndcg": float(per_user["ndcg"].mean()),
        "hit_rate": float((per_user["hits"] > 0).mean()),
        "coverage": catalog_coverage(recs, train["item_id"].nunique(), k),
        "users": float(len(per_user)),
    }
