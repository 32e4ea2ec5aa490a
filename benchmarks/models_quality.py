"""Benchmark: churn and propensity quality against the baselines, on real or simulated data.

* ``--data retail``: the UCI Online Retail files (``$CIP_SHARED/data/online_retail``), ingested
  with ``examples/online_retail.yaml`` (orders only), trained with ``--as-of 2011-09-09
  --horizon-days 90``: fitted on labels observed before the as-of date, evaluated on what
  happened in the 90 days after it.
* ``--data sim``: ``cip simulate`` (planted churn and purchase signal), trained at the end of
  the data with a 90-day horizon (holdout: the latest labelled snapshot).

Prints ROC AUC, PR AUC, lift and capture at the top 10%, ECE for both models and both
baselines on the same holdout. The workspace is kept (``--workspace``) so a re-run skips
the ingest. Run: ``python -m benchmarks.models_quality --data retail|sim [--customers N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

from cip.pipelines.cli import main as cip
from cip.pipelines.workflows.modeling import train as run_train
from cip.pipelines.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def _prepare(kind: str, ws_dir: Path, customers: int, seed: int) -> Workspace:
    if (ws_dir / "cip.yaml").exists():
        return Workspace.open(ws_dir)
    if kind == "retail":
        shared = Path(os.environ.get("CIP_SHARED") or ROOT.parent / "shared")
        if not (shared / "data" / "online_retail").is_dir():
            raise SystemExit(f"Online Retail files not found under {shared}/data (set CIP_SHARED)")
        os.environ["CIP_SHARED"] = str(shared)
        assert (
            cip(["init", str(ws_dir), "--config", str(ROOT / "examples/online_retail.yaml")]) == 0
        )
    else:
        assert cip(["init", str(ws_dir)]) == 0
        args = ["--customers", str(customers), "--days", "730", "--seed", str(seed)]
        assert cip(["--workspace", str(ws_dir), "simulate", *args]) == 0
    assert cip(["--workspace", str(ws_dir), "ingest"]) == 0
    return Workspace.open(ws_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", choices=("retail", "sim"), required=True)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--customers", type=int, default=20_000, help="simulated people (sim)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-trials", type=int, default=None)
    args = ap.parse_args()
    ws_dir = args.workspace or Path(tempfile.mkdtemp(prefix=f"cip-quality-{args.data}-")) / "ws"
    ws = _prepare(args.data, ws_dir, args.customers, args.seed)
    as_of = date(2011, 9, 9) if args.data == "retail" else None
    print(f"workspace {ws.root}")
    print(
        "| model | holdout | rows | positive rate | scorer | ROC AUC | PR AUC | lift@10% | capture@10% | ECE |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for kind in ("churn", "propensity"):
        t = time.perf_counter()
        r = run_train(
            ws, kind, as_of, horizon_days=90, seed=args.seed, tune_trials=args.tune_trials
        )
        m = r.metrics
        rows = {**r.baselines, **(r.candidates or {"lightgbm": m})}
        for key, x in rows.items():
            name = f"{key} (winner, v{r.version})" if key == r.winner else key
            ece = x.get("ece")
            print(
                f"| {kind} | {r.holdout_as_of} | {int(m['n']):,} | {m['positive_rate']:.3f} | {name} "
                f"| {x['roc_auc']:.4f} | {x['pr_auc']:.4f} | {x['lift_top10']:.2f} "
                f"| {x['capture_top10']:.3f} | {'-' if ece is None else f'{ece:.3f}'} |"
            )
        print(
            f"<!-- {kind}: winner {r.winner} by {r.margin:+.4f}; {r.decision}; "
            f"{time.perf_counter() - t:.0f} s; fit {r.fit_as_ofs} -->"
        )


if __name__ == "__main__":
    main()
