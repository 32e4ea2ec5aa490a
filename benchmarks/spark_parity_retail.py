"""Online Retail on ``engine: spark`` vs DuckDB: the same persons and RFM features, and the time per step.

Two workspaces from ``examples/online_retail.yaml`` (one with ``engine: spark``,
the same secret salt so the unified ids can match), then ingest, unify and the
feature snapshot on each; prints per step the seconds on both engines and
whether ``record_map`` and the RFM columns of ``features_default`` are equal.

Run: ``CIP_SHARED=/path/to/shared python -m benchmarks.spark_parity_retail
[--workdir DIR] [--master local[2]] [--as-of 2011-09-09] [--customers N] [--run]``.

``--run`` runs the whole ``cip run`` (every step, as configured by the example:
training, scoring, segments...) instead of ingest, unify and the feature snapshot,
and also prints each step's peak memory: the resident set of this process and its
children (the Spark JVM), sampled every 0.2 s.

``--customers N`` runs on a cut: the lines of the N smallest customer ids of each
file (whole histories, no guest lines), written as Parquet under the workdir, which
then stands in for ``CIP_SHARED``; the full files take too long on Spark on 2 shared
cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml
from cip.features import RFM_COLUMNS
from cip.pipelines.run import run_pipeline
from cip.pipelines.workflows import data
from cip.pipelines.workspace import Workspace

from benchmarks._util import PeakRSS

ROOT = Path(__file__).resolve().parents[1]


def _workspace(root: Path, engine: str, master: str, salt_from: Path | None) -> Workspace:
    ws = Workspace.init(root, config_file=ROOT / "examples" / "online_retail.yaml")
    if salt_from is not None:
        (ws.root / "secrets").mkdir(exist_ok=True)
        shutil.copy2(salt_from / "secrets" / "salt", ws.root / "secrets" / "salt")
    if engine == "spark":
        cfg = yaml.safe_load(ws.config_path.read_text())
        cfg["engine"] = "spark"
        cfg["spark"] = {"master": master}
        ws.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return ws.reload()


def _steps(ws: Workspace, as_of: date) -> dict[str, float]:
    out = {}
    for name, fn in (
        ("ingest", lambda: data.ingest(ws)),
        ("unify", lambda: data.unify(ws)),
        ("features", lambda: data.build_feature_snapshot(ws, as_of)),
    ):
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    return out


def _run(ws: Workspace, as_of: date) -> tuple[dict[str, float], dict[str, float], dict]:
    """``cip run`` on ``ws``: seconds and peak GiB per step, and each step's summary."""
    secs: dict[str, float] = {}
    peaks: dict[str, float] = {}
    current: dict[str, object] = {}

    def on_step(name: str, status: str) -> None:
        if status == "start":
            current.update(t=time.perf_counter(), mem=PeakRSS().start())
        else:
            peaks[name] = current["mem"].stop()  # type: ignore[attr-defined]
            secs[name] = time.perf_counter() - current["t"]  # type: ignore[operator]

    res = run_pipeline(ws, as_of=as_of, on_step=on_step)
    return secs, peaks, res.steps


def _cut(shared: Path, out: Path, customers: int) -> Path:
    """Copy of ``data/online_retail`` with only the lines of the first ``customers`` ids."""
    import duckdb

    dest = out / "data" / "online_retail"
    dest.mkdir(parents=True, exist_ok=True)
    for src, col in (
        ("online_retail_II_2009_2010.parquet", "Customer ID"),
        ("online_retail_2010_2011.parquet", "CustomerID"),
    ):
        path = shared / "data" / "online_retail" / src
        if not path.is_file():
            raise SystemExit(f"{path} not found: is CIP_SHARED the shared folder?")
        duckdb.sql(
            f"""COPY (SELECT * FROM read_parquet('{path}') WHERE "{col}" IN (
                SELECT DISTINCT "{col}" FROM read_parquet('{path}') WHERE "{col}" IS NOT NULL
                ORDER BY 1 LIMIT {int(customers)})) TO '{dest / src}' (FORMAT parquet)"""
        )
    return out


def _frame(ws: Workspace, sql: str) -> pd.DataFrame:
    with ws.open_store() as store:
        return store.sql(sql).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """Run both engines and print the comparison; exit 1 when they disagree."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--as-of", default="2011-09-09")
    ap.add_argument("--customers", type=int, default=None, help="run on a cut (see above)")
    ap.add_argument("--run", action="store_true", help="the whole `cip run`, not 3 steps")
    args = ap.parse_args(argv)
    if not os.environ.get("CIP_SHARED"):
        raise SystemExit("set CIP_SHARED to the folder holding data/online_retail")
    if args.customers is not None and args.customers < 1:
        raise SystemExit("--customers must be at least 1")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cip-spark-retail-"))
    if args.customers is not None:  # the example's paths read ${CIP_SHARED}
        os.environ["CIP_SHARED"] = str(
            _cut(Path(os.environ["CIP_SHARED"]), work / "shared", args.customers)
        )
    as_of = date.fromisoformat(args.as_of)
    times, peaks, summaries, spaces = {}, {}, {}, {}
    for engine in ("duckdb", "spark"):
        # the Spark workspace takes the salt the DuckDB run created, so the ids can match
        salt = spaces["duckdb"].root if spaces else None
        ws = spaces[engine] = _workspace(work / engine, engine, args.master, salt)
        if args.run:
            times[engine], peaks[engine], summaries[engine] = _run(ws, as_of)
        else:
            times[engine] = _steps(ws, as_of)

    (work / "times.json").write_text(
        json.dumps({"seconds": times, "peak_gib": peaks, "steps": summaries}, default=str)
    )
    persons_sql = "SELECT source_table, record_id, unified_id FROM record_map ORDER BY 1, 2"
    rfm_sql = (
        f"SELECT unified_id, {', '.join(RFM_COLUMNS)} FROM features_default ORDER BY unified_id"
    )
    same = {}
    for what, sql in (("persons (record_map)", persons_sql), ("RFM features", rfm_sql)):
        a, b = _frame(spaces["duckdb"], sql), _frame(spaces["spark"], sql)
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True)
            same[what] = f"equal ({len(a)} rows)"
        except AssertionError as exc:
            same[what] = "DIFFERENT: " + str(exc).splitlines()[0]
    w = sys.stdout.write
    w(f"workdir {work}\n")
    if args.run:
        w("| step | DuckDB s | Spark s | ratio | DuckDB peak GiB | Spark peak GiB (with JVM) |\n")
        w("|---|---|---|---|---|---|\n")
    else:
        w("| step | DuckDB s | Spark s | ratio |\n|---|---|---|---|\n")
    for step, t in times["duckdb"].items():
        s = times["spark"][step]
        mem = f" {peaks['duckdb'][step]:.2f} | {peaks['spark'][step]:.2f} |" if args.run else ""
        w(f"| {step} | {t:.1f} | {s:.1f} | {s / max(t, 1e-3):.1f}x |{mem}\n")
    w(f"| total | {sum(times['duckdb'].values()):.1f} | {sum(times['spark'].values()):.1f} |\n")
    if args.run:
        for step in ("train", "score"):
            for engine in ("duckdb", "spark"):
                w(f"{engine} {step}: {json.dumps(summaries[engine].get(step), default=str)}\n")
        same["train outcome"] = (
            "equal"
            if summaries["duckdb"].get("train") == summaries["spark"].get("train")
            else "DIFFERENT"
        )
    for what, verdict in same.items():
        w(f"{what}: {verdict}\n")
    return 0 if all(v.startswith("equal") for v in same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
