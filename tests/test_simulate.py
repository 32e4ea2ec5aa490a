"""The shop simulator: determinism, declarations, mess, truth and planted signal."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from cip.pipelines.cli import main
from cip.pipelines.config import SourceConfig, load_config
from cip.pipelines.simulator import SimulationResult, simulate
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import schema
from cip.profiles.errors import ConfigError

PERSON_SOURCES = (
    "crm_customers",
    "web_events",
    "app_events",
    "email_events",
    "online_orders",
    "store_purchases",
    "reviews",
)


def _reader(result: SimulationResult, name: str) -> str:
    path = result.files[name]
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        return f"read_csv('{path}', all_varchar = true)"
    if fmt == "jsonl":
        return f"read_json('{path}', format = 'newline_delimited')"
    return f"read_parquet('{path}')"


def _decl(result: SimulationResult, name: str) -> dict:
    return next(d for d in result.sources if d["name"] == name)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """One year of a 3,000-person shop, shared by the read-only tests."""
    return simulate(tmp_path_factory.mktemp("shop"), customers=3000, seed=7)


@pytest.fixture(scope="module")
def con(shop: SimulationResult) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    d = shop.out_dir
    c.execute(f"CREATE VIEW truth AS SELECT * FROM '{d}/_truth/person_truth.parquet'")
    c.execute(f"CREATE VIEW persons AS SELECT * FROM '{d}/_truth/persons.parquet'")
    for name in (*PERSON_SOURCES, "products"):
        c.execute(f"CREATE VIEW {name} AS SELECT * FROM {_reader(shop, name)}")
    return c


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    runs = {
        key: simulate(tmp_path / key, customers=300, days=60, seed=seed)
        for key, seed in (("a", 3), ("b", 3), ("c", 4))
    }
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 8 + 4  # eight sources; truth: three tables and a README
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    differ = [r for r in files if (tmp_path / "a" / r).read_bytes() != (tmp_path / "c" / r).read_bytes()]  # fmt: skip
    assert len(differ) >= 10  # everything but the README (and maybe the catalog)
    assert runs["a"].counts == runs["b"].counts
    assert not (tmp_path / "a" / ".simulate-tmp").exists()


def test_declarations_validate_and_map_existing_columns(
    shop: SimulationResult, con: duckdb.DuckDBPyConnection
) -> None:
    assert [d["name"] for d in shop.sources] == ["products", *PERSON_SOURCES]
    for decl in shop.sources:
        src = SourceConfig.model_validate(decl)
        assert decl["path"] == f"sources/{shop.files[src.name].name}"
        cols = {r[0] for r in con.sql(f"DESCRIBE {src.name}").fetchall()}
        for canonical, spec in decl["columns"].items():
            assert canonical in schema(src.table).mappable
            if isinstance(spec, str):
                assert spec in cols, (src.name, spec)
            elif "expr" in spec:  # the expression runs on the file and yields values
                n = con.sql(f"SELECT count({spec['expr']}) FROM {src.name}").fetchall()[0][0]
                assert n > 0, (src.name, canonical)
        if src.table != "products":
            assert "source_record_id" in decl["columns"]


def test_counts_scale_with_customers(tmp_path: Path) -> None:
    small = simulate(tmp_path / "s", customers=250, days=90, seed=1)
    big = simulate(tmp_path / "b", customers=1000, days=90, seed=1)
    for name in ("crm_customers", "web_events", "email_events", "online_orders"):
        ratio = big.counts[name] / small.counts[name]
        assert 3.0 < ratio < 5.3, (name, ratio)
    assert big.counts["products"] == small.counts["products"] == 1500


def test_truth_covers_every_record(shop: SimulationResult, con: duckdb.DuckDBPyConnection) -> None:
    for name in PERSON_SOURCES:
        col = _decl(shop, name)["columns"]["source_record_id"]
        table = _decl(shop, name)["table"]
        missing, extra, n = con.sql(
            f"""SELECT
                  (SELECT count(*) FROM {name} s ANTI JOIN (SELECT * FROM truth WHERE source = '{name}'
                     AND "table" = '{table}') t ON CAST(s."{col}" AS VARCHAR) = t.source_record_id),
                  (SELECT count(*) FROM truth t WHERE source = '{name}' AND "table" = '{table}')
                    - (SELECT count(*) FROM {name}),
                  (SELECT count(*) FROM {name})"""
        ).fetchall()[0]
        assert n > 0 and missing == 0 and extra == 0, name
    for name in ("online_orders", "store_purchases"):  # order level: the order id
        order_col = _decl(shop, name)["columns"]["order_id"]
        diff = con.sql(
            f"""SELECT count(*) FROM (SELECT DISTINCT CAST("{order_col}" AS VARCHAR) AS o FROM {name})
                FULL JOIN (SELECT source_record_id AS o FROM truth
                           WHERE source = '{name}' AND "table" = 'orders') USING (o)
                WHERE o IS NULL OR o NOT IN (SELECT source_record_id FROM truth WHERE "table" = 'orders')"""
        ).fetchall()[0][0]
        assert diff == 0
    # one person per record, and every person id is a simulated person
    dup, unknown = con.sql(
        """SELECT (SELECT count(*) - count(DISTINCT (source, "table", source_record_id)) FROM truth),
                  (SELECT count(*) FROM truth ANTI JOIN persons USING (person_id))"""
    ).fetchall()[0]
    assert dup == 0 and unknown == 0
    readme = (shop.out_dir / "_truth" / "README.txt").read_text()
    assert "never reads" in readme


def test_messy_identifiers(con: duckdb.DuckDBPyConnection) -> None:
    q = lambda sql: con.sql(sql).fetchall()[0][0]  # noqa: E731
    assert (
        q("SELECT count(*) FROM crm_customers WHERE EMail = upper(EMail) AND EMail LIKE '%@%'") > 5
    )
    assert q("SELECT count(*) FROM crm_customers WHERE EMail <> trim(EMail)") > 5
    assert q("SELECT count(*) FROM online_orders WHERE customer_email LIKE '%+shop@gmail.com'") > 0
    assert q("SELECT count(*) FROM crm_customers WHERE regexp_matches(Mobile, '^07\\d{3} ?\\d{6}$')") > 50  # fmt: skip
    assert q("SELECT count(*) FROM crm_customers WHERE Mobile LIKE '+44%' OR Mobile LIKE '0044%'") > 50  # fmt: skip
    # the placeholder phone: a few dozen unrelated people; the family phone: exactly four
    placeholder = q(
        """SELECT count(DISTINCT person_id) FROM crm_customers c JOIN truth t
           ON t.source = 'crm_customers' AND t.source_record_id = c.RecordID WHERE Mobile = '0000000000'"""
    )
    assert 20 <= placeholder <= 60
    shared = con.sql(
        """SELECT regexp_replace(regexp_replace(Mobile, '[^0-9]', '', 'g'), '^(44|0044)', '0') AS p,
                  count(DISTINCT person_id) AS n
           FROM crm_customers c JOIN truth t ON t.source = 'crm_customers' AND t.source_record_id = c.RecordID
           WHERE Mobile <> '0000000000' GROUP BY 1 HAVING n > 1"""
    ).fetchall()
    assert [n for _, n in shared] == [4]
    # some people have two CRM records, and some later records withdraw a consent
    withdrawn = q(
        """SELECT count(*) FROM crm_customers a JOIN crm_customers b
           ON a.CustomerNo = b.CustomerNo AND a.UpdatedAt < b.UpdatedAt
           WHERE (a.OptInEmail = 'Y' AND b.OptInEmail = 'N') OR (a.Profiling = 'yes' AND b.Profiling = 'no')
              OR (a.PushOptIn = 'true' AND b.PushOptIn = 'false')"""
    )
    assert withdrawn > 10
    assert (
        q("SELECT count(*) FROM crm_customers WHERE CustomerNo IS NULL AND EMail IS NOT NULL") > 20
    )
    # guests, and logins that tie a cookie to an account or an e-mail
    assert q("SELECT count(*) FROM online_orders WHERE account_id IS NULL AND customer_email IS NOT NULL") > 50  # fmt: skip
    assert (
        q("""SELECT count(*) FROM web_events WHERE event = 'login' AND cookie_id IS NOT NULL
               AND (account_id IS NOT NULL OR user_email IS NOT NULL)""")
        > 100
    )
    assert (
        q("SELECT count(*) FROM web_events WHERE event <> 'login' AND account_id IS NOT NULL") == 0
    )
    cookies = q("SELECT count(DISTINCT cookie_id) FROM web_events")
    stitched = q("SELECT count(DISTINCT cookie_id) FROM web_events WHERE event = 'login'")
    assert 0 < stitched < cookies  # some cookies are never identified
    types = {r[0] for r in con.sql("SELECT DISTINCT event FROM web_events").fetchall()}
    assert types == {"page_view", "login", "search", "product_view", "add_to_cart", "remove_from_cart", "checkout", "purchase"}  # fmt: skip
    assert q("SELECT count(DISTINCT name) FROM app_events WHERE name = 'AppInstalled'") == 1
    assert q("SELECT count(DISTINCT category) FROM products") == 32


def test_bad_rows_are_listed(shop: SimulationResult, con: duckdb.DuckDBPyConnection) -> None:
    bad = dict(
        con.sql(
            f"SELECT source, count(*) FROM '{shop.out_dir}/_truth/bad_rows.parquet' GROUP BY 1"
        ).fetchall()
    )
    assert set(bad) == {"products", "crm_customers", "web_events", "email_events", "online_orders", "store_purchases", "reviews"}  # fmt: skip
    for name, n in bad.items():
        assert n <= max(3, 0.003 * shop.counts[name]), name
    assert con.sql("SELECT count(*) FROM store_purchases WHERE UnitPrice = 'N/A'").fetchall()[0][0] > 0  # fmt: skip


def test_cli_registers_sources_and_ingest_quarantines_exactly_the_bad_rows(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["sources"] = [
        {"name": "mine", "table": "products", "path": "x.csv", "columns": {"item_id": "id"}},
        {"name": "web_events", "table": "products", "path": "old.csv", "columns": {"item_id": "i"}},
    ]
    ws.config_path.write_text("# my shop\n" + yaml.safe_dump(cfg))
    args = ["--workspace", str(ws.root), "simulate", "--customers", "400", "--days", "90"]
    assert main([*args, "--seed", "2", "--json"]) == 0
    cfg = load_config(ws.config_path)
    names = [s.name for s in cfg.sources]
    assert names[:2] == ["mine", "web_events"] and len(names) == 9  # replaced in place, 7 added
    assert cfg.source("web_events").table == "events"
    assert ws.config_path.read_text().startswith("# my shop\n")  # the header comment is kept
    assert main(args) == 0  # again: replaces, no duplicates
    assert [s.name for s in load_config(ws.config_path).sources] == names

    cfg_raw = yaml.safe_load(ws.config_path.read_text())
    cfg_raw["sources"] = [s for s in cfg_raw["sources"] if s["name"] != "mine"]
    ws.config_path.write_text(yaml.safe_dump(cfg_raw))
    assert main(["--workspace", str(ws.root), "ingest", "--json"]) == 0
    with duckdb.connect(str(ws.store_path), read_only=True) as c:
        quarantined = dict(c.sql("SELECT source, count(*) FROM quarantine GROUP BY 1").fetchall())
        loaded = c.sql(
            f"""SELECT count(*), count(t.person_id) FROM (
                  SELECT source, source_record_id, 'events' AS tbl FROM events
                  UNION ALL SELECT source, source_record_id, 'order_lines' FROM order_lines
                  UNION ALL SELECT source, source_record_id, 'customers' FROM customers) x
                LEFT JOIN '{ws.sources_dir}/_truth/person_truth.parquet' t
                ON t.source = x.source AND t.source_record_id = x.source_record_id AND t."table" = x.tbl"""
        ).fetchall()[0]
    bad = dict(
        duckdb.sql(
            f"SELECT source, count(*) FROM '{ws.sources_dir}/_truth/bad_rows.parquet' GROUP BY 1"
        ).fetchall()
    )
    assert quarantined == bad
    assert loaded[0] > 10_000 and loaded[0] == loaded[1]  # every loaded record is in the truth


def test_timestamps_inside_the_window(con: duckdb.DuckDBPyConnection) -> None:
    lo, hi = con.sql(
        """SELECT min(ts), max(ts) FROM (
             SELECT client_ts AS ts FROM web_events UNION ALL SELECT event_time FROM app_events
             UNION ALL SELECT created_at FROM online_orders
             UNION ALL SELECT TRY_CAST(occurred_at AS TIMESTAMP) FROM email_events
             UNION ALL SELECT try_strptime(TxnDate, '%d/%m/%Y %H:%M:%S') FROM store_purchases)"""
    ).fetchall()[0]
    assert str(lo) >= "2025-01-01" and str(hi) < "2026-01-01"


def test_churn_follows_bad_experience_and_engagement(con: duckdb.DuckDBPyConnection) -> None:
    # churn within 60 days after an order: more likely after a late delivery
    rates = dict(
        con.sql(
            """WITH o AS (SELECT order_no, min(created_at) AS ts, max(delivery_days) AS dd
                          FROM online_orders WHERE order_status = 'COMPLETE' GROUP BY 1)
               SELECT o.dd >= 5 AS late, avg(CASE WHEN p.churned AND p.churn_date >= o.ts::DATE
                      AND p.churn_date < o.ts::DATE + 60 THEN 1.0 ELSE 0.0 END)
               FROM o JOIN truth t ON t."table" = 'orders' AND t.source_record_id = o.order_no
               JOIN persons p USING (person_id)
               WHERE o.ts < TIMESTAMP '2025-10-01' AND o.dd IS NOT NULL GROUP BY 1"""
        ).fetchall()
    )
    assert rates[True] > 1.4 * rates[False]
    eng = dict(con.sql("SELECT churned, avg(engagement) FROM persons GROUP BY 1").fetchall())
    assert eng[False] - eng[True] > 0.2
    churned = con.sql("SELECT avg(churned::INT) FROM persons").fetchall()[0][0]
    assert 0.25 < churned < 0.7  # churn is common but not universal


def test_people_of_the_same_taste_share_items(con: duckdb.DuckDBPyConnection) -> None:
    bought = con.sql(
        """SELECT p.person_id, p.taste, list(DISTINCT o.sku) AS items
           FROM online_orders o JOIN truth t ON t.source = 'online_orders'
             AND t."table" = 'order_lines' AND t.source_record_id = CAST(o.line_id AS VARCHAR)
           JOIN persons p USING (person_id) WHERE o.sku IS NOT NULL GROUP BY ALL"""
    ).df()
    rng = np.random.default_rng(0)
    items = [set(x) for x in bought["items"]]
    taste = bought["taste"].to_numpy()

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([len(items[i] & items[j]) / len(items[i] | items[j]) for i, j in zip(a, b, strict=True)]))  # fmt: skip

    a = rng.integers(0, len(items), 4000)
    b = rng.integers(0, len(items), 4000)
    same = [np.flatnonzero(taste == taste[i]) for i in a]
    b_same = np.array([rng.choice(s) for s in same])
    keep = b_same != a
    assert overlap(a[keep], b_same[keep]) > 4 * overlap(a, b)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="customers"):
        simulate(tmp_path, customers=0)
    with pytest.raises(ConfigError, match="days"):
        simulate(tmp_path, days=2)
    ws = Workspace.init(tmp_path / "ws")
    assert main(["--workspace", str(ws.root), "simulate", "--end", "31/12/2025"]) != 0
    assert load_config(ws.config_path).sources == []  # nothing registered


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.init(tmp_path / "ws")
    capsys.readouterr()
    assert main(["-w", str(ws.root), "simulate", "-n", "50", "-d", "30", "--end", "2024-06-30", "--json"]) == 0  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert info["people"] == 50 and info["replaced"] == []
    assert info["counts"]["crm_customers"] > 0
    assert Path(info["files"]["_truth"]).is_dir()
    first = duckdb.sql(f"SELECT min(client_ts) FROM '{ws.sources_dir}/web_events.parquet'").fetchall()  # fmt: skip
    assert first[0][0].date() >= date(2024, 6, 1)
