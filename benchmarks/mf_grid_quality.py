"""Ranking quality of ALS / BPR with the factors on the exact-score grid vs as fitted.

The matrix-factorisation recommenders round their factors to a power-of-two grid
(``models.recommender._mf.on_grid``) so that scores are exact in any row blocking.
This fits each model once with the rounding switched off, evaluates it, rounds the
same factors and evaluates again: the only difference is the rounding. Online
Retail (temporal split at 2011-09-01, seen items excluded) and MovieLens 100K
(per-user 75/25, seed 42), top 10, the protocols of ``benchmarks.recommender_quality``.
Also counts the users whose top 10 changed at all (order included).

    python -m benchmarks.mf_grid_quality [--only retail|ml100k] [--ml100k FILE]
"""

from __future__ import annotations

import argparse
import logging
import time
from unittest import mock

import cip.models as models
import numpy as np
import pandas as pd
from cip.models import evaluation as ev
from cip.models.recommender import _mf

from benchmarks._util import load_average, machine, stamp
from benchmarks.recommender_data import movielens_100k, online_retail

#: (label, algorithm, params): defaults, and the ALS the personal block fits by default.
MODELS = (
    ("als (defaults)", "als", {}),
    ("bpr (defaults)", "bpr", {}),
)


def _fit_unrounded(algo: str, params: dict, train: pd.DataFrame):
    """The model as ``implicit`` fits it: the grid rounding switched off for this fit."""
    with mock.patch.object(_mf._MatrixFactorization, "_to_grid", lambda self: None):
        return models.make_recommender(algo, **params).fit(train)


def compare(name: str, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Print the metrics of each model before and after the rounding, and the changed lists."""
    users = test["user_id"].unique()
    for label, algo, params in MODELS:
        t = time.perf_counter()
        model = _fit_unrounded(algo, params, train)
        raw = ev.evaluate(model, train, test, k=10)
        raw_recs = model.recommend(users, n=10)
        model._to_grid()
        assert np.array_equal(_mf.on_grid(model.user_factors_), model.user_factors_)
        grid = ev.evaluate(model, train, test, k=10)
        grid_recs = model.recommend(users, n=10)
        a = raw_recs.groupby("user_id", sort=True)["item_id"].agg(tuple)
        b = grid_recs.groupby("user_id", sort=True)["item_id"].agg(tuple)
        changed = int((a != b.reindex(a.index)).sum())
        for key in ("ndcg", "recall", "map", "hit_rate"):
            print(
                f"| {name} | {label} | {key}@10 | {raw[key]:.6f} | {grid[key]:.6f} | "
                f"{grid[key] - raw[key]:+.6f} |"
            )
        print(
            f"| {name} | {label} | users whose top 10 changed | {changed} of {len(a)} | "
            f"| ({time.perf_counter() - t:.0f} s) |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("retail", "ml100k"))
    ap.add_argument("--ml100k", help="ml-100k.inter file or the recbole wheel holding it")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# mf_grid_quality, {stamp()}, {machine()}, {load_average()}")
    print(
        "| data | model | metric | as fitted | on the grid | difference |\n|---|---|---|---|---|---|"
    )
    if args.only in (None, "retail"):
        train, test = ev.temporal_split(online_retail(), "2011-09-01", "2011-12-10")
        compare("online_retail", train, test)
    if args.only in (None, "ml100k"):
        df = movielens_100k(args.ml100k)
        train, test = ev.random_split_per_user(df, test_size=0.25, random_state=42)
        compare("ml100k", train, test)
    print(f"# at the end {load_average()}")


if __name__ == "__main__":
    main()
