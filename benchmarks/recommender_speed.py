"""Recommender speed: ALS training on 10 M interactions, one-user latency, 100 k-user batch.

Synthetic implicit feedback: 1 M users x 100 k items, ~10 interactions per user
(Poisson activity), items drawn from a Zipf(1.0) popularity curve, as in real
shops. Targets (issue E): fit < 5 min on 2 cores; one ``recommend`` call for one
user < 2 ms in-process; recommendations for 100 k users < 60 s.

    python -m benchmarks.recommender_speed                   # full size
    python -m benchmarks.recommender_speed --users 20000 --items 5000 --interactions 200000
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

import models


def synthetic(users: int, items: int, interactions: int, seed: int = 0) -> pd.DataFrame:
    """``interactions`` (user, item) pairs with Poisson user activity and Zipf item popularity."""
    rng = np.random.default_rng(seed)
    activity = rng.poisson(interactions / users, size=users)
    activity = np.maximum(activity, 1)
    user = np.repeat(np.arange(users, dtype=np.int64), activity)[:interactions]
    p = 1.0 / np.arange(1, items + 1)
    item = rng.choice(items, size=len(user), p=p / p.sum())
    item = rng.permutation(items)[item]  # popular items are not the lowest ids
    return pd.DataFrame({"user_id": user, "item_id": item.astype(np.int64)})


def _ms(values: list[float]) -> str:
    a = np.asarray(values) * 1e3
    return f"p50 {np.median(a):.2f} ms, p95 {np.percentile(a, 95):.2f} ms, mean {a.mean():.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=10_000_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--batch-users", type=int, default=100_000)
    ap.add_argument("--single-calls", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores")

    t = time.perf_counter()
    df = synthetic(args.users, args.items, args.interactions)
    print(f"generated {len(df):,} interactions in {time.perf_counter() - t:.1f}s")

    rec = models.make_recommender("als", factors=args.factors, iterations=args.iterations)
    t = time.perf_counter()
    rec.fit(df)
    fit_s = time.perf_counter() - t
    print(
        f"ALS fit ({args.factors} factors, {args.iterations} iterations) on "
        f"{rec.user_items_.nnz:,} distinct pairs, {rec.n_users_:,} users x {rec.n_items_:,} "
        f"items: {fit_s:.1f}s  (target < 300 s)"
    )
    del df

    rng = np.random.default_rng(1)
    ids = rec.user_ids_[rng.integers(0, rec.n_users_, size=args.single_calls)]
    for uid in ids[:50]:  # warm caches (id index, thread pools)
        rec.recommend(uid, n=10)
    lat = []
    for uid in ids:
        t = time.perf_counter()
        rec.recommend(uid, n=10)
        lat.append(time.perf_counter() - t)
    print(f"recommend(one user, n=10): {_ms(lat)}  (target < 2 ms)")

    allowed = rec.item_ids_[rng.choice(rec.n_items_, size=min(5000, rec.n_items_), replace=False)]
    lat_f = []
    for uid in ids[:500]:
        t = time.perf_counter()
        rec.recommend(uid, n=10, items=allowed)
        lat_f.append(time.perf_counter() - t)
    print(f"recommend(one user, n=10, items=5,000 allowed): {_ms(lat_f)}")

    hist = rec.item_ids_[rng.integers(0, rec.n_items_, size=(500, 5))]
    lat_h = []
    for h in hist:
        t = time.perf_counter()
        rec.recommend_for_items(h, n=10)
        lat_h.append(time.perf_counter() - t)
    print(f"recommend_for_items(5 items, n=10, fold-in): {_ms(lat_h)}")

    batch = rec.user_ids_[rng.choice(rec.n_users_, size=args.batch_users, replace=False)]
    t = time.perf_counter()
    out = rec.recommend(batch, n=10)
    batch_s = time.perf_counter() - t
    print(
        f"recommend({args.batch_users:,} users, n=10): {batch_s:.1f}s, {len(out):,} rows  "
        f"(target < 60 s)"
    )


if __name__ == "__main__":
    main()
