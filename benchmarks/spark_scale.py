"""DuckDB vs Spark per step at growing sizes: ingest, unify and the feature snapshot.

At scale ``s`` the synthetic shop has ``1 M x s`` customers, ``10 M x s`` orders and
``50 M x s`` events (the generator of ``benchmarks.features_speed``: two years of
orders and sessions of 8 events, 10,000 products), written as Parquet source files.
For each scale, two workspaces read them (``engine: store`` on DuckDB and
``engine: spark``), each in a fresh child process that runs ``ingest``, ``unify`` and
the feature snapshot and reports per step the seconds and the peak resident memory of
the process and its children (the Spark JVM included). Both engines must end with the
same number of persons and feature rows. The scales run in the order given; a Spark
run that fails or passes ``--timeout`` ends the ladder (the last scale that completed
is the largest this machine did).

    python -m benchmarks.spark_scale --scales 0.01,0.1,1 [--master local[2]] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import PeakRSS, load_average, machine, stamp

AS_OF = "2024-01-01"  # the generator's data spans 2022-01-01 .. 2024-01-01
STEPS = ("ingest", "unify", "features")


def _sources(folder: Path, *, customers: int, orders: int, events: int) -> None:
    """The synthetic shop as three Parquet files (orders, events, products) in ``folder``."""
    import duckdb

    from benchmarks.features_speed import generate

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "gen.duckdb"
    generate(db, customers=customers, orders=orders, events=events)
    con = duckdb.connect(str(db), read_only=True)
    for name, sql in (
        ("orders", "SELECT order_id, ts, customer_id, amount, currency, status, channel "
                   "FROM _orders_src"),
        ("events", "SELECT ts, event_type, customer_id, session_id, item_id, channel, rating "
                   "FROM events"),
        ("products", "SELECT item_id, title, category, price, in_stock FROM products"),
    ):  # fmt: skip
        con.execute(f"COPY ({sql}) TO '{folder / name}.parquet' (FORMAT parquet)")
    con.close()
    db.unlink()


def _config(sources: Path, engine: str, master: str) -> dict:
    def same(*cols: str) -> dict[str, str]:
        return {c: c for c in cols}

    cfg: dict = {
        "version": 1,
        "sources": [
            {"name": "orders", "table": "orders", "path": str(sources / "orders.parquet"),
             "columns": same("order_id", "ts", "customer_id", "amount", "currency", "status",
                             "channel")},
            {"name": "events", "table": "events", "path": str(sources / "events.parquet"),
             "columns": same("ts", "event_type", "customer_id", "session_id", "item_id",
                             "channel", "rating")},
            {"name": "products", "table": "products", "path": str(sources / "products.parquet"),
             "columns": same("item_id", "title", "category", "price", "in_stock")},
        ],
    }  # fmt: skip
    if engine == "spark":
        cfg["engine"] = "spark"
        cfg["spark"] = {"master": master}
    return cfg


def _child(engine: str, root: str, sources: str, master: str) -> dict:
    """One engine: a fresh workspace, then ingest, unify, features; seconds and GiB per step."""
    from datetime import date

    import yaml
    from cip.pipelines.workflows import data
    from cip.pipelines.workspace import Workspace

    ws = Workspace.init(Path(root))
    ws.config_path.write_text(
        yaml.safe_dump(_config(Path(sources), engine, master), sort_keys=False)
    )
    ws = ws.reload()
    as_of = date.fromisoformat(AS_OF)
    out: dict = {}
    for name, fn in (
        ("ingest", lambda: data.ingest(ws)),
        ("unify", lambda: data.unify(ws)),
        ("features", lambda: data.build_feature_snapshot(ws, as_of)),
    ):
        mem = PeakRSS().start()
        t = time.perf_counter()
        fn()
        out[name] = {"s": round(time.perf_counter() - t, 1), "peak_gib": round(mem.stop(), 2)}
        (Path(root) / "steps.json").write_text(json.dumps(out))  # the parent reads it on failure
    with ws.open_store() as store:
        out["persons"] = int(store.sql("SELECT count(*) AS n FROM profiles")["n"].iloc[0])
        out["feature_rows"] = store.count("features_default")
    return out


def _run_child(engine: str, root: Path, sources: Path, master: str, timeout: float) -> dict:
    """The child in its own process group (a timeout kills the JVM too)."""
    cmd = [sys.executable, "-m", "benchmarks.spark_scale", "--child", engine, str(root),
           str(sources), master]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    done = root / "steps.json"  # the steps that finished, written by the child
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        finished = json.loads(done.read_text()) if done.is_file() else {}
        return {**finished, "error": f"did not finish within {timeout:.0f} s"}
    if proc.returncode != 0:  # the Python exception's last line, not the JVM's stack
        lines = [x for x in stderr.splitlines() if x and not x[0].isspace()]
        errors = [x for x in lines if "Error" in x or "Exception" in x]
        finished = json.loads(done.read_text()) if done.is_file() else {}
        return {**finished, "error": (errors or lines or ["failed"])[-1][:500]}
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        sys.stdout.write(json.dumps(_child(*argv[1:5])) + "\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="0.01,0.1,1", help="comma list of s (1 = 1M/10M/50M)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per engine and scale")
    ap.add_argument("--workdir", type=Path, default=None, help="kept; default: a temp folder")
    args = ap.parse_args(argv)
    scales = [float(x) for x in args.scales.split(",")]
    if any(s <= 0 for s in scales):
        raise SystemExit("--scales must be positive")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cip-spark-scale-"))
    w = sys.stdout.write
    w(f"{stamp()} | {machine()} | {load_average()} | master {args.master} | workdir {work}\n")
    largest = None
    try:
        for s in scales:
            size = {"customers": int(1e6 * s), "orders": int(1e7 * s), "events": int(5e7 * s)}
            t = time.perf_counter()
            src = work / f"s{s:g}" / "sources"
            _sources(src, **size)
            w(f"\n## scale {s:g}: {size} (generated in {time.perf_counter() - t:.0f} s)\n")
            res = {
                e: _run_child(e, work / f"s{s:g}" / e, src, args.master, args.timeout)
                for e in ("duckdb", "spark")
            }
            w(
                "| step | DuckDB s | Spark s | ratio | DuckDB peak GiB | Spark peak GiB (with JVM) |\n"
            )
            w("|---|---|---|---|---|---|\n")
            for step in STEPS:
                d, k = res["duckdb"].get(step), res["spark"].get(step)
                ratio = f"{k['s'] / max(d['s'], 0.1):.1f}x" if d and k else "-"
                d, k = d or {"s": "-", "peak_gib": "-"}, k or {"s": "-", "peak_gib": "-"}
                w(f"| {step} | {d['s']} | {k['s']} | {ratio} | {d['peak_gib']} | "
                  f"{k['peak_gib']} |\n")  # fmt: skip
            for e, r in res.items():
                if "error" in r:
                    w(f"{e}: {r['error']}\n")
                else:
                    w(f"{e}: {r['persons']} persons, {r['feature_rows']} feature rows\n")
            w(f"{load_average()}\n")
            sys.stdout.flush()
            if "error" in res["spark"] or "error" in res["duckdb"]:
                break
            if (res["spark"]["persons"], res["spark"]["feature_rows"]) != (
                res["duckdb"]["persons"],
                res["duckdb"]["feature_rows"],
            ):
                w("the engines disagree on persons or feature rows\n")
                return 1
            largest = s
            shutil.rmtree(src, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    w(f"\nlargest scale completed on both engines: {largest if largest is not None else 'none'}\n")
    return 0 if largest is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
