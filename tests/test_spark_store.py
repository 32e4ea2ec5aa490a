"""The Spark store: versioned Parquet tables, atomic pointer swap, transactions, DML rewrite.

Every statement is run on the Spark store and on an in-memory DuckDB store;
both must hold the same rows afterwards (the Spark store rewrites DML into
SELECTs over Parquet, so this checks the rewrite, not Spark).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from cip.profiles import _spark_store
from cip.profiles._spark_store import POINTER, SparkStore
from cip.profiles.errors import CIPError
from cip.profiles.store import DuckDBStore

pytestmark = pytest.mark.spark

DDL = (
    "CREATE TABLE IF NOT EXISTS t (k VARCHAR PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE, "
    "ts TIMESTAMP, ok BOOLEAN)"
)
ROWS = [
    ("a", 1, 1.5, dt.datetime(2025, 1, 1, 10), True),
    ("b", 2, None, dt.datetime(2025, 1, 2, 11), False),
    ("c", 3, 3.5, None, None),
]


@pytest.fixture
def stores(spark, tmp_path):
    sp = SparkStore(tmp_path / "wh", session=spark)
    duck = DuckDBStore()
    for s in (sp, duck):
        s.execute(DDL)
        for r in ROWS:
            s.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", list(r))
    yield sp, duck
    sp.close()
    duck.close()


def _rows(store, table: str = "t") -> pd.DataFrame:
    df = store.sql(f"SELECT * FROM {table} ORDER BY 1")
    return df.reset_index(drop=True)


def _same(sp, duck, table: str = "t") -> None:
    a, b = _rows(sp, table), _rows(duck, table)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def _both(stores, sql: str, params=None) -> None:
    for s in stores:
        s.execute(sql, params)


def test_insert_delete_update_match_duckdb(stores) -> None:
    sp, duck = stores
    _same(sp, duck)
    _both(stores, "INSERT INTO t (n, k) SELECT n + 10, k || 'x' FROM t WHERE n >= 2")
    _same(sp, duck)
    assert sp.count("t") == 5
    # NULLs in the condition: DELETE keeps the rows where it is NULL
    _both(stores, "DELETE FROM t WHERE x > 2 OR k = ?", ["bx"])
    _same(sp, duck)
    _both(stores, "UPDATE t SET x = coalesce(x, 0) + n, ok = TRUE WHERE n < ?", [10])
    _same(sp, duck)
    assert sp.sql("SELECT x FROM t WHERE k = 'b'")["x"].tolist() == [2.0]


def test_update_from_and_rename(stores) -> None:
    sp, duck = stores
    _both(stores, "CREATE TEMP TABLE u AS SELECT k, n * 100 AS m FROM t WHERE k <> 'a'")
    _both(stores, "UPDATE t SET n = u.m FROM u WHERE t.k = u.k")
    _same(sp, duck)
    assert sorted(sp.sql("SELECT n FROM t")["n"].tolist()) == [1, 200, 300]
    assert "u" not in sp.table_names()  # a temporary table is not one of the store's tables
    _both(stores, "CREATE TABLE s AS SELECT k, n FROM t WHERE n > 1")
    _both(stores, "DROP TABLE IF EXISTS s2")
    _both(stores, "ALTER TABLE s RENAME TO s2")
    assert "s" not in sp.table_names() and "s2" in sp.table_names()
    _same(sp, duck, "s2")


def test_view_follows_the_tables(stores) -> None:
    sp, duck = stores
    _both(stores, "CREATE OR REPLACE VIEW big AS SELECT k, n FROM t WHERE n >= 2")
    assert sp.count("big") == 2
    _both(stores, "INSERT INTO t (k, n) VALUES ('d', 9)")
    _same(sp, duck, "big")
    assert sp.count("big") == 3


def test_statement_spark_cannot_express_runs_driver_side(stores) -> None:
    sp, duck = stores
    q = "SELECT array_agg(k ORDER BY n DESC) AS ks FROM t"
    before = sp.stats["driver"]
    assert list(sp.sql(q)["ks"][0]) == list(duck.sql(q)["ks"][0]) == ["c", "b", "a"]
    assert sp.stats["driver"] == before + 1
    before = sp.stats["spark"]
    assert sp.sql("SELECT max(n) AS m FROM t")["m"].tolist() == [3]
    assert sp.stats["spark"] == before + 1


def test_a_statement_spark_rejects_is_not_logged_as_an_error(stores, capfd) -> None:
    """Spark's analyser rejects json_valid (no such function): the statement runs on the
    driver without PySpark's ERROR line on stderr; a statement nobody can run still fails."""
    sp, duck = stores
    capfd.readouterr()
    q = "SELECT k, json_valid(k) AS j FROM t ORDER BY k"
    before = sp.stats["driver"]
    pd.testing.assert_frame_equal(sp.sql(q), duck.sql(q))
    assert sp.stats["driver"] == before + 1
    assert "UNRESOLVED_ROUTINE" in sp.fallbacks[-1][1]
    with pytest.raises(Exception, match="no_such_column"):
        sp.sql("SELECT no_such_column FROM t")
    err = capfd.readouterr().err
    assert "UNRESOLVED_ROUTINE" not in err and '"level": "ERROR"' not in err


def test_transaction_rollback_and_commit(stores) -> None:
    sp, _ = stores
    with pytest.raises(RuntimeError), sp.transaction():
        sp.execute("DELETE FROM t WHERE n = 1")
        sp.execute("CREATE TABLE w AS SELECT * FROM t")
        assert sp.count("t") == 2  # the transaction reads its own writes
        raise RuntimeError("boom")
    assert sp.count("t") == 3 and "w" not in sp.table_names()
    assert len([p for p in (sp.warehouse / "t").iterdir() if p.name.startswith("v-")]) == 1
    with sp.transaction():
        sp.execute("DELETE FROM t WHERE n = 1")
        sp.execute("CREATE TABLE w AS SELECT * FROM t")
    assert sp.count("t") == 2 and sp.count("w") == 2


def test_crash_between_version_and_pointer_keeps_the_old_table(stores, monkeypatch) -> None:
    sp, _ = stores
    before = _rows(sp)

    def crash(src, dst):  # the process dies after the new version is written
        raise OSError("killed")

    monkeypatch.setattr(_spark_store.os, "replace", crash)
    with pytest.raises(OSError):
        sp.execute("DELETE FROM t")
    monkeypatch.undo()
    versions = [p for p in (sp.warehouse / "t").iterdir() if p.name.startswith("v-")]
    assert len(versions) == 2  # the orphan is on disk, but the pointer names the old one
    reopened = SparkStore(sp.warehouse, session=sp.spark)
    pd.testing.assert_frame_equal(_rows(reopened), before)
    reopened.execute("DELETE FROM t WHERE n = 1")  # the next swap collects the orphan
    versions = [p for p in (sp.warehouse / "t").iterdir() if p.name.startswith("v-")]
    assert len(versions) == 1
    assert (sp.warehouse / "t" / POINTER).read_text() == versions[0].name
    assert reopened.count("t") == 2


def test_load_arrow_modes_and_errors(stores) -> None:
    sp, _ = stores
    df = pd.DataFrame({"k": ["z"], "n": [7], "ts": [pd.Timestamp("2025-02-01", tz="UTC")]})
    assert sp.load_arrow("t", df) == 1
    got = sp.sql("SELECT n, x, ts FROM t WHERE k = 'z'")
    assert got["n"].tolist() == [7] and got["x"].isna().all()
    assert got["ts"].tolist() == [pd.Timestamp("2025-02-01")]  # stored as naive UTC
    sp.load_arrow("t2", df, mode="replace")
    with pytest.raises(CIPError, match="already exists"):
        sp.load_arrow("t2", df, mode="create")
    with pytest.raises(CIPError, match="cannot store"):
        sp.load_arrow("t", pd.DataFrame({"n": ["not a number"]}))
    with pytest.raises(CIPError, match="placeholders"):
        sp.execute("DELETE FROM t WHERE n = ?", [])


def test_driver_side_duckdb_leaves_the_jvm_its_memory(spark, tmp_path, monkeypatch) -> None:
    """DuckDB's default (80 % of the RAM) next to a 40 % driver JVM ran the machine out of
    memory at 50 M events: the driver-side DuckDB gets what the JVM leaves of 80 %."""
    monkeypatch.setattr(_spark_store, "_ram_gib", lambda: 20.0)
    limit = _spark_store.driver_duckdb_limit
    assert limit("local[2]") == "6.0GiB"  # heap 8 GiB (40 %): 16 - 1.25 x 8
    assert limit("spark://h:7077") == "14.8GiB"  # Spark's 1 GiB default driver heap
    assert limit("local[*]", {"spark.driver.memory": "2048m"}) == "13.5GiB"
    assert limit("local[*]", {"spark.driver.memory": "64g"}) == "1.0GiB"  # never below 1 GiB
    with pytest.raises(CIPError, match="memory size"):
        limit("local[*]", {"spark.driver.memory": "lots"})
    sp = SparkStore(tmp_path / "wh", master="local[2]", session=spark)
    sp.execute(DDL)
    con = sp._register_duck(["t"])
    assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "6.0 GiB"
    sp.close()


def test_big_results_reach_the_driver_through_files_unchanged(
    stores, monkeypatch, tmp_path
) -> None:
    """A query over many rows is collected through Parquet files (no maxResultSize): the
    same rows, column names, types and order as ``toArrow()``."""
    sp, _ = stores
    sp.execute("CREATE TABLE big AS SELECT range AS n, range % 7 AS g FROM range(5000)")
    # without adaptive coalescing the sorted result spans several part files (it would be
    # merged into one at this size), so the part files' order is what is checked
    key = "spark.sql.adaptive.coalescePartitions.enabled"
    previous = sp.spark.conf.get(key)
    sp.spark.conf.set(key, "false")
    queries = [
        "SELECT * FROM t ORDER BY k",
        "SELECT n, g, n * 0.5 AS half FROM big ORDER BY g DESC, n",  # several sorted parts
        "SELECT g, count(*), sum(n) FROM big GROUP BY g ORDER BY g",  # names Parquet refuses
        "SELECT k, k FROM t ORDER BY k",  # duplicate names
        "SELECT k, ts, CAST(ts AS DATE) AS d, ok, x FROM t WHERE n > 99",  # empty
        "SELECT k, CAST(ts AS TIMESTAMPTZ) AS tz, CAST(x AS DECIMAL(18, 2)) AS m FROM t ORDER BY k",
    ]
    try:
        _same_through_files(sp, queries, monkeypatch)
        sp.spark.sql(queries[1]).write.parquet(str(tmp_path / "sorted"))
        assert len(list((tmp_path / "sorted").glob("part-*.parquet"))) > 1
    finally:
        sp.spark.conf.set(key, previous)


def _same_through_files(sp, queries: list[str], monkeypatch) -> None:
    direct = [sp.arrow(q) for q in queries]
    collected = sp._collect_via_files
    calls: list[int] = []

    def spy(df):
        calls.append(1)
        return collected(df)

    monkeypatch.setattr(_spark_store, "COLLECT_VIA_FILES_ROWS", 0)
    monkeypatch.setattr(sp, "_collect_via_files", spy)
    via = [sp.arrow(q) for q in queries]
    assert len(calls) == len(queries)
    for q, a, b in zip(queries, direct, via, strict=True):
        assert a.schema == b.schema, q
        assert a.equals(b), q
    assert via[1].column("n").to_pylist()[:3] == [6, 13, 20]
    assert not list((sp._tempdir).glob("collect-*"))  # the files are gone
