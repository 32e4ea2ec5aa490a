"""Benchmark: ``cip train clv`` and CLV scoring on 1 M customers / ~10 M orders (DuckDB store).

Issue K's speed acceptance: training the CLV model on 1 M customers / 10 M orders
under 5 minutes, and scoring all four outputs (``clv, expected_orders, p_alive,
next_order_date``) for 1 M profiles under 2 minutes.

The orders come from :func:`benchmarks.clv_speed.synthetic_orders` (a BG/NBD-like
process over two years) and are appended to the orders source table of a DuckDB
store in a temporary folder (the way ``cip ingest`` loads them), so training and
scoring read them like production. Each timed step runs in a fresh child process
that reports its wall time, its CPU seconds (the whole process, imports included:
less sensitive to a loaded machine) and its own peak RSS (``getrusage(RUSAGE_SELF)``);
the training child also writes its progress messages, timed, to ``progress.log``:

1. ``train``: :func:`cip.models.clv.train_clv` at ``as_of`` (the last data day),
   ``--horizon-days`` (90), the ``cip train clv`` defaults (snapshot grid 12 x 30
   days, no Optuna tuning unless ``--tune-trials``), end to end with MLflow logging
   and registration into a SQLite tracking store in the temporary folder;
2. ``score``: :func:`cip.models.clv.score_clv` with the champion just registered,
   for every profile at ``as_of`` (features, BTYD summary, all outputs).

Run: ``python -m benchmarks.clv_train_speed [--customers N] [--orders-per-customer K]
[--horizon-days H] [--tune-trials T] [--keep DIR] [--only train|score] [--score-n-jobs 1 0]``.

Training uses the default row budget (``models.clv.max_rows`` 400,000 fitting rows,
``holdout_rows`` 200,000: a hash sample of persons above it); scoring predicts with
all cores unless ``--score-n-jobs`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks._util import load_average, machine, stamp

TRAIN_TARGET_S = 300.0
SCORE_TARGET_S = 120.0


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process so far: less load-dependent than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 1)


def _child_train(folder: str, horizon: int, tune_trials: int | None) -> dict:
    from cip.models.clv import train_clv
    from cip.profiles.store import open_store

    root = Path(folder)
    (root / "progress.log").unlink(missing_ok=True)  # this run's progress only
    steps: list[tuple[float, str]] = []
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        steps.append((round(time.perf_counter() - t0, 1), msg))
        with open(root / "progress.log", "a") as f:  # to follow a long run
            f.write(f"{steps[-1][0]:>7.1f} s  {msg}\n")

    with open_store("duckdb", path=str(root / "cip.duckdb")) as store:
        res = train_clv(
            store,
            None,
            horizon,
            f"sqlite:///{root / 'mlflow.db'}",
            str(root / "mlartifacts"),
            tune_trials=tune_trials,
            progress=say,
        )
    wall = time.perf_counter() - t0
    return {
        "wall_s": round(wall, 1),
        "cpu_s_process": _cpu_s(),
        "peak_rss_gib": _peak_gib(),
        "winner": res.winner,
        "version": res.version,
        "promoted": res.promoted,
        "holdout_as_of": res.holdout_as_of,
        "fit_snapshots": len(res.fit_as_ofs),
        "gini": {k: round(v["normalized_gini"], 4) for k, v in res.candidates.items()},
        "progress": [f"{s:>7.1f} s  {m}" for s, m in steps],
    }


def _child_score(folder: str, n_jobs: int) -> dict:
    from cip.features import data_end
    from cip.models.clv import score_clv
    from cip.profiles.store import open_store

    root = Path(folder)
    with open_store("duckdb", path=str(root / "cip.duckdb")) as store:
        as_of = pd.Timestamp(data_end(store)).date()
        t0 = time.perf_counter()
        out = score_clv(store, as_of, f"sqlite:///{root / 'mlflow.db'}", n_jobs=n_jobs)
        wall = time.perf_counter() - t0
    cols = ["clv", "expected_orders", "p_alive", "next_order_date"]
    return {
        "wall_s": round(wall, 1),
        "cpu_s_process": _cpu_s(),
        "peak_rss_gib": _peak_gib(),
        "profiles": len(out),
        "n_jobs": n_jobs,
        "as_of": str(as_of),
        "non_null": {c: int(out[c].notna().sum()) for c in cols},
        "mean_clv": round(float(out["clv"].mean()), 3),
    }


def _run(*args: str) -> dict:
    code = "import sys, json; from benchmarks.clv_train_speed import _child; _child(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(argv: list[str]) -> None:
    if argv[0] == "train":
        tune = None if argv[3] == "none" else int(argv[3])
        out = _child_train(argv[1], int(argv[2]), tune)
    else:
        out = _child_score(argv[1], int(argv[2]))
    sys.stdout.write(json.dumps(out) + "\n")


def _generate(folder: Path, customers: int, per_customer: float) -> dict:
    from cip.profiles.store import ORDERS_SRC, open_store

    from benchmarks.clv_speed import synthetic_orders

    t0 = time.perf_counter()
    orders = synthetic_orders(customers, per_customer)
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open_store("duckdb", path=str(folder / "cip.duckdb")) as store:
        store.load_arrow(ORDERS_SRC, orders)
        store.execute("CHECKPOINT")
    return {
        "orders": len(orders),
        "generate_s": round(gen, 1),
        "load_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--orders-per-customer", type=float, default=10.0)
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument(
        "--tune-trials", type=int, default=None, help="Optuna trials (default: none, as the CLI)"
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep the store in this folder")
    ap.add_argument("--only", choices=("train", "score"), default=None)
    ap.add_argument(
        "--score-n-jobs",
        type=int,
        nargs="+",
        default=[0],
        help="LightGBM threads of the score step, one score run each (0: all cores; "
        "e.g. '1 0' compares one thread with all cores)",
    )
    args = ap.parse_args()
    header = f"{stamp()}; {machine()}; {load_average()} at start"
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result: dict = {"customers": args.customers}
        if not (folder / "cip.duckdb").exists():
            result.update(_generate(folder, args.customers, args.orders_per_customer))
        if args.only in (None, "train"):
            tune = "none" if args.tune_trials is None else str(args.tune_trials)
            result["train"] = _run("train", str(folder), str(args.horizon_days), tune)
            result["train"]["target_s"] = TRAIN_TARGET_S
        if args.only in (None, "score"):
            for n in args.score_n_jobs:
                key = "score" if n == 0 else f"score_n_jobs_{n}"
                result[key] = _run("score", str(folder), str(n))
                result[key]["target_s"] = SCORE_TARGET_S
    result["load_at_end"] = load_average()
    print(header)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
