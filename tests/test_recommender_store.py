"""interactions_from_store on DuckDB and PostgreSQL: statuses, weights, catalog, record_map, decay."""

from __future__ import annotations

import hashlib

import cip.models as models
import pandas as pd
import pytest
from cip.profiles.contracts import SCHEMAS
from cip.profiles.store import open_store


def _frame(table: str, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in SCHEMAS[table].names:
        if col not in df:
            df[col] = None
    df = df[SCHEMAS[table].names]
    for c in SCHEMAS[table].columns:
        if c.type == "TIMESTAMP":
            df[c.name] = pd.to_datetime(df[c.name])
        elif c.type == "DOUBLE":
            df[c.name] = df[c.name].astype(float)
        elif c.type == "VARCHAR":
            df[c.name] = df[c.name].astype(object)
    return df


def _line(order: str, cust: str, item: str, ts: str, status: str | None = "completed") -> dict:
    return {
        "source": "shop",
        "record_id": f"{order}-{item}",
        "order_id": order,
        "ts": ts,
        "customer_id": cust,
        "item_id": item,
        "quantity": 1.0,
        "unit_price": 2.0,
        "status": status,
    }


def _event(eid: str, cust: str, etype: str, item: str | None, ts: str) -> dict:
    return {
        "source": "web",
        "record_id": eid,
        "event_id": eid,
        "ts": ts,
        "event_type": etype,
        "customer_id": cust,
        "item_id": item,
    }


def _fill(store) -> None:
    store.load_arrow(
        "order_lines",
        _frame(
            "order_lines",
            [
                _line("o1", "c1", "A", "2024-01-01"),
                _line("o1", "c1", "B", "2024-01-01"),
                _line("o2", "c2", "A", "2024-01-05", None),  # no status: completed
                _line("o3", "c2", "B", "2024-01-06", "cancelled"),
                _line("o4", "c1", "C", "2024-01-07", "returned"),
                _line("o5", "c3", "POST", "2024-01-08"),  # not in the catalog
                _line("o6", "c3", "A", "2024-02-01"),  # after as_of below
            ],
        ),
    )
    store.load_arrow(
        "events",
        _frame(
            "events",
            [
                _event("e1", "c1", "product_view", "C", "2024-01-02"),
                _event("e2", "c1", "product_view", "C", "2024-01-02"),  # same time: summed
                _event("e3", "c2", "add_to_cart", "C", "2024-01-03"),
                _event("e4", "c2", "page_view", "A", "2024-01-03"),  # no weight: ignored
                _event("e5", "c3", "product_view", None, "2024-01-03"),  # no item
            ],
        ),
    )
    store.load_arrow(
        "products",
        _frame(
            "products",
            [{"source": "cat", "record_id": f"p{i}", "item_id": i} for i in ("A", "B", "C")],
        ),
        mode="append",
    )


def _check(store) -> None:
    df = models.interactions_from_store(store, as_of="2024-01-31")
    got = {(r.user_id, r.item_id, str(r.ts.date())): r.weight for r in df.itertuples()}
    assert got == {
        ("c1", "A", "2024-01-01"): 5.0,
        ("c1", "B", "2024-01-01"): 5.0,
        ("c2", "A", "2024-01-05"): 5.0,
        ("c1", "C", "2024-01-02"): 2.0,
        ("c2", "C", "2024-01-03"): 3.0,
    }
    assert list(df.columns) == ["user_id", "item_id", "weight", "ts"]
    assert df["ts"].is_monotonic_increasing

    custom = models.interactions_from_store(store, weights={"purchase": 1.0}, as_of="2024-01-31")
    assert set(custom["weight"]) == {1.0} and len(custom) == 3

    decayed = models.interactions_from_store(store, half_life_days=4, as_of="2024-01-09")
    w = decayed.set_index(["user_id", "item_id"])["weight"]
    assert w[("c1", "A")] == pytest.approx(5.0 * 0.5 ** (8 / 4))
    assert w[("c2", "C")] == pytest.approx(3.0 * 0.5 ** (6 / 4))

    everything = models.interactions_from_store(store)
    assert ("c3", "A") in set(zip(everything.user_id, everything.item_id, strict=True))
    rec = models.make_recommender("itemknn").fit(everything)
    assert rec.recommend("c2", n=1)["item_id"].iloc[0] == "B"


def test_interactions_from_duckdb():
    with open_store("duckdb") as store:
        _fill(store)
        _check(store)


@pytest.mark.postgres
def test_interactions_from_postgres(pg_url, pg_schema):
    with open_store("postgres", url=pg_url, schema=pg_schema) as store:
        _fill(store)
        _check(store)


def test_record_map_joins_people_across_records():
    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    with open_store("duckdb") as store:
        _fill(store)
        # c1 and c2 are one person P; the order_lines-derived orders carry md5 record ids
        rows = [
            ("orders", md5(f"shop:order_lines:{o}"), p)
            for o, p in [("o1", "P"), ("o2", "P"), ("o4", "P"), ("o5", "Q"), ("o6", "Q")]
        ]
        rows += [("events", e, "P") for e in ("e1", "e2", "e3")]
        store.load_arrow(
            "record_map",
            pd.DataFrame(rows, columns=["source_table", "record_id", "unified_id"]),
            mode="create",
        )
        df = models.interactions_from_store(store, as_of="2024-01-31")
        assert set(df["user_id"]) == {"P"}
        assert df.loc[df.item_id == "C", "weight"].sum() == pytest.approx(5.0)  # 1 + 1 + 3
        assert len(df[df.item_id == "B"]) == 1  # o3 was cancelled


def test_empty_store_gives_empty_frame():
    with open_store("duckdb") as store:
        df = models.interactions_from_store(store)
        assert df.empty and list(df.columns) == ["user_id", "item_id", "weight", "ts"]
