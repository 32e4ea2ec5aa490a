"""Ingestion: mapping, validation to quarantine, idempotency, atomicity, broken inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cip.pipelines.cli import main
from cip.pipelines.config import load_config
from cip.profiles.errors import ConfigError, SourceError
from cip.profiles.ingest import ingest_source
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store

LINES_CSV = """InvoiceNo,InvoiceDate,CustomerID,StockCode,Quantity,UnitPrice
1,2024-01-01 10:00:00,c1,A,2,3.5
1,2024-01-01 10:00:00,c1,B,1,1.0
C2,2024-01-05 10:00:00,c1,A,-1,3.5
3,not a date,c2,A,1,3.5
4,2024-01-07 10:00:00,,A,1,x
5,2024-01-08 10:00:00,c3,A,1,2,extra
1,2024-01-01 10:00:00,c1,B,1,1.0
6,2024-01-09T10:00:00+02:00,c4,A,-3,1.0
"""

MAPPING = {
    "order_id": "InvoiceNo",
    "ts": "InvoiceDate",
    "customer_id": "CustomerID",
    "item_id": "StockCode",
    "quantity": {
        "expr": "CASE WHEN InvoiceNo LIKE 'C%' THEN -TRY_CAST(Quantity AS DOUBLE) ELSE TRY_CAST(Quantity AS DOUBLE) END"
    },
    "unit_price": "UnitPrice",
    "currency": {"value": "GBP"},
    "status": {"expr": "CASE WHEN InvoiceNo LIKE 'C%' THEN 'returned' ELSE 'completed' END"},
}


def _src(path: str, **kw) -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": "shop", "table": "order_lines", "path": path, "columns": MAPPING, **kw}
    )


@pytest.fixture
def lines_csv(tmp_path: Path) -> Path:
    p = tmp_path / "orders.csv"
    p.write_text(LINES_CSV)
    return p


def test_csv_with_garbage_rows_loads_good_rows_and_quarantines_the_rest(lines_csv: Path) -> None:
    store = open_store("duckdb")
    rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
    assert rep.rows_read == 8 and rep.rows_loaded == 3 and rep.rows_quarantined == 5
    q = store.sql("SELECT row_number, reason, raw_record FROM quarantine ORDER BY row_number")
    assert dict(zip(q.row_number, q.reason, strict=True)) == {
        5: "unparseable timestamp in InvoiceDate",
        6: "not a number in UnitPrice",
        7: "expected 6 fields, found 7",
        8: "duplicate of an earlier row in this load",
        9: "negative quantity",
    }
    raw = json.loads(q.raw_record.iloc[0])
    assert raw == {
        "InvoiceNo": "3",
        "InvoiceDate": "not a date",
        "CustomerID": "c2",
        "StockCode": "A",
        "Quantity": "1",
        "UnitPrice": "3.5",
    }
    got = store.sql("SELECT order_id, amount, status FROM orders ORDER BY order_id")
    assert got.to_dict("list") == {
        "order_id": ["1", "C2"],
        "amount": [8.0, 3.5],
        "status": ["completed", "returned"],
    }


def test_reingest_is_idempotent(lines_csv: Path) -> None:
    store = open_store("duckdb")
    ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
    counts = (store.count("order_lines"), store.count("quarantine"))
    rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
    assert rep.rows_loaded == 0 and rep.rows_already_present == 3
    assert (store.count("order_lines"), store.count("quarantine")) == counts


def test_timestamps_with_offsets_and_source_timezone_become_utc(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(
        "id,t,cookie,kind\n1,2024-07-01T12:00:00+02:00,a,page_view\n"
        "2,2024-07-01 12:00:00,b,page_view\n"
    )
    src = SourceConfig.model_validate(
        {
            "name": "web",
            "table": "events",
            "path": "e.csv",
            "timezone": "Europe/London",
            "columns": {
                "event_id": "id",
                "ts": "t",
                "anonymous_id": "cookie",
                "event_type": "kind",
            },
        }
    )
    store = open_store("duckdb")
    ingest_source(store, src, base_dir=tmp_path)
    ts = store.sql("SELECT event_id, ts FROM events ORDER BY event_id")["ts"].astype(str).tolist()
    assert ts == ["2024-07-01 10:00:00", "2024-07-01 11:00:00"]


def test_jsonl_invalid_lines_and_missing_identifier_are_quarantined(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    p.write_text(
        '{"id": 1, "t": "2024-01-01 00:00:00", "mail": "A@x.com", "kind": "email_open"}\n'
        "{not json\n"
        '{"id": 3, "t": "2024-01-02 00:00:00", "kind": "email_open"}\n'
    )
    src = SourceConfig.model_validate(
        {
            "name": "mail",
            "table": "events",
            "path": "ev.jsonl",
            "columns": {"event_id": "id", "ts": "t", "email": "mail", "event_type": "kind"},
        }
    )
    store = open_store("duckdb")
    rep = ingest_source(store, src, base_dir=tmp_path)
    assert rep.rows_loaded == 1
    # an invalid line reports only that (its fields are unusable), not a missing identifier too
    assert rep.quarantine_reasons == {"invalid JSON": 1, "no identifier": 1}
    q = store.sql("SELECT row_number, reason, raw_record FROM quarantine ORDER BY row_number")
    assert q.row_number.tolist() == [2, 3]
    assert q.reason.tolist() == ["invalid JSON", "no identifier"]
    assert q.raw_record.iloc[0] == "{not json"


def test_parquet_float_ids_become_integers_and_mapping_checks_columns(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "Inv": ["1"],
            "When": pd.to_datetime(["2024-01-01"]),
            "Cust": [17850.0],
            "Sku": ["A"],
            "Qty": [1],
            "Price": [2.0],
        }
    )
    df.to_parquet(tmp_path / "o.parquet")
    cols = {
        "order_id": "Inv",
        "ts": "When",
        "customer_id": "Cust",
        "item_id": "Sku",
        "quantity": "Qty",
        "unit_price": "Price",
    }
    store = open_store("duckdb")
    src = SourceConfig.model_validate(
        {"name": "p", "table": "order_lines", "path": "o.parquet", "columns": cols}
    )
    ingest_source(store, src, base_dir=tmp_path)
    assert store.sql("SELECT customer_id FROM order_lines")["customer_id"].tolist() == ["17850"]
    bad = SourceConfig.model_validate(
        {
            "name": "p",
            "table": "order_lines",
            "path": "o.parquet",
            "columns": {**cols, "unit_price": "UnitPrice"},
        }
    )
    with pytest.raises(SourceError, match=r"UnitPrice not found in o\.parquet"):
        ingest_source(store, bad, base_dir=tmp_path)


def test_truncated_parquet_and_missing_file_stop_before_writing(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "Inv": [str(i) for i in range(1000)],
            "When": ["2024-01-01"] * 1000,
            "Cust": ["c"] * 1000,
            "Sku": ["A"] * 1000,
            "Qty": [1] * 1000,
            "Price": [1.0] * 1000,
        }
    )
    df.to_parquet(tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "bad.parquet").write_bytes(data[: len(data) // 2])
    cols = {
        "order_id": "Inv",
        "ts": "When",
        "customer_id": "Cust",
        "item_id": "Sku",
        "quantity": "Qty",
        "unit_price": "Price",
    }
    store = open_store("duckdb")
    src = SourceConfig.model_validate(
        {"name": "p", "table": "order_lines", "path": "*.parquet", "columns": cols}
    )
    with pytest.raises(SourceError, match="bad.parquet"):
        ingest_source(store, src, base_dir=tmp_path)
    assert store.count("order_lines") == 0 and store.count("_ingest_runs") == 0
    missing = src.model_copy(update={"path": "nope.parquet"})
    with pytest.raises(SourceError, match="no file found"):
        ingest_source(store, missing, base_dir=tmp_path)


def test_crash_mid_ingest_leaves_store_unchanged(lines_csv: Path, monkeypatch) -> None:
    import cip.profiles.ingest as ing

    store = open_store("duckdb")
    calls = {"n": 0}
    real = ing._insert_new

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # after the table insert, before quarantine + run log
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(ing, "_insert_new", crash)
    with pytest.raises(RuntimeError):
        ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
    assert store.count("order_lines") == 0 and store.count("quarantine") == 0
    monkeypatch.setattr(ing, "_insert_new", real)
    rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
    assert rep.rows_loaded == 3


def test_products_newest_row_per_item_wins(tmp_path: Path) -> None:
    (tmp_path / "p1.csv").write_text("sku,name,price\nA,Old name,1.0\nB,Bee,2.0\nA,Newer,1.5\n")
    src = SourceConfig.model_validate(
        {
            "name": "cat",
            "table": "products",
            "path": "p1.csv",
            "columns": {"item_id": "sku", "title": "name", "price": "price"},
        }
    )
    store = open_store("duckdb")
    ingest_source(store, src, base_dir=tmp_path)
    again = ingest_source(store, src, base_dir=tmp_path)
    assert (again.rows_loaded, again.rows_already_present, store.count("products")) == (0, 2, 2)
    (tmp_path / "p1.csv").write_text("sku,name,price\nA,Newest,1.7\n")
    newer = ingest_source(store, src, base_dir=tmp_path)
    assert (newer.rows_loaded, newer.rows_already_present) == (1, 0)
    got = store.sql("SELECT item_id, title, price FROM products ORDER BY item_id")
    assert got.to_dict("list") == {
        "item_id": ["A", "B"],
        "title": ["Newest", "Bee"],
        "price": [1.7, 2.0],
    }


def test_unknown_config_key_and_unmapped_required_column(tmp_path: Path) -> None:
    p = tmp_path / "cip.yaml"
    p.write_text("sources: []\nstorage: {}\n")
    with pytest.raises(ConfigError, match=r"cip\.yaml: storage: unknown key"):
        load_config(p)
    p.write_text(
        "sources:\n  - name: s\n    table: orders\n    path: x.csv\n"
        "    columns: {order_id: a, ts: b}\n"
    )
    with pytest.raises(ConfigError, match=r"required orders columns not mapped: \['amount'\]"):
        load_config(p)
    p.write_text("store:\n  backend: duckdb\n  memory_limit: [1]\n")
    with pytest.raises(ConfigError, match="store.memory_limit"):
        load_config(p)


def test_cli_errors_are_one_line(tmp_path: Path, capsys, lines_csv: Path) -> None:
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "status"]) == 4  # NotFoundError
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: no workspace at") and "\n" not in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"sources:\n  - name: s\n    table: order_lines\n    path: {lines_csv}\n"
        f"    columns: {json.dumps({**MAPPING, 'item_id': 'Sku'})}\n"
    )
    assert main(["init", str(ws), "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws), "ingest"]) == 3  # SourceError
    err = capsys.readouterr().err.strip()
    assert "Sku not found in orders.csv" in err and "\n" not in err
    assert main(["--workspace", str(ws), "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tables"]["order_lines"] == 0


def test_cli_ingest_reports_counts(tmp_path: Path, capsys, lines_csv: Path) -> None:
    ws = tmp_path / "ws"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"sources:\n  - name: s\n    table: order_lines\n    path: orders.csv\n"
        f"    columns: {json.dumps(MAPPING)}\n"
    )
    assert main(["init", str(ws), "--config", str(cfg)]) == 0
    capsys.readouterr()
    loaded = []
    for _ in range(2):
        assert main(["--workspace", str(ws), "ingest", "--json"]) == 0
        (rep,) = json.loads(capsys.readouterr().out)
        loaded.append((rep["rows_loaded"], rep["rows_already_present"], rep["rows_quarantined"]))
    assert loaded == [(3, 0, 5), (0, 3, 5)]
    assert main(["--workspace", str(ws), "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tables"]["order_lines"] == 3 and info["tables"]["quarantine"] == 5
    assert len(info["last_ingests"]) == 2


def test_postgres_source_and_postgres_store(pg_url: str, pg_schema: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{pg_schema}_src"')
        con.execute(
            f'CREATE TABLE "{pg_schema}_src".crm (id int, mail text, tel text, '
            f"updated timestamptz, optin text)"
        )
        con.execute(f"""INSERT INTO "{pg_schema}_src".crm VALUES
            (1, ' Ann@Example.com ', '07700 900123', '2024-01-01 10:00+00', 'Y'),
            (2, NULL, NULL, '2024-01-02 10:00+00', 'N'),
            (3, 'bob@example.com', NULL, NULL, 'maybe')""")
    src = SourceConfig.model_validate(
        {
            "name": "crm",
            "table": "customers",
            "postgres": {"url": pg_url, "table": f"{pg_schema}_src.crm"},
            "columns": {
                "source_record_id": "id",
                "email": "mail",
                "phone": "tel",
                "ts": "updated",
                "consent_email": {
                    "expr": "CASE optin WHEN 'Y' THEN 'true' WHEN 'N' THEN 'false' ELSE optin END"
                },
            },
        }
    )
    try:
        with open_store("postgres", url=pg_url, schema=pg_schema) as store:
            rep = ingest_source(store, src, base_dir=tmp_path)
            assert (rep.rows_loaded, rep.rows_quarantined) == (1, 2)
            got = store.sql(
                "SELECT source_record_id, email, phone, ts, consent_email FROM customers"
            )
            assert got.iloc[0].to_dict() == {
                "source_record_id": "1",
                "email": "Ann@Example.com",
                "phone": "07700 900123",
                "ts": pd.Timestamp("2024-01-01 10:00:00"),
                "consent_email": True,
            }
            reasons = sorted(store.sql("SELECT reason FROM quarantine")["reason"])
            assert reasons == ["no identifier", "not a boolean in consent_email (expression)"]
            rep2 = ingest_source(store, src, base_dir=tmp_path)
            assert rep2.rows_loaded == 0 and store.count("customers") == 1
            assert store.count("quarantine") == 2
    finally:
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}_src" CASCADE')


def test_ingest_into_postgres_store_from_csv(pg_url: str, pg_schema: str, lines_csv: Path) -> None:
    with open_store("postgres", url=pg_url, schema=pg_schema) as store:
        rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
        assert (rep.rows_loaded, rep.rows_quarantined) == (3, 5)
        rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
        assert rep.rows_loaded == 0 and store.count("order_lines") == 3
        got = store.sql("SELECT order_id, amount FROM orders ORDER BY order_id")
        assert got["amount"].tolist() == [8.0, 3.5]


def test_rows_reach_another_store_in_batches(
    pg_url: str, pg_schema: str, lines_csv: Path, monkeypatch
) -> None:
    """A big source is never held as one Arrow table in Python: it is staged batch by batch."""
    import cip.profiles.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "STAGE_BATCH_ROWS", 2)
    with open_store("postgres", url=pg_url, schema=pg_schema) as store:
        staged: list[tuple[str, str, int]] = []
        load = store.load_arrow

        def spy(table, data, *, mode="append"):
            if table.startswith("_stage_"):
                staged.append((table, mode, data.num_rows))
            return load(table, data, mode=mode)

        monkeypatch.setattr(store, "load_arrow", spy)
        # the staging DuckDB beside a non-DuckDB store is bounded by the store's limit
        limits: list[str] = []
        scratch = ingest_module.scratch_duckdb

        def bounded(limit=None):
            con = scratch(limit)
            limits.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
            return con

        monkeypatch.setattr(ingest_module, "scratch_duckdb", bounded)
        monkeypatch.setattr(store, "scratch_memory_limit", "256MiB")
        rep = ingest_source(store, _src(lines_csv.name), base_dir=lines_csv.parent)
        assert limits == ["256.0 MiB"]
        assert (rep.rows_loaded, rep.rows_quarantined) == (3, 5)
        assert store.count("order_lines") == 3 and store.count("quarantine") == 5
        for table, rows in (("_stage_order_lines", 3), ("_stage_quarantine", 5)):
            batches = [(mode, n) for t, mode, n in staged if t == table]
            assert [m for m, _ in batches] == ["replace"] + ["append"] * (len(batches) - 1)
            assert sum(n for _, n in batches) == rows and max(n for _, n in batches) <= 2
            assert len(batches) == (rows + 1) // 2
