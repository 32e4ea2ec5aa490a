"""Benchmark: CLV quality on UCI Online Retail, as of 2011-06-09, next 183 days.

The Online Retail files (``$CIP_SHARED/data/online_retail``) are ingested into a
workspace with ``examples/online_retail.yaml`` (orders only: order lines, returns
as ``returned``), then :func:`models.clv.train_clv` runs with the holdout at
2011-06-09 (a backtest: fitted on labels observed before that date, evaluated on
the net revenue of 2011-06-09 .. 2011-12-08). Prints normalized Gini, total
predicted / actual, Spearman and decile MAE of BG/NBD x Gamma-Gamma, the
last-period baseline, the two-part LightGBM, and which one became the champion.

Run: ``python -m benchmarks.clv_quality [--workspace DIR] [--tune-trials N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import date
from pathlib import Path

from cip.models.clv import train_clv

from benchmarks._util import load_average, machine, stamp
from benchmarks.models_quality import _prepare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--tune-trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("cip.features", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ws_dir = args.workspace or Path(tempfile.mkdtemp(prefix="cip-clv-retail-")) / "ws"
    ws = _prepare("retail", ws_dir, 0, args.seed)
    load = load_average()
    t0 = time.perf_counter()
    with ws.open_store() as store:
        r = train_clv(
            store,
            date(2011, 6, 9),
            183,
            ws.mlflow_tracking_uri,
            ws.mlflow_artifact_location,
            seed=args.seed,
            tune_trials=args.tune_trials,
        )
    wall = time.perf_counter() - t0
    print(f"workspace {ws.root}; {stamp()}; {machine()}; {load} at start; {wall:.0f} s")
    print(
        "| model | holdout | customers | normalized Gini | total pred/actual | Spearman | decile MAE |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, m in r.candidates.items():
        tag = " (champion)" if name == r.winner and r.promoted else ""
        print(
            f"| {name}{tag} | {r.holdout_as_of} | {int(m['n']):,} | {m['normalized_gini']:.4f} "
            f"| {m['total_ratio']:.3f} | {m['spearman']:.4f} | {m['decile_mae']:.1f} |"
        )
    print(f"<!-- {r.decision}; fit snapshots {r.fit_as_ofs}; version {r.version} -->")
    print(json.dumps({"btyd_params": r.btyd_params, "tuning": r.tuning}, default=str))


if __name__ == "__main__":
    main()
