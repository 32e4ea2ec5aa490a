"""Benchmark: isotonic ties and the refit, side by side on the Online Retail holdout (issue K).

On the training frame cached by :mod:`benchmarks.k_retail_ceiling` (as of 2011-09-09,
horizon 90 days; run that first), the estimator of ``cip train`` (ChurnModel /
PropensityModel, default parameters) is fitted once without and once with ``refit=True``;
for each, the holdout ROC AUC of the raw booster score, of the isotonic step function
alone (``np.interp`` over the calibrator's steps: the probabilities before the tie-break)
and of :func:`models.calibration.apply_calibrator` (steps tie-broken by the raw score),
the number of distinct probabilities, ECE and Brier score.

Run: ``python -m benchmarks.k_calibration_ties --frame /tmp/kqual/k_ceiling_frame.parquet``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from cip.models._run import KIND_SPECS, feature_columns
from cip.models.calibration import EPS
from cip.models.metrics import evaluate_probabilities
from sklearn.metrics import roc_auc_score

from benchmarks._util import load_average, stamp
from benchmarks.k_retail_ceiling import BTYD_COLS, HORIZON


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frame", type=Path, required=True)
    ap.add_argument("--holdout", default="2011-09-09")
    args = ap.parse_args()
    fr = pd.read_parquet(args.frame)
    hold = pd.Timestamp(args.holdout)
    print(f"{stamp()}; {load_average()} at start")
    print(
        "| kind | refit | AUC raw | AUC steps only | AUC tie-broken | distinct p (steps / tie-broken) | ECE | Brier |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("churn", "propensity"):
        spec = KIND_SPECS[kind]
        rows = fr if spec.population is None else fr[fr[spec.population] == 1]
        rows = rows[rows[spec.target].notna()]
        a = pd.to_datetime(rows["as_of"])
        feats = [c for c in feature_columns(rows) if c not in BTYD_COLS]
        X = rows[feats].astype(np.float64).round(6)
        y = rows[spec.target].to_numpy(dtype=np.int64)
        f, h = (a < hold).to_numpy(), (a == hold).to_numpy()
        for refit in (False, True):
            m = spec.estimator(
                random_state=0, purge_days=HORIZON, monotone=dict(spec.monotone), refit=refit
            ).fit(X[f], y[f], snapshot=a[f].to_numpy(), groups=rows["unified_id"].to_numpy()[f])
            raw = m._raw(m._check_X(X[h]))
            p = m.predict_proba(X[h])[:, 1]
            c = m.calibrator_
            steps = (
                np.clip(np.interp(raw, np.asarray(c["x"]), np.asarray(c["y"])), EPS, 1 - EPS)
                if c["method"] == "isotonic"
                else p
            )
            e = evaluate_probabilities(y[h], p)
            print(
                f"| {kind} | {refit} | {roc_auc_score(y[h], raw):.4f} "
                f"| {roc_auc_score(y[h], steps):.4f} | {roc_auc_score(y[h], p):.4f} "
                f"| {len(np.unique(steps)):,} / {len(np.unique(p)):,} of {int(h.sum()):,} "
                f"| {e['ece']:.3f} | {e['brier']:.4f} |"
            )
    print(f"{stamp()}; {load_average()} at the end")


if __name__ == "__main__":
    main()
