"""Incremental database sources: PostgreSQL and MariaDB, live (hundreds of rows each).

Each test creates its own uniquely named source table and drops it afterwards.
Outside CI a missing server skips; with CI=true it fails (see conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cip.profiles import ingest as ingest_mod
from cip.profiles.ingest import ingest_source, load_watermark
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store

T0 = datetime(2025, 1, 1)


class SourceDB:
    """A table in the source database (PostgreSQL or MariaDB) with the rows of a shop's orders."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self.table = f"cip_inc_{uuid.uuid4().hex[:10]}"
        self.run(
            f"CREATE TABLE {self.table} (id BIGINT, cust VARCHAR(20), amount DECIMAL(10,2), "
            f"status VARCHAR(20), created {'TIMESTAMP' if kind == 'postgres' else 'DATETIME(6)'}, "
            f"updated_at {'TIMESTAMP' if kind == 'postgres' else 'DATETIME(6)'})"
        )

    def _connect(self) -> Any:
        if self.kind == "postgres":
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=3306, user="root", password="", database="test", autocommit=True
        )

    def run(self, sql: str, rows: list[tuple] | None = None) -> None:
        con = self._connect()
        try:
            cur = con.cursor()
            if rows:
                cur.executemany(sql, rows)
            else:
                cur.execute(sql)
        finally:
            con.close()

    def add(self, ids: range, *, updated: datetime | None = None) -> None:
        """Insert orders ``ids``; ``updated_at`` grows with the id unless given."""
        self.run(
            f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    i,
                    f"c{i % 37}",
                    round(5 + i * 0.25, 2),
                    "completed",
                    T0 + timedelta(hours=i),
                    updated or T0 + timedelta(minutes=i),
                )
                for i in ids
            ],
        )

    def source(self, *, query: str | None = None, column: str = "updated_at") -> SourceConfig:
        where = {"query": query} if query else {"table": self.table}
        key = "postgres" if self.kind == "postgres" else "mysql"
        return SourceConfig.model_validate(
            {
                "name": f"shop_{self.kind}",
                "table": "orders",
                key: {"url": self.url, **where, "incremental": {"column": column}},
                "columns": {
                    "source_record_id": "id",
                    "order_id": "id",
                    "customer_id": "cust",
                    "amount": "amount",
                    "status": "status",
                    "ts": "created",
                },
            }
        )

    def drop(self) -> None:
        self.run(f"DROP TABLE IF EXISTS {self.table}")


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def srcdb(request) -> Iterator[SourceDB]:
    url = request.getfixturevalue("pg_url" if request.param == "postgres" else "mariadb_url")
    db = SourceDB("postgres" if request.param == "postgres" else "mysql", url)
    try:
        yield db
    finally:
        db.drop()


def _ingest(store, src: SourceConfig, **kw):
    return ingest_source(store, src, base_dir=Path("."), **kw)


def _orders(store) -> list[tuple]:
    return [
        tuple(r)
        for r in store.sql(
            "SELECT order_id, amount FROM _orders_src ORDER BY CAST(order_id AS BIGINT)"
        ).itertuples(index=False)
    ]


def test_first_load_append_incremental_and_full(srcdb: SourceDB) -> None:
    srcdb.add(range(1, 301))
    src = srcdb.source()
    with open_store("duckdb") as store:
        first = _ingest(store, src)
        assert (first.rows_read, first.rows_loaded, first.read_mode) == (300, 300, "full")
        assert first.watermark == (T0 + timedelta(minutes=300)).isoformat()

        srcdb.add(range(301, 341))
        second = _ingest(store, src)
        # only the new rows, plus the row at the watermark itself (read again: >=)
        assert second.read_mode == "incremental"
        assert second.watermark_from == first.watermark
        assert (second.rows_read, second.rows_loaded, second.rows_already_present) == (41, 40, 1)
        assert second.watermark == (T0 + timedelta(minutes=340)).isoformat()

        idle = _ingest(store, src)
        assert (idle.rows_read, idle.rows_loaded) == (1, 0)

        full = _ingest(store, src, full=True)
        assert (full.read_mode, full.rows_read, full.rows_loaded) == ("full", 340, 0)
        assert full.watermark == second.watermark
        orders = _orders(store)
        assert [int(o) for o, _ in orders] == list(range(1, 341))
        runs = store.sql("SELECT rows_read FROM _ingest_runs ORDER BY started_at")["rows_read"]
        assert list(runs) == [300, 41, 1, 340]


def test_rows_committed_later_at_the_watermark_are_not_missed(srcdb: SourceDB) -> None:
    srcdb.add(range(1, 101))
    src = srcdb.source()
    with open_store("duckdb") as store:
        _ingest(store, src)
        # two rows stamped with exactly the watermark value arrive after the load
        srcdb.add(range(101, 103), updated=T0 + timedelta(minutes=100))
        rep = _ingest(store, src)
        assert (rep.rows_read, rep.rows_loaded) == (3, 2)
        assert len(_orders(store)) == 102


def test_an_update_replaces_the_record(srcdb: SourceDB) -> None:
    srcdb.add(range(1, 201))
    src = srcdb.source()
    with open_store("duckdb") as store:
        _ingest(store, src)
        srcdb.run(
            f"UPDATE {srcdb.table} SET amount = 999.5, status = 'returned', "
            f"updated_at = '2025-02-01 00:00:00' WHERE id = 7"
        )
        rep = _ingest(store, src)
        assert (rep.rows_read, rep.rows_loaded) == (2, 1)  # the update and the old watermark row
        orders = dict(_orders(store))
        assert len(orders) == 200 and orders["7"] == 999.5
        got = store.sql("SELECT status FROM _orders_src WHERE order_id = '7'")["status"]
        assert list(got) == ["returned"]


def test_a_query_source_with_percent_signs(srcdb: SourceDB) -> None:
    srcdb.add(range(1, 121))
    q = f"SELECT * FROM {srcdb.table} WHERE cust LIKE 'c1%'"
    src = srcdb.source(query=q, column="id")
    with open_store("duckdb") as store:
        first = _ingest(store, src)
        expected = [i for i in range(1, 121) if str(i % 37).startswith("1")]
        assert first.rows_loaded == len(expected)
        srcdb.add(range(121, 160))
        rep = _ingest(store, src)
        new = [i for i in range(121, 160) if str(i % 37).startswith("1")]
        assert rep.rows_loaded == len(new)
        assert rep.rows_read == len(new) + 1 and rep.watermark == str(max(new))


@pytest.mark.parametrize(
    "store_kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_crash_before_commit_moves_nothing(
    srcdb: SourceDB, store_kind: str, request, monkeypatch
) -> None:
    kw = {}
    if store_kind == "postgres":
        kw = {
            "url": request.getfixturevalue("pg_url"),
            "schema": request.getfixturevalue("pg_schema"),
        }
    srcdb.add(range(1, 201))
    src = srcdb.source()
    with open_store(store_kind, **kw) as store:
        _ingest(store, src)
        mark = load_watermark(store, src.name, "updated_at")
        srcdb.add(range(201, 251))
        real = ingest_mod.save_watermark

        def crash(*a, **k):
            real(*a, **k)  # the rows and the watermark are written ...
            raise RuntimeError("injected crash before commit")  # ... but never committed

        monkeypatch.setattr(ingest_mod, "save_watermark", crash)
        with pytest.raises(RuntimeError, match="injected"):
            _ingest(store, src)
        monkeypatch.setattr(ingest_mod, "save_watermark", real)
        assert load_watermark(store, src.name, "updated_at") == mark
        assert store.count("_orders_src") == 200
        assert store.count("_ingest_runs") == 1

        rep = _ingest(store, src)
        assert (rep.rows_read, rep.rows_loaded) == (51, 50)
        ids = [int(o) for o, _ in _orders(store)]
        assert ids == list(range(1, 251))  # none lost, none doubled


def test_unreachable_database_is_one_clear_error(mariadb_url: str) -> None:
    from cip.profiles.errors import SourceError

    src = SourceConfig.model_validate(
        {
            "name": "gone",
            "table": "orders",
            "mysql": {"url": mariadb_url, "table": "no_such_table_here"},
            "columns": {"order_id": "id", "customer_id": "c", "amount": "a", "ts": "t"},
        }
    )
    with (
        open_store("duckdb") as store,
        pytest.raises(SourceError, match="'gone': mysql read failed"),
    ):
        _ingest(store, src)


def test_config_refuses_credentials_and_ambiguous_sources() -> None:
    base = {
        "name": "s",
        "table": "orders",
        "columns": {"order_id": "a", "customer_id": "b", "amount": "c", "ts": "d"},
    }
    with pytest.raises(ValueError, match="credentials do not belong"):
        SourceConfig.model_validate({**base, "path": "s3://AKIA:secret@bucket/x.parquet"})
    with pytest.raises(ValueError, match="credentials do not belong"):
        SourceConfig.model_validate(
            {**base, "path": "s3://bucket/x.parquet", "aws_secret_access_key": "x"}
        )
    with pytest.raises(ValueError, match="exactly one of 'path', 'postgres' or 'mysql'"):
        SourceConfig.model_validate(
            {**base, "path": "x.csv", "mysql": {"url": "mysql://h/db", "table": "t"}}
        )
    with pytest.raises(ValueError, match="not supported"):
        SourceConfig.model_validate({**base, "path": "ftp://host/x.csv"})


@pytest.mark.mariadb
def test_cli_ingest_full_and_report(mariadb_url: str, tmp_path: Path, capsys) -> None:
    srcdb = SourceDB("mysql", mariadb_url)
    try:
        _cli_ingest_full_and_report(srcdb, tmp_path, capsys)
    finally:
        srcdb.drop()


def _cli_ingest_full_and_report(srcdb: SourceDB, tmp_path: Path, capsys) -> None:
    import yaml
    from cip.pipelines.cli import main

    srcdb.add(range(1, 51))
    ws = tmp_path / "ws"
    assert main(["init", str(ws)]) == 0
    cfg = yaml.safe_load((ws / "cip.yaml").read_text())
    cfg["sources"] = [srcdb.source().model_dump(mode="json", exclude_defaults=True)]
    (ws / "cip.yaml").write_text(yaml.safe_dump(cfg))
    reports = []
    for extra in ([], [], ["--full"]):
        capsys.readouterr()
        assert main(["-w", str(ws), "ingest", *extra, "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out)[0])
        srcdb.add(range(51, 61)) if not extra and len(reports) == 1 else None
    assert [(r["read_mode"], r["rows_read"], r["rows_loaded"]) for r in reports] == [
        ("full", 50, 50),
        ("incremental", 11, 10),
        ("full", 60, 0),
    ]


def test_mysql_url_scheme_is_checked() -> None:
    with pytest.raises(ValueError, match="mysql://"):
        SourceConfig.model_validate(
            {
                "name": "s",
                "table": "orders",
                "mysql": {"url": "postgresql://h/db", "table": "t"},
                "columns": {"order_id": "a", "customer_id": "b", "amount": "c", "ts": "d"},
            }
        )
