"""Object storage sources: s3:// paths against a local S3-compatible server (moto, server mode).

No cloud is reachable here, so the test starts moto's threaded server on a free
port and points the standard AWS environment at it (``AWS_ENDPOINT_URL`` and
dummy keys): the same variables a real deployment uses, nothing in cip.yaml.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cip.profiles.errors import SourceError
from cip.profiles.ingest import ingest_source
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store

from tests.test_ingest import LINES_CSV, MAPPING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch, tmp_path: Path) -> tuple[str, Path]:
    """A bucket holding the same files as a local folder: (bucket name, folder)."""
    import boto3

    for k, v in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    local = tmp_path / "exports"
    local.mkdir()
    (local / "orders.csv").write_text(LINES_CSV)
    frame = pd.DataFrame(
        {
            "InvoiceNo": ["10", "10", "11", "C12", "13"],
            "InvoiceDate": ["2024-02-01 09:00:00"] * 2 + ["2024-02-02 09:00:00"] * 2 + ["bad"],
            "CustomerID": ["c1", "c1", "c2", "c2", "c3"],
            "StockCode": ["A", "B", "A", "A", "B"],
            "Quantity": ["1", "2", "3", "-1", "1"],
            "UnitPrice": ["2.0", "1.5", "2.0", "2.0", "1.0"],
        }
    )
    pq.write_table(pa.Table.from_pandas(frame.iloc[:3], preserve_index=False), local / "p1.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[3:], preserve_index=False), local / "p2.parquet")
    name = "shop-exports"
    s3 = boto3.client("s3")
    if name not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=name)
    for f in local.iterdir():
        s3.upload_file(str(f), name, f"daily/{f.name}")
    return name, local


def _tables(store) -> dict[str, list]:
    lines = store.sql("SELECT * EXCLUDE (ingested_at) FROM order_lines ORDER BY record_id").to_dict(
        "records"
    )
    quarantine = store.sql(
        "SELECT * EXCLUDE (ingested_at) FROM quarantine ORDER BY record_id"
    ).to_dict("records")
    return {"order_lines": lines, "quarantine": quarantine}


@pytest.mark.parametrize("pattern", ["orders.csv", "*.parquet"])
def test_s3_gives_the_same_tables_as_local_files(bucket, pattern: str) -> None:
    name, local = bucket
    results = []
    for path in (str(local / pattern), f"s3://{name}/daily/{pattern}"):
        src = SourceConfig.model_validate(
            {"name": "shop", "table": "order_lines", "path": path, "columns": MAPPING}
        )
        with open_store("duckdb") as store:
            rep = ingest_source(store, src, base_dir=local)
            results.append((rep.files, rep.rows_read, rep.rows_loaded, _tables(store)))
    assert results[0][1] > 0 and results[0][2] > 0
    assert results[1] == results[0]


def test_missing_object_is_one_clear_error(bucket) -> None:
    name, local = bucket
    src = SourceConfig.model_validate(
        {
            "name": "shop",
            "table": "order_lines",
            "path": f"s3://{name}/nothing/*.csv",
            "columns": MAPPING,
        }
    )
    with open_store("duckdb") as store:
        with pytest.raises(SourceError, match="no object found"):
            ingest_source(store, src, base_dir=local)
        assert store.count("order_lines") == 0
