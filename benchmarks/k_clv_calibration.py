"""Benchmark: CLV total calibration rules, side by side, on Online Retail and a young cut (issue K).

The CLV candidates are fitted once per data set (:func:`models.clv.training.fit_clv_candidates`,
the estimator and snapshots of ``cip train clv``), then the total predicted / actual net
revenue on the evaluation population is reported under each calibration rule:

* ``raw``: no calibration (``total_scale = 1``);
* ``same_season``: the rule of ``cip train clv`` before issue K's follow-up, each candidate
  scaled by actual / predicted on the fitting snapshot a year before the holdout (else the
  latest), measured with the candidate's own predictions there (in-sample for the two-part
  model, which was trained on that snapshot's labels);
* ``current``: what :func:`fit_clv_candidates` does now (``CLVModel.total_scale``).

Data sets:

* ``retail``: Online Retail, as of 2011-06-09, next 183 days (holdout = as_of, a backtest);
* ``young``: Online Retail orders 2010-12-01 .. 2011-09-08 copied into a fresh store, trained
  as of its last day, next 91 days; evaluated on what happened from 2011-09-09 in the
  full file (as :mod:`benchmarks.young_orders`).

Run: ``CIP_SHARED=/work/shared python -m benchmarks.k_clv_calibration --workspace DIR``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from cip.features import data_end
from cip.models.clv import clv_frame, clv_score_frame
from cip.models.clv.model import CLVModel
from cip.models.clv.training import _calibration_snapshot, fit_clv_candidates
from cip.models.training import plan_snapshots, snapshot_spacing

from benchmarks._util import load_average, machine, stamp
from benchmarks.models_quality import _prepare
from benchmarks.young_orders import _actual, _young_store

log = logging.getLogger("k_clv_calibration")


def _plan(store, as_of, horizon):
    end = pd.Timestamp(data_end(store)).date()
    as_of = as_of or end
    first = pd.Timestamp(store.sql("SELECT min(ts) AS t FROM orders")["t"].iloc[0]).date()
    every, n = snapshot_spacing(first, as_of, horizon, every_days=30, n_snapshots=12, data_end=end)
    plan = plan_snapshots(as_of, horizon, every_days=every, n_snapshots=n, data_end=end)
    dates = [
        a for a in plan.all_as_ofs if a > first + timedelta(days=every) or a == plan.holdout_as_of
    ]
    return dates, pd.Timestamp(plan.holdout_as_of)


def _same_season_scales(fitted, frame, horizon) -> dict[str, float]:
    """The previous rule: actual / predicted on the same-season (else latest) fitting snapshot."""
    from cip.models.clv.frames import add_btyd_features

    fr, btyd = add_btyd_features(frame, horizon)
    as_of = pd.to_datetime(fr["as_of"])
    val_ts = _calibration_snapshot(list(fitted.fit_as_ofs), fitted.holdout_as_of)
    val = fr[(as_of == val_ts).to_numpy()]
    y = float(val["future_spend"].sum())
    out = {}
    for k, m in fitted.models.items():
        twin = CLVModel(m.kind, m.horizon_days, *btyd[val_ts], m.two_part)
        pred = float(twin.predict(val)["clv"].sum())
        out[k] = float(np.clip(y / pred, 0.25, 4.0))
    return out


def _report(name, fitted, frame, horizon, eval_frame, y_eval) -> list[str]:
    prev = _same_season_scales(fitted, frame, horizon)
    lines = [
        f"### {name}",
        "",
        f"holdout {fitted.holdout_as_of.date()}, fitting snapshots "
        f"{fitted.fit_as_ofs[0].date()} .. {fitted.fit_as_ofs[-1].date()} ({len(fitted.fit_as_ofs)}); "
        f"evaluation population {len(y_eval):,} persons, actual total {y_eval.sum():,.0f}",
        "",
        "| candidate | Gini | raw total | same-season factor / total | current factor / total |",
        "|---|---:|---:|---:|---:|",
    ]
    from cip.models.clv.metrics import evaluate_values

    for k, m in fitted.models.items():
        p = m.predict(eval_frame)["clv"].to_numpy() / m.total_scale
        raw = p.sum() / y_eval.sum()
        g = evaluate_values(y_eval, p)["normalized_gini"]
        lines.append(
            f"| {k} | {g:.4f} | {raw:.3f} | x{prev[k]:.3f} / {raw * prev[k]:.3f} "
            f"| x{m.total_scale:.3f} / {raw * m.total_scale:.3f} |"
        )
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--tune-trials", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("retail", "young"), default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("cip.features", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ws_dir = args.workspace or Path(tempfile.mkdtemp(prefix="cip-clvcal-")) / "ws"
    ws = _prepare("retail", ws_dir, 0, args.seed)
    load0, t0 = load_average(), time.perf_counter()
    out = [f"{stamp()}; {machine()}; {load0} at start", ""]
    tt = args.tune_trials or None
    with ws.open_store() as full:
        if args.only in (None, "retail"):
            h = 183
            dates, hold = _plan(full, date(2011, 6, 9), h)
            frame = clv_frame(full, dates, h)
            fitted = fit_clv_candidates(frame, hold, h, seed=args.seed, tune_trials=tt)
            ev = frame[pd.to_datetime(frame["as_of"]) == hold]
            out += _report("Online Retail, as of 2011-06-09, 183 days", fitted, frame, h, ev,
                           ev["future_spend"].to_numpy(dtype=float))  # fmt: skip
        if args.only in (None, "young"):
            h, as_of = 91, date(2011, 9, 9)
            actual = _actual(full, as_of, h)
            young = _young_store(full, date(2010, 12, 1), as_of)
            dates, hold = _plan(young, None, h)
            frame = clv_frame(young, dates, h)
            fitted = fit_clv_candidates(frame, hold, h, seed=args.seed, tune_trials=tt)
            ev = clv_score_frame(young, as_of, h)
            y = ev[["unified_id"]].merge(actual, on="unified_id", how="left")["spend"].fillna(0.0)
            out += _report("Young cut (2010-12-01 .. 2011-09-08), scored 2011-09-09, 91 days",
                           fitted, frame, h, ev, y.to_numpy(dtype=float))  # fmt: skip
    out.append(f"{time.perf_counter() - t0:.0f} s; {load_average()} at the end")
    print("\n".join(out))


if __name__ == "__main__":
    main()
