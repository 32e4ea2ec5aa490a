"""Benchmark: ``cip score`` core on N profiles (default 1,000,000) with two champion models.

Trains a churn and a propensity model on a small synthetic training frame,
builds a synthetic feature frame of N profiles (the columns of
``features.build_features``), then times what ``cip score`` does after the
feature build: both models' calibrated probabilities, TreeSHAP reason codes,
the JSON reasons column, and the atomic write into a DuckDB ``scores`` table.

Run: ``python -m benchmarks.score_speed [--profiles N] [--threads T] [--trees K]
[--reasons path|shap]`` (``--trees K`` fixes the models at K trees, no early stopping).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date

import numpy as np
import pandas as pd
from cip.models._run import feature_columns
from cip.models._synthetic import synthetic_training_frame
from cip.models.estimators import ChurnModel, PropensityModel
from cip.models.scoring import score_frame, write_scores
from cip.profiles.store import open_store


def _widen(df, k: int, seed: int):
    """Add ``k`` numeric noise columns (with 10% missing) so the model is as wide as a real one."""
    rng = np.random.default_rng(seed)
    noise = rng.gamma(1.0, 10.0, (len(df), k))
    noise[rng.random(noise.shape) < 0.1] = np.nan
    extra = pd.DataFrame(noise, columns=[f"extra_{i:02d}" for i in range(k)], index=df.index)
    out = pd.concat([df, extra], axis=1)
    out.attrs = df.attrs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--trees", type=int, default=None)
    ap.add_argument("--reasons", choices=("path", "shap"), default="path")
    ap.add_argument(
        "--extra-features", type=int, default=26, help="noise columns added (real sets are wide)"
    )
    args = ap.parse_args()
    fixed = (
        {} if args.trees is None else {"n_estimators": args.trees, "early_stopping_rounds": None}
    )

    train = _widen(synthetic_training_frame(20_000, seed=1), args.extra_features, 1)
    feats = feature_columns(train)
    X = train[feats].astype(np.float64)
    t = time.perf_counter()
    churn = train["active"] == 1
    champions = {
        "cip-churn": (
            "1",
            ChurnModel(random_state=0, **fixed).fit(
                X[churn], train.loc[churn, "churn"].astype(int), snapshot=train.loc[churn, "as_of"]
            ),
        ),
        "cip-propensity": (
            "1",
            PropensityModel(random_state=0, **fixed).fit(
                X, train["purchase"], snapshot=train["as_of"]
            ),
        ),
    }
    trees = {k: m.best_iteration_ for k, (_, m) in champions.items()}
    print(
        f"trained 2 models on {len(train):,} rows in {time.perf_counter() - t:.1f} s; trees {trees}"
    )
    for _, m in champions.values():
        m.set_params(n_jobs=args.threads)

    t = time.perf_counter()
    frame = _widen(
        synthetic_training_frame(args.profiles, as_ofs=[date(2024, 6, 1)], seed=2, labels=False),
        args.extra_features,
        2,
    )
    print(
        f"synthetic feature frame: {len(frame):,} profiles x {len(feats)} features "
        f"({time.perf_counter() - t:.1f} s, not part of the measurement)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("duckdb", path=f"{tmp}/bench.duckdb")
        t0 = time.perf_counter()
        scores = score_frame(frame, champions, date(2024, 6, 1), top=3, reasons=args.reasons)
        t1 = time.perf_counter()
        write_scores(store, scores, date(2024, 6, 1))
        t2 = time.perf_counter()
        n = store.count("scores")
        store.close()
    print(f"score (probabilities + {args.reasons} reasons): {t1 - t0:.1f} s")
    print(f"write scores table ({n:,} rows): {t2 - t1:.1f} s")
    print(f"total: {t2 - t0:.1f} s for {args.profiles:,} profiles, {args.threads} threads")


if __name__ == "__main__":
    main()
