"""Object storage: the Online Retail example from a local S3-compatible server vs local files.

Issue P acceptance: the Online Retail example ingested from the local
S3-compatible server gives the same tables as from local files.

    CIP_SHARED=../shared python -m benchmarks.objstore_retail

Starts moto's S3 server on a free port (no cloud here), uploads the two Online
Retail Parquet files, ingests ``examples/online_retail.yaml`` twice into two fresh
DuckDB stores (its paths as they are, then rewritten to ``s3://...``; the standard
AWS environment variables point at the server), and compares every canonical
table and the quarantine row for row (``EXCEPT ALL`` both ways, ``ingested_at``
aside).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks._util import load_average, machine, stamp

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("customers", "_orders_src", "order_lines", "events", "products", "quarantine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ingest(sources, store_path: Path, base: Path) -> tuple[float, dict]:
    from cip.profiles.ingest import ingest_source
    from cip.profiles.store import open_store

    t0 = time.perf_counter()
    reads = {}
    with open_store("duckdb", path=store_path) as store:
        for src in sources:
            rep = ingest_source(store, src, base_dir=base)
            reads[src.name] = (rep.rows_read, rep.rows_loaded, rep.rows_quarantined)
    return time.perf_counter() - t0, reads


def main() -> None:
    import boto3
    from cip.pipelines.config import load_config
    from moto.server import ThreadedMotoServer

    cfg = load_config(ROOT / "examples" / "online_retail.yaml")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    d = Path(tempfile.mkdtemp(prefix="cip-bench-s3-"))
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="retail")
        for p in sorted({s.path for s in cfg.sources}):
            s3.upload_file(p, "retail", f"online_retail/{Path(p).name}")
        remote = [
            s.model_copy(update={"path": f"s3://retail/online_retail/{Path(s.path).name}"})
            for s in cfg.sources
        ]
        local_s, local_reads = _ingest(cfg.sources, d / "local.duckdb", ROOT)
        s3_s, s3_reads = _ingest(remote, d / "s3.duckdb", ROOT)
        con = duckdb.connect()
        con.execute(f"ATTACH '{d / 'local.duckdb'}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{d / 's3.duckdb'}' AS b (READ_ONLY)")
        tables = {}
        for t in TABLES:
            n = con.execute(f"SELECT count(*) FROM a.{t}").fetchone()[0]
            diff = sum(
                con.execute(
                    f"SELECT count(*) FROM (SELECT * EXCLUDE (ingested_at) FROM {x}.{t} "
                    f"EXCEPT ALL SELECT * EXCLUDE (ingested_at) FROM {y}.{t})"
                ).fetchone()[0]
                for x, y in (("a", "b"), ("b", "a"))
            )
            tables[t] = {"rows": n, "rows_differing": diff}
        con.close()
        print(
            json.dumps(
                {
                    "when": stamp(),
                    "machine": machine(),
                    "load": load_average(),
                    "local_ingest_s": round(local_s, 1),
                    "s3_ingest_s": round(s3_s, 1),
                    "reads_equal": local_reads == s3_reads,
                    "reads": local_reads,
                    "tables": tables,
                    "same_tables": all(v["rows_differing"] == 0 for v in tables.values()),
                },
                indent=2,
            )
        )
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
