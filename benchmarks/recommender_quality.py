"""Recommender quality on real data: Online Retail (temporal split) and MovieLens 100K (75/25).

Online Retail: train on purchases before 2011-09-01, test on what customers with
training history bought from 2011-09-01 to 2011-12-09; items a customer already
bought are excluded from candidates and targets (protocol in
``models.evaluation``); an extra row shows repeat purchases allowed.

MovieLens 100K: every rating is an interaction; per-user stratified random
75/25 split (seed 42), top 10, seen items excluded -- the protocol of the
Microsoft Recommenders benchmark table (ML-100K, 75/25 stratified, k=10), whose
published numbers are printed for comparison. ``--ml100k-weights rating`` hands
the star rating to the models as the interaction ``weight`` (the split, the
targets and the binary NDCG stay the same); by default every rating weighs 1.

For each algorithm: its defaults, then Optuna-tuned on a validation split carved
from the training part only; the "champion" is what ``algorithm="auto"`` selects
with its default budget (a joint search, finalists re-scored on further
validation splits), never chosen on test.

    python -m benchmarks.recommender_quality [--trials 15] [--bpr-minutes 3] [--only retail|ml100k]
        [--ml100k-weights none|rating] [--seed 42]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import cip.models as models
import numpy as np
import pandas as pd
from cip.models import evaluation as ev

from benchmarks.recommender_data import movielens_100k, online_retail

ALGOS = ("popular", "als", "bpr", "itemknn", "ease")
#: Microsoft Recommenders README, "Algorithm Comparison" (ML-100K, 75/25 stratified split, k=10).
PUBLISHED_ML100K = {
    "BiVAE (cornac)": (0.146126, 0.475077, 0.411771, 0.219145),
    "BPR (cornac)": (0.132478, 0.441997, 0.388229, 0.212522),
    "LightGCN": (0.088526, 0.419846, 0.379626, 0.144336),
    "NCF": (0.107720, 0.396118, 0.347296, 0.180775),
    "SAR": (0.110591, 0.382461, 0.330753, 0.176385),
}


def _metrics(model: Any, train: pd.DataFrame, test: pd.DataFrame, exclude_seen: bool = True):
    m = ev.evaluate(model, train, test, k=10, exclude_seen=exclude_seen)
    # the Recommenders table's "MAP" divides AP by the number of targets, not min(k, targets)
    truth = test[["user_id", "item_id"]].drop_duplicates()
    if exclude_seen:
        seen = train[["user_id", "item_id"]].drop_duplicates()
        truth = truth.merge(seen, how="left", indicator=True)
        truth = truth[truth["_merge"] == "left_only"][["user_id", "item_id"]]
    recs = model.recommend(truth["user_id"].unique(), n=10, exclude_seen=exclude_seen)
    per = ev.per_user_metrics(recs, truth, 10)
    m["map_recommenders"] = float(
        (per["ap"] * np.minimum(per["n_targets"], 10) / per["n_targets"]).mean()
    )
    return m


def run(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    validation: str,
    trials: int,
    bpr_minutes: float,
) -> list[dict[str, Any]]:
    rows = []
    for algo in ALGOS:
        t = time.perf_counter()
        model = models.make_recommender(algo).fit(train)
        rows.append(
            {
                "model": f"{algo} (defaults)",
                "fit_s": time.perf_counter() - t,
                **_metrics(model, train, test),
            }
        )
        print(_fmt(rows[-1]), flush=True)
        if algo == "popular":
            popular = model
            continue
        t = time.perf_counter()
        budget = {"minutes": bpr_minutes} if algo == "bpr" else {"trials": trials}
        model = models.tune_recommender(
            train, algorithm=algo, validation=validation, random_state=0, **budget
        )
        info = model.extra_["tuning"]
        rows.append(
            {
                "model": f"{algo} (tuned, {info['trials']} trials)",
                "fit_s": time.perf_counter() - t,
                "params": info["params"],
                "validation_ndcg": info["validation_ndcg"],
                **_metrics(model, train, test),
            }
        )
        print(_fmt(rows[-1]), " params:", info["params"], flush=True)
    t = time.perf_counter()
    best_model = models.tune_recommender(
        train, algorithm="auto", validation=validation, random_state=0
    )
    info = best_model.extra_["tuning"]
    best_val = info["selection_ndcg"]
    champ = {
        "model": f"champion = auto: {info['algorithm']} ({info['trials']} trials)",
        "fit_s": time.perf_counter() - t,
        "params": info["params"],
        "validation_ndcg": info["validation_ndcg"],
        **_metrics(best_model, train, test),
    }
    rows.append(champ)
    print(_fmt(champ), " params:", info["params"], flush=True)
    pop_ndcg = rows[0]["ndcg"]
    print(
        f"\n[{name}] champion {info['algorithm']} (validation NDCG, mean of splits {best_val:.4f}): "
        f"test NDCG@10 {champ['ndcg']:.4f} = {champ['ndcg'] / pop_ndcg:.2f}x popularity "
        f"({pop_ndcg:.4f})"
    )
    if name == "online_retail":
        for label, model in (("popular", popular), ("champion", best_model)):
            r = {
                "model": f"{label}, repeat purchases allowed",
                **_metrics(model, train, test, exclude_seen=False),
            }
            rows.append(r)
            print(_fmt(r))
    return rows


def _fmt(r: dict[str, Any]) -> str:
    return (
        f"| {r['model']} | {r['ndcg']:.4f} | {r['recall']:.4f} | {r['map']:.4f} | "
        f"{r['precision']:.4f} | {r['hit_rate']:.4f} | {r['coverage']:.4f} | "
        f"{r['map_recommenders']:.4f} | {r.get('fit_s', float('nan')):.1f} |"
    )


HEADER = (
    "| model | NDCG@10 | recall@10 | MAP@10 | precision@10 | hit rate | coverage | "
    "MAP (Recommenders def.) | fit+tune s |\n|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--bpr-minutes", type=float, default=3.0)
    ap.add_argument("--only", choices=("retail", "ml100k"))
    ap.add_argument("--ml100k", help="ml-100k.inter file or the recbole wheel holding it")
    ap.add_argument(
        "--ml100k-weights",
        choices=("none", "rating"),
        default="none",
        help="rating: the star rating is each interaction's weight (default: every rating weighs 1)",
    )
    ap.add_argument("--seed", type=int, default=42, help="seed of the ML-100K 75/25 split")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.only in (None, "retail"):
        df = online_retail()
        train, test = ev.temporal_split(df, "2011-09-01", "2011-12-10")
        print(
            f"Online Retail: {len(df):,} purchase lines, {df.user_id.nunique():,} customers, "
            f"{df.item_id.nunique():,} items; train {len(train):,} lines before 2011-09-01, "
            f"test {len(test):,} lines of {test.user_id.nunique():,} known customers\n{HEADER}"
        )
        run("online_retail", train, test, "temporal", args.trials, args.bpr_minutes)
    if args.only in (None, "ml100k"):
        df = movielens_100k(args.ml100k)
        if args.ml100k_weights == "rating":
            df = df.assign(weight=df["rating"].astype(float))
        train, test = ev.random_split_per_user(df, test_size=0.25, random_state=args.seed)
        print(
            f"\nMovieLens 100K (split seed {args.seed}, weights: {args.ml100k_weights}): "
            f"{len(df):,} ratings as implicit feedback, "
            f"{df.user_id.nunique()} users x {df.item_id.nunique()} items; "
            f"train {len(train):,} / test {len(test):,}\n{HEADER}"
        )
        run("ml100k", train, test, "random", args.trials, args.bpr_minutes)
        print(
            "\nPublished (Microsoft Recommenders README, ML-100K 75/25, k=10): "
            "MAP | nDCG@10 | precision@10 | recall@10"
        )
        for k, v in PUBLISHED_ML100K.items():
            print(f"| {k} | " + " | ".join(f"{x:.4f}" for x in v) + " |")


if __name__ == "__main__":
    main()
