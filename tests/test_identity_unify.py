"""``unify`` on a store: stable ids, merges, splits, guard, stitching, profiles."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from cip.profiles.identity import (
    ForbiddenLink,
    IdentityOptions,
    forbid_link,
    pairwise_scores,
    person_report,
    unify,
)
from cip.profiles.store import open_store

T0 = pd.Timestamp("2024-01-01")


def _rows(table: str, rows: list[dict], source: str = "src") -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "source", df.pop("source").fillna(source) if "source" in df else source)
    df["source_record_id"] = df["record_id"]
    df["ingested_at"] = T0
    df["ts"] = pd.to_datetime(df["ts"])
    if table == "events" and "event_type" not in df:
        df["event_type"] = "page_view"
    return df


def load(store, table: str, rows: list[dict], source: str = "src") -> None:
    store.load_arrow("_orders_src" if table == "orders" else table, _rows(table, rows, source))


def rmap(store) -> dict[str, str]:
    df = store.sql("SELECT record_id, unified_id FROM record_map")
    return dict(zip(df["record_id"], df["unified_id"], strict=True))


@pytest.fixture
def store():
    with open_store("duckdb") as s:
        yield s


def test_records_link_through_shared_identifiers(store) -> None:
    load(
        store,
        "customers",
        [
            {"record_id": "c1", "ts": "2024-01-01", "customer_id": "A", "email": "Ann@X.com"},
            {"record_id": "c2", "ts": "2024-01-02", "customer_id": "B", "email": "bob@x.com"},
            {
                "record_id": "c3",
                "ts": "2024-01-03",
                "email": " ann@x.com",
                "phone": "020 7946 0958",
            },
        ],
    )
    load(
        store,
        "orders",
        [
            {
                "record_id": "o1",
                "ts": "2024-02-01",
                "order_id": "1",
                "phone": "+44 20 7946 0958",
                "amount": 5.0,
            },
            {
                "record_id": "o2",
                "ts": "2024-02-02",
                "order_id": "2",
                "email": "not-an-email",
                "amount": 5.0,
            },
        ],
    )
    res = unify(store)
    m = rmap(store)
    assert m["c1"] == m["c3"] == m["o1"] != m["c2"]
    assert "o2" not in m  # no valid identifier: belongs to nobody
    assert res.persons == 2 and res.invalid["email"] == 1 and res.mode == "full"
    ids = store.sql("SELECT identifier_type, identifier_value FROM identity_map ORDER BY 1, 2")
    assert ("phone", "+442079460958") in set(map(tuple, ids.to_numpy()))


def test_two_runs_give_identical_ids_full_or_incremental(store) -> None:
    load(
        store,
        "customers",
        [
            {
                "record_id": f"c{i}",
                "ts": "2024-01-01",
                "customer_id": f"C{i}",
                "email": f"p{i}@x.com",
            }
            for i in range(20)
        ],
    )
    unify(store)
    first = rmap(store)
    again = unify(store)
    assert rmap(store) == first and again.mode == "incremental" and again.records_new == 0
    unify(store, incremental=False)
    assert rmap(store) == first
    assert all(u.startswith("u_") and len(u) == 18 for u in first.values())


def test_a_store_rebuilt_with_the_same_seed_gives_the_same_ids() -> None:
    rows = [
        {"record_id": f"c{i}", "ts": "2024-01-01", "customer_id": f"C{i}", "email": f"p{i}@x.com"}
        for i in range(10)
    ]
    maps = []
    for seed in ("s3cret", "s3cret", None, "other"):
        with open_store("duckdb") as s:
            load(s, "customers", rows)
            unify(s, IdentityOptions(id_salt=seed))
            maps.append(rmap(s))
    assert maps[0] == maps[1]  # same records, same seed: same persons, same ids
    assert set(maps[2].values()).isdisjoint(maps[0].values())  # random seed
    assert set(maps[3].values()).isdisjoint(maps[0].values())
    assert "s3cret" not in repr(IdentityOptions(id_salt="s3cret"))


def _two_persons_then_bridge(store) -> tuple[str, str]:
    load(
        store,
        "customers",
        [
            {"record_id": "c1", "ts": "2024-01-01", "customer_id": "A", "email": "a@x.com"},
            {"record_id": "c2", "ts": "2024-03-01", "customer_id": "B", "email": "b@x.com"},
        ],
    )
    unify(store, now=datetime(2024, 3, 2))
    ua, ub = rmap(store)["c1"], rmap(store)["c2"]
    assert ua != ub
    # new data: both e-mails turn out to share one phone -> one person
    load(
        store,
        "events",
        [
            {"record_id": "e1", "ts": "2024-04-01", "email": "a@x.com", "phone": "020 7946 0958"},
            {"record_id": "e2", "ts": "2024-04-02", "email": "b@x.com", "phone": "020 7946 0958"},
        ],
    )
    return ua, ub


def test_merge_keeps_the_older_id_and_records_history(store) -> None:
    ua, ub = _two_persons_then_bridge(store)
    res = unify(store, now=datetime(2024, 4, 3))
    m = rmap(store)
    assert res.mode == "incremental" and res.merges == 1
    assert m["c1"] == m["c2"] == m["e1"] == m["e2"] == ua  # A was seen first
    h = store.sql("SELECT * FROM identity_history")
    assert h[["kind", "unified_id", "other_id"]].values.tolist() == [["merge", ua, ub]]
    assert h["identifier_value"].iloc[0] in ("+442079460958", "b@x.com")
    assert h["evidence_record_id"].iloc[0] in ("e1", "e2")
    assert store.count("profiles") == 1


def test_split_after_forbidden_link_restores_both_persons(store) -> None:
    ua, ub = _two_persons_then_bridge(store)
    unify(store, now=datetime(2024, 4, 3))
    forbid_link(store, "email:A@x.com", "email:b@x.com", reason="different people")
    res = unify(store, now=datetime(2024, 4, 4))
    m = rmap(store)
    assert res.splits == 1
    assert m["c1"] == m["e1"] == ua and m["c2"] == m["e2"] == ub  # both ids come back
    h = store.sql("SELECT kind, unified_id, other_id, reason FROM identity_history ORDER BY ts")
    assert h[["kind", "unified_id", "other_id"]].values.tolist() == [
        ["merge", ua, ub],
        ["split", ua, ub],
    ]
    assert "forbade the link" in h["reason"].iloc[1]
    links = store.sql("SELECT status, count(*) AS n FROM identity_links GROUP BY 1")
    assert dict(zip(links["status"], links["n"], strict=True))["cut"] == 1
    rep = person_report(store, unified_id=ub)
    assert rep["active"] and [r["kind"] for r in rep["history"]] == ["merge", "split"]


def test_forbidden_identifier_from_config_is_not_used(store) -> None:
    ua, ub = _two_persons_then_bridge(store)
    opts = IdentityOptions(forbidden_links=(ForbiddenLink("phone:+44 20 7946 0958"),))
    unify(store, opts)
    m = rmap(store)
    assert m["c1"] == m["e1"] == ua and m["c2"] == m["e2"] == ub
    b = store.sql("SELECT identifier_type, reason FROM identity_blocked")
    assert b.values.tolist() == [["phone", "forbidden"]]


def test_placeholder_phone_shared_by_50_people_does_not_merge_them(store) -> None:
    load(
        store,
        "customers",
        [
            {
                "record_id": f"c{i}",
                "ts": "2024-01-01",
                "email": f"p{i}@x.com",
                "phone": "+44 20 7946 0000",
            }  # a valid number used as a placeholder
            for i in range(50)
        ]
        + [{"record_id": "o", "ts": "2024-01-01", "phone": "020 7946 0000"}],
    )
    res = unify(store)
    m = rmap(store)
    assert len({m[f"c{i}"] for i in range(50)}) == 50 and res.persons == 50
    assert "o" not in m  # a record with only the blocked phone belongs to nobody
    b = store.sql("SELECT identifier_value, reason, persons, max_persons FROM identity_blocked")
    assert b.values.tolist() == [["+442079460000", "guard", 50, 3]]
    # a shared family phone (2 persons) stays under the limit and links them
    load(
        store,
        "customers",
        [
            {"record_id": "f1", "ts": "2024-01-01", "email": "mum@x.com", "phone": "0113 496 0001"},
            {"record_id": "f2", "ts": "2024-01-01", "email": "dad@x.com", "phone": "0113 496 0001"},
        ],
    )
    unify(store)
    assert rmap(store)["f1"] == rmap(store)["f2"]


def test_cookie_only_views_before_login_join_the_person(store) -> None:
    load(
        store,
        "customers",
        [{"record_id": "c1", "ts": "2023-06-01", "customer_id": "A", "email": "a@x.com"}],
    )
    load(
        store,
        "events",
        [
            {"record_id": "v1", "ts": "2024-01-01", "anonymous_id": "cookie-1"},
            {"record_id": "v2", "ts": "2024-01-02", "anonymous_id": "cookie-1"},
        ],
    )
    unify(store)
    before = rmap(store)
    assert before["v1"] == before["v2"] != before["c1"]  # an anonymous person so far
    load(
        store,
        "events",
        [
            {
                "record_id": "login",
                "ts": "2024-01-03",
                "anonymous_id": "cookie-1",
                "customer_id": "A",
                "event_type": "login",
            },
        ],
    )
    unify(store)
    m = rmap(store)
    assert m["v1"] == m["v2"] == m["login"] == m["c1"]
    prof = store.sql("SELECT * FROM profiles")
    assert len(prof) == 1 and prof["event_records"].iloc[0] == 3
    assert prof["known"].iloc[0] and list(prof["anonymous_ids"].iloc[0]) == ["cookie-1"]
    # the known customer (first seen 2023) keeps its id; the cookie person is merged in
    assert m["c1"] == before["c1"]


def test_profile_survivorship_and_consent(store) -> None:
    load(
        store,
        "customers",
        [
            {
                "record_id": "c1",
                "ts": "2024-01-01",
                "customer_id": "A",
                "first_name": "Ann",
                "city": "Leeds",
                "consent_email": True,
                "consent_sms": True,
            },
            {
                "record_id": "c2",
                "ts": "2024-02-01",
                "customer_id": "A",
                "first_name": None,
                "city": "York",
                "consent_email": False,
            },
            {
                "record_id": "c3",
                "ts": "2024-03-01",
                "customer_id": "A",
                "first_name": "Annie",
                "city": "Hull",
                "source": "web",
            },
        ],
        source="crm",
    )
    load(
        store,
        "events",
        [
            {
                "record_id": "k1",
                "ts": "2024-02-15",
                "customer_id": "A",
                "event_type": "consent",
                "properties": '{"purpose": "email", "granted": true}',
            },
            {
                "record_id": "k2",
                "ts": "2024-04-01",
                "customer_id": "A",
                "event_type": "consent",
                "properties": '{"purpose": "sms", "granted": false}',
            },
            {
                "record_id": "k3",
                "ts": "2024-05-01",
                "customer_id": "A",
                "event_type": "consent",
                "properties": "not json",
            },
        ],
    )
    unify(store)
    p = store.sql("SELECT * FROM profiles").iloc[0]
    assert p["first_name"] == "Annie" and p["city"] == "Hull"  # most recent non-null
    assert p["consent_email"] and not p["consent_sms"] and not p["consent_push"]
    assert p["consent_email_at"] == pd.Timestamp("2024-02-15")
    assert p["record_count"] == 6 and p["source_count"] == 3  # crm, web, src (events)
    assert p["first_seen"] == pd.Timestamp("2024-01-01")
    assert p["last_seen"] == pd.Timestamp("2024-05-01")
    # per-trait source priority: the CRM's city wins over the newer web one
    unify(store, IdentityOptions(survivorship={"city": ("crm",)}), incremental=False)
    assert store.sql("SELECT city FROM profiles")["city"].iloc[0] == "York"


def test_incremental_equals_full_and_touches_only_new_records(store) -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    rows, truth = [], {}
    for i in range(300):
        p = int(rng.integers(0, 80))
        truth[f"r{i}"] = p
        rows.append(
            {
                "record_id": f"r{i}",
                "ts": f"2024-01-{1 + i % 28:02d}",
                "customer_id": f"C{p}" if rng.random() < 0.4 else None,
                "email": f"p{p}@x.com" if rng.random() < 0.5 else None,
                "anonymous_id": f"k{p}-{i % 3}" if rng.random() < 0.6 else None,
            }
        )
    rows = [r for r in rows if r["customer_id"] or r["email"] or r["anonymous_id"]]
    load(store, "events", rows[:150])
    unify(store)
    load(store, "events", rows[150:])
    inc = unify(store)
    assert inc.mode == "incremental" and inc.records_new == len(rows) - 150
    assert inc.merges > 0  # the second batch joins persons of the first
    after_inc = rmap(store)
    prof_inc = store.sql("SELECT * FROM profiles ORDER BY unified_id")
    unify(store, incremental=False)
    assert rmap(store) == after_inc  # same persons and same ids
    prof_full = store.sql("SELECT * FROM profiles ORDER BY unified_id")
    cols = [c for c in prof_full.columns if c != "updated_at"]
    pd.testing.assert_frame_equal(prof_inc[cols], prof_full[cols])
    assert len(after_inc) == len(rows)
    scores = pairwise_scores([truth[k] for k in after_inc], list(after_inc.values()))
    assert scores["precision"] == 1.0 and scores["recall"] > 0.5


def test_line_derived_orders_are_mapped_by_view_record_id(store) -> None:
    import hashlib

    lines = _rows(
        "order_lines",
        [
            {
                "record_id": "l1",
                "ts": "2024-01-01",
                "order_id": "9",
                "customer_id": "A",
                "item_id": "x",
                "quantity": 1.0,
                "unit_price": 2.0,
            },
            {
                "record_id": "l2",
                "ts": "2024-01-01",
                "order_id": "9",
                "customer_id": "A",
                "item_id": "y",
                "quantity": 1.0,
                "unit_price": 3.0,
            },
        ],
        source="shop",
    )
    store.load_arrow("order_lines", lines)
    unify(store)
    got = store.sql("SELECT source_table, record_id FROM record_map")
    assert got.values.tolist() == [["orders", hashlib.md5(b"shop:order_lines:9").hexdigest()]]


def test_unify_on_postgres(pg_url: str, pg_schema: str) -> None:
    with open_store("postgres", url=pg_url, schema=pg_schema) as pg:
        ua, ub = _two_persons_then_bridge(pg)
        load(
            pg,
            "events",
            [
                {
                    "record_id": "k1",
                    "ts": "2024-04-05",
                    "customer_id": "B",
                    "event_type": "consent",
                    "properties": '{"purpose": "email", "granted": true}',
                },
                {
                    "record_id": "k2",
                    "ts": "2024-04-06",
                    "customer_id": "B",
                    "event_type": "consent",
                    "properties": "{broken",
                },
            ],
        )
        res = unify(pg, now=datetime(2024, 4, 3))
        m = rmap(pg)
        assert res.merges == 1 and m["c2"] == m["k1"] == ua
        forbid_link(pg, "email:a@x.com", "email:b@x.com")
        res = unify(pg, now=datetime(2024, 4, 7))
        m = rmap(pg)
        assert res.splits == 1 and m["c1"] == ua and m["c2"] == m["k1"] == ub
        p = pg.sql("SELECT unified_id, consent_email, emails FROM profiles ORDER BY first_seen")
        assert p["unified_id"].tolist() == [ua, ub]
        assert p["consent_email"].tolist() == [False, True]
        assert list(p["emails"].iloc[1]) == ["b@x.com"]


def test_incremental_in_batches_with_guard_and_cuts_equals_full(store) -> None:
    import numpy as np

    rng = np.random.default_rng(11)
    rows = []
    for i in range(240):
        p = int(rng.integers(0, 40))
        rows.append(
            {
                "record_id": f"r{i}",
                "ts": f"2024-02-{1 + i % 28:02d}",
                "customer_id": f"C{p}" if rng.random() < 0.3 else None,
                # a shared test address on many records, and one family e-mail for persons 0-1
                "email": "test@test.com"
                if i % 17 == 0
                else (f"fam{p // 2}@x.com" if p < 2 else f"p{p}@x.com")
                if rng.random() < 0.6
                else None,
                "phone": f"0113 496 {p:04d}" if rng.random() < 0.3 else None,
                "anonymous_id": f"k{p}" if rng.random() < 0.5 else None,
            }
        )
    rows = [r for r in rows if any(r[k] for k in ("customer_id", "email", "phone", "anonymous_id"))]
    opts = IdentityOptions(
        max_persons_per_identifier={"email": 2, "phone": 1, "anonymous_id": 1},
        forbidden_links=(ForbiddenLink("customer_id:C0", "customer_id:C1"),),
    )
    for part in (rows[:80], rows[80:160], rows[160:]):
        load(store, "events", part)
        unify(store, opts)
    inc_map = rmap(store)
    inc_blocked = store.sql("SELECT identifier_value FROM identity_blocked ORDER BY 1")
    prof_inc = store.sql("SELECT * FROM profiles ORDER BY unified_id")
    unify(store, opts, incremental=False)
    assert rmap(store) == inc_map
    assert "test@test.com" in inc_blocked["identifier_value"].tolist()
    pd.testing.assert_frame_equal(
        store.sql("SELECT identifier_value FROM identity_blocked ORDER BY 1"), inc_blocked
    )
    prof_full = store.sql("SELECT * FROM profiles ORDER BY unified_id")
    cols = [c for c in prof_full.columns if c != "updated_at"]
    pd.testing.assert_frame_equal(prof_inc[cols], prof_full[cols])
