"""The store backends: schema, the orders view, atomic writes."""

from __future__ import annotations

import pandas as pd
import pytest
from cip.profiles.store import open_store


def _lines() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["s", "s", "s"],
            "record_id": ["1", "2", "3"],
            "order_id": ["o1", "o1", "o2"],
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:00", "2024-02-01 00:00"]),
            "customer_id": ["c1", "c1", "c2"],
            "item_id": ["a", "b", "a"],
            "quantity": [1.0, 2.0, 3.0],
            "unit_price": [3.0, 4.0, 1.5],
            "status": ["completed", "completed", "returned"],
        }
    )


def _check_orders_view(store) -> None:
    store.load_arrow("order_lines", _lines())
    direct = pd.DataFrame(
        {
            "source": ["d"],
            "record_id": ["x"],
            "order_id": ["o9"],
            "ts": pd.to_datetime(["2024-03-01"]),
            "customer_id": ["c3"],
            "amount": [42.0],
            "status": ["completed"],
        }
    )
    store.load_arrow("_orders_src", direct)
    got = store.sql("SELECT order_id, amount, status, customer_id FROM orders ORDER BY order_id")
    assert got["order_id"].tolist() == ["o1", "o2", "o9"]
    assert got["amount"].tolist() == [11.0, 4.5, 42.0]
    assert got["status"].tolist() == ["completed", "returned", "completed"]


def test_duckdb_orders_view_unions_lines_and_direct_orders() -> None:
    with open_store("duckdb") as store:
        _check_orders_view(store)


def test_postgres_orders_view_unions_lines_and_direct_orders(pg_url: str, pg_schema: str) -> None:
    with open_store("postgres", url=pg_url, schema=pg_schema) as store:
        _check_orders_view(store)
        assert store.ibis().table("orders").count().execute() == 3


def test_failed_transaction_leaves_store_unchanged(any_store) -> None:
    store = any_store
    store.load_arrow("order_lines", _lines())
    with pytest.raises(RuntimeError), store.transaction():
        store.execute("DELETE FROM order_lines")
        raise RuntimeError("crash mid-write")
    assert store.count("order_lines") == 3


def test_replace_swaps_whole_table(any_store) -> None:
    store = any_store
    store.load_arrow("scores_x", pd.DataFrame({"a": [1, 2]}), mode="replace")
    store.load_arrow("scores_x", pd.DataFrame({"a": [5]}), mode="replace")
    assert store.sql("SELECT a FROM scores_x")["a"].tolist() == [5]
