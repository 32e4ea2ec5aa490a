"""Erasure building blocks on tiny stores with known answers (fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cip.pipelines._privacy_files import scrub_exports
from cip.profiles import Suppressor, erase_persons, rewrite_duckdb
from cip.profiles._person_sql import hmac_sql, install_key
from cip.profiles.errors import CIPError, ConflictError, NotFoundError
from cip.profiles.identity import IdentityOptions, unify
from cip.profiles.ingest import ingest_source
from cip.profiles.privacy import hash_identifier
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store
from hypothesis import given, settings
from hypothesis import strategies as st

SALT = bytes(range(32))
OPTS = IdentityOptions()
CUSTOMERS = SourceConfig(
    name="crm",
    table="customers",
    path="crm.csv",
    columns={"customer_id": "cid", "email": "mail", "phone": "tel", "ts": "at", "city": "city"},
)


def _crm(folder: Path, rows: list[str]) -> None:
    (folder / "crm.csv").write_text("cid,mail,tel,at,city\n" + "\n".join(rows) + "\n")


@pytest.fixture
def shop(tmp_path: Path):
    """Ann (2 records, one with her phone), Bob, and Cat + Dan sharing one e-mail (blocked)."""
    _crm(
        tmp_path,
        [
            "A1,Ann@Example.com,,2024-01-01,Leeds",
            "A1,,07911 123456,2024-01-02,Leeds",
            "B1,bob@example.com,,2024-01-03,York",
            "C1,family@example.com,,2024-01-04,Bath",
            "D1,family@example.com,,2024-01-05,Bath",
        ],
    )
    store = open_store("duckdb", path=tmp_path / "cip.duckdb")
    ingest_source(store, CUSTOMERS, base_dir=tmp_path)
    unify(store, OPTS, max_persons_per_identifier={"customer_id": 1, "email": 1})
    yield store, tmp_path
    store.close()


def _count(store, sql: str) -> int:
    return int(store.sql(sql).iloc[0, 0])


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["email", "phone", "customer_id"]), value=st.text(max_size=40))
def test_sql_hmac_equals_the_python_hash(kind: str, value: str) -> None:
    con = duckdb.connect()
    key = install_key(con, SALT)
    got = con.execute(f"SELECT {hmac_sql('?', '?', key)} FROM {key}", [kind, value]).fetchone()[0]
    assert got == hash_identifier(kind, value, SALT)


def test_one_identifier_erases_the_whole_person(shop) -> None:
    store, _ = shop
    rep = erase_persons(store, ["email:ann@EXAMPLE.com "], salt=SALT, options=OPTS)
    assert rep.persons == 1 and rep.rows_deleted["customers"] == 2  # the phone-only record too
    assert rep.identifiers == {"customer_id": 1, "email": 1, "phone": 1}
    assert _count(store, "SELECT count(*) FROM customers WHERE customer_id = 'A1'") == 0
    assert _count(store, "SELECT count(*) FROM customers") == 3
    assert _count(store, "SELECT count(*) FROM profiles") == 3  # Bob, Cat, Dan
    assert rep.leftovers == {} and rep.tombstones_added == 4  # 3 identifiers + the unified id
    audit = store.sql("SELECT detail FROM _audit_log")["detail"].iloc[0]
    assert "example" not in audit.lower() and "123456" not in audit


def test_a_shared_identifier_is_removed_but_its_holders_stay(shop) -> None:
    store, _ = shop
    blocked = store.sql(
        "SELECT status FROM identity_map WHERE identifier_value = 'family@example.com'"
    )
    assert list(blocked["status"]) == ["blocked"]
    rep = erase_persons(store, ["email:family@example.com"], salt=SALT, options=OPTS)
    assert rep.persons == 0 and rep.values_removed == {"customers": 2}
    rows = store.sql("SELECT customer_id, email FROM customers WHERE customer_id IN ('C1', 'D1')")
    assert sorted(rows["customer_id"]) == ["C1", "D1"] and rows["email"].isna().all()
    assert _count(store, "SELECT count(*) FROM identity_blocked") == 0
    assert _count(store, "SELECT count(*) FROM profiles") == 4


def test_erasure_is_all_or_nothing(shop, monkeypatch) -> None:
    store, _ = shop
    before = {t: store.count(t) for t in ("customers", "identity_map", "profiles", "record_map")}

    def boom(store, *a, **k):  # a failing statement after the raw tables were emptied
        store.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr("cip.profiles.erasure._other_tables", boom)
    with pytest.raises(
        CIPError, match=r"erasure failed \(CatalogException\); the store is unchanged"
    ):
        erase_persons(store, ["customer_id:A1"], salt=SALT, options=OPTS)
    assert {t: store.count(t) for t in before} == before
    assert store.count("_tombstones") == 0 and store.count("_audit_log") == 0
    monkeypatch.undo()  # and the store is usable: the same erasure now succeeds
    assert erase_persons(store, ["customer_id:A1"], salt=SALT, options=OPTS).persons == 1


def test_a_failure_outside_the_store_commits_nothing(shop) -> None:
    store, _ = shop
    seen = {}

    def files(report):  # e.g. an export that cannot be rewritten
        seen["ids"] = sorted(k for k, _ in report.identifiers_erased)
        raise CIPError("cannot rewrite an export")

    with pytest.raises(CIPError, match="cannot rewrite an export"):
        erase_persons(store, ["customer_id:A1"], salt=SALT, options=OPTS, on_erased=files)
    assert seen["ids"] == ["customer_id", "email", "phone"]  # the hook sees every identifier
    assert store.count("customers") == 5 and store.count("_tombstones") == 0


def test_unknown_inputs_change_nothing(shop) -> None:
    store, _ = shop
    with pytest.raises(NotFoundError, match="identifier 2 \\(email\\) is not known"):
        erase_persons(store, ["customer_id:A1", "email:zed@example.com"], salt=SALT, options=OPTS)
    assert store.count("customers") == 5


def test_ids_left_in_other_tables_only_are_erased(shop) -> None:
    store, _ = shop
    store.execute("CREATE TABLE scores (unified_id VARCHAR, score DOUBLE)")
    store.execute("INSERT INTO scores VALUES ('u_stale', 0.5), ('u_other', 0.1)")
    rep = erase_persons(store, unified_ids=["u_stale"], salt=SALT, options=OPTS)
    assert rep.rows_deleted == {"scores": 1} and store.count("scores") == 1


def test_reingest_suppresses_erased_rows_and_loads_the_rest(shop) -> None:
    store, folder = shop
    erase_persons(store, ["customer_id:A1"], salt=SALT, options=OPTS)
    _crm(
        folder,
        [
            "A1,Ann@Example.com,,2024-01-01,Leeds",  # loaded before, erased since
            ",,+44 7911 123456,2024-02-01,Leeds",  # her phone written another way
            ",,7911 123456,2024-02-03,Leeds",  # and without any prefix (phonenumbers decides)
            "X9,,,2024-02-02,",  # nobody's: NULL e-mail and phone must not matter
            ",ANN@example.com,,not a date,Leeds",  # bad row of hers: not quarantined again
            ",zoe@example.com,,not a date,Hull",  # bad row of someone else: quarantined
        ],
    )
    sup = Suppressor.from_store(store, SALT, OPTS.normaliser_kwargs())
    rep = ingest_source(store, CUSTOMERS, base_dir=folder, suppressor=sup)
    assert (rep.rows_loaded, rep.rows_suppressed, rep.rows_quarantined) == (1, 4, 1)
    assert _count(store, "SELECT count(*) FROM customers WHERE customer_id = 'X9'") == 1
    assert _count(store, "SELECT count(*) FROM quarantine WHERE raw_record ILIKE '%ann@%'") == 0
    assert _count(store, "SELECT count(*) FROM quarantine WHERE raw_record LIKE '%zoe@%'") == 1


def test_without_tombstones_there_is_no_suppressor(tmp_path: Path) -> None:
    with open_store("duckdb") as store:
        assert Suppressor.from_store(store, SALT) is None


def test_rewrite_drops_deleted_bytes_and_keeps_everything_else(tmp_path: Path) -> None:
    db = tmp_path / "cip.duckdb"
    secret = "erase-me-7f3a9c@example.com"
    with open_store("duckdb", path=db) as store:
        store.execute(
            "CREATE TABLE t AS SELECT i, 'row ' || i AS v FROM range(20000) r(i) "
            f"UNION ALL SELECT -1, '{secret}'"
        )
        store.execute("CREATE VIEW v AS SELECT count(*) AS n FROM t")
        store.execute("DELETE FROM t WHERE i = -1")
    assert secret.encode() in db.read_bytes()  # deleted, but still in the file
    info = rewrite_duckdb(db)
    assert secret.encode() not in db.read_bytes() and not Path(f"{db}.wal").exists()
    assert info["bytes_after"] > 0 and not list(tmp_path.glob(".cip.duckdb.rewrite-*"))
    with open_store("duckdb", path=db, read_only=True) as store:
        assert int(store.sql("SELECT n FROM v")["n"].iloc[0]) == 20000


def test_rewrite_refuses_a_store_another_process_holds(tmp_path: Path) -> None:
    db = tmp_path / "cip.duckdb"
    open_store("duckdb", path=db).close()
    code = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(30)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        before = db.read_bytes()
        with pytest.raises(ConflictError, match="cannot rewrite the store now"):
            rewrite_duckdb(db)
        assert db.read_bytes() == before
    finally:
        proc.kill()
        proc.wait()


def test_exports_lose_the_persons_rows_only(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("unified_id,email\nu_1,ann@example.com\nu_2,bob@example.com\n")
    (tmp_path / "b.jsonl").write_text('{"unified_id": "u_2"}\n{"unified_id": "u_1"}\n')
    (tmp_path / "c.csv").write_text("nothing,here\n1,2\n")
    assert scrub_exports(tmp_path, ["u_1", "ann@example.com"]) == {"a.csv": 1, "b.jsonl": 1}
    assert "ann" not in (tmp_path / "a.csv").read_text()
    assert "bob@example.com" in (tmp_path / "a.csv").read_text()
    assert (tmp_path / "c.csv").read_text() == "nothing,here\n1,2\n"


@pytest.mark.postgres
def test_erasure_and_suppression_on_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    _crm(
        tmp_path,
        [
            "A1,Ann@Example.com,,2024-01-01,Leeds",
            "A1,,07911 123456,2024-01-02,Leeds",
            "B1,bob@example.com,,2024-01-03,York",
            ",ann@example.com,,not a date,Leeds",
        ],
    )
    with open_store("postgres", url=pg_url, schema=pg_schema) as store:
        ingest_source(store, CUSTOMERS, base_dir=tmp_path)
        unify(store, OPTS)
        rep = erase_persons(store, ["phone:+44 7911 123456"], salt=SALT, options=OPTS)
        assert rep.persons == 1 and rep.leftovers == {}
        assert rep.rows_deleted["customers"] == 2 and rep.rows_deleted["quarantine"] == 1
        assert store.count("customers") == 1 and store.count("profiles") == 1
        sup = Suppressor.from_store(store, SALT, OPTS.normaliser_kwargs())
        again = ingest_source(store, CUSTOMERS, base_dir=tmp_path, suppressor=sup)
        assert (again.rows_suppressed, again.rows_already_present) == (3, 1)
        assert store.count("customers") == 1 and store.count("quarantine") == 0


def test_without_identity_resolution_the_customer_id_is_the_person(tmp_path: Path) -> None:
    _crm(tmp_path, ["A1,ann@example.com,,2024-01-01,Leeds", "B1,bob@example.com,,2024-01-02,York"])
    with open_store("duckdb") as store:
        ingest_source(store, CUSTOMERS, base_dir=tmp_path)
        store.execute(
            "CREATE TABLE scores AS SELECT * FROM (VALUES ('A1', 0.3), ('B1', 0.4)) s(unified_id, score)"
        )
        rep = erase_persons(store, ["email:Ann@Example.com"], salt=SALT, options=OPTS)
        assert rep.persons == 1 and rep.rows_deleted == {"customers": 1, "scores": 1}
        assert list(store.sql("SELECT unified_id FROM scores")["unified_id"]) == ["B1"]
