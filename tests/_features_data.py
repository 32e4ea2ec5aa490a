"""Small data builders for the feature tests (hand fixtures, synthetic parity data, Spark views)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cip.profiles.contracts import SCHEMAS
from cip.profiles.store import Store, open_store

T = pd.Timestamp


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A canonical-table DataFrame from dict rows (missing columns NULL, lineage filled)."""
    sch = SCHEMAS[table]
    df = pd.DataFrame(rows)
    df.insert(0, "source", "test")
    df.insert(1, "record_id", [f"{table}-{i}" for i in range(len(df))])
    for col in sch.columns:
        if col.name not in df:
            df[col.name] = None
    df = df[sch.names]
    types = {"TIMESTAMP": "datetime64[us]", "DOUBLE": "float64", "VARCHAR": "str"}
    for col in sch.columns:
        if col.type in types:
            df[col.name] = df[col.name].astype(types[col.type])
        elif col.type == "BOOLEAN":
            df[col.name] = df[col.name].astype("boolean")
    return df


def make_store(
    orders: list[dict] | None = None,
    lines: list[dict] | None = None,
    events: list[dict] | None = None,
    products: list[dict] | None = None,
    store: Store | None = None,
) -> Store:
    """Load hand rows into a (fresh in-memory DuckDB) store; orders go to ``_orders_src``."""
    st = store or open_store("duckdb")
    for table, physical, rows in (
        ("orders", "_orders_src", orders),
        ("order_lines", "order_lines", lines),
        ("events", "events", events),
        ("products", "products", products),
    ):
        if rows:
            st.load_arrow(physical, frame(table, rows))
    return st


def synthetic(n_customers: int = 60, seed: int = 7) -> dict[str, pd.DataFrame]:
    """A small random shop: orders (direct and from lines), events, products.

    Amounts have whole cents; timestamps whole seconds; some records lack a
    customer_id or session_id; every status, channel and event type occurs.
    """
    rng = np.random.default_rng(seed)
    start = T("2023-01-01").value // 10**9
    span = 600 * 86400
    cust = [f"c{i:03d}" for i in range(n_customers)]

    def ts(n: int) -> pd.Series:
        return pd.to_datetime(start + rng.integers(0, span, n), unit="s").astype("datetime64[us]")

    visitors = [f"v{i:03d}" for i in range(max(2, n_customers // 5))]  # events only

    def ids(n: int, missing: float, pool: list[str] = cust) -> list[str | None]:
        pick = rng.choice(pool, n)
        return [None if rng.random() < missing else c for c in pick]

    n_o = n_customers * 6
    orders = [
        {
            "order_id": f"d{i}",
            "ts": t,
            "customer_id": c,
            "amount": round(float(rng.integers(100, 20000)) / 100, 2),
            "status": rng.choice(["completed"] * 6 + ["returned", "cancelled", None]),
            "channel": rng.choice(["web", "app", "store", "phone", None]),
        }
        for i, (t, c) in enumerate(zip(ts(n_o), ids(n_o, 0.05), strict=True))
    ]
    items = [f"i{k}" for k in range(12)]
    products = [
        {"item_id": it, "category": (["toys", "books", "garden", None][k % 4]), "price": 9.5}
        for k, it in enumerate(items)
    ]
    lines = []
    n_l = n_customers * 3
    for i, (t, c) in enumerate(zip(ts(n_l), ids(n_l, 0.05), strict=True)):
        status = rng.choice(["completed"] * 5 + ["returned", "cancelled"])
        for _ in range(int(rng.integers(1, 4))):
            lines.append(
                {
                    "order_id": f"l{i}",
                    "ts": t,
                    "customer_id": c,
                    "item_id": str(rng.choice(items + ["nocat"])),
                    "quantity": float(rng.integers(1, 5)),
                    "unit_price": round(float(rng.integers(50, 5000)) / 100, 2),
                    "status": status,
                    "channel": "web",
                }
            )
    types = [
        "page_view",
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "checkout",
        "purchase",
        "search",
        "email_send",
        "email_open",
        "email_click",
        "review",
        "login",
    ]
    n_e = n_customers * 100
    events = []
    for i, (t, c) in enumerate(zip(ts(n_e), ids(n_e, 0.1, cust + visitors), strict=True)):
        et = str(rng.choice(types))
        events.append(
            {
                "event_id": f"e{i}",
                "ts": t,
                "event_type": et,
                "customer_id": c,
                "session_id": None
                if rng.random() < 0.3
                else f"s{rng.integers(0, n_customers * 8)}",
                "item_id": str(rng.choice(items)) if "view" in et or "cart" in et else None,
                "channel": rng.choice(["web", "app"]),
                "rating": float(rng.integers(1, 6))
                if et == "review" and rng.random() < 0.8
                else None,
            }
        )
    return {
        "orders": frame("orders", orders),
        "order_lines": frame("order_lines", lines),
        "events": frame("events", events),
        "products": frame("products", products),
    }


def load_synthetic(store: Store, data: dict[str, pd.DataFrame]) -> Store:
    for table, df in data.items():
        store.load_arrow("_orders_src" if table == "orders" else table, df)
    return store


_SPARK_TYPES = {
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "TIMESTAMP": "TIMESTAMP",
    "BOOLEAN": "BOOLEAN",
    "BIGINT": "BIGINT",
    "DATE": "DATE",
}


def to_spark(spark: Any, store: Store, tables: tuple[str, ...] | None = None) -> list[str]:
    """Copy the canonical tables of ``store`` into Spark temporary views (same names)."""
    names = []
    for name in tables or ("orders", "order_lines", "events", "products"):
        sch = SCHEMAS[name]
        ddl = ", ".join(f"`{c.name}` {_SPARK_TYPES[c.type]}" for c in sch.columns)
        cols = ", ".join(f'"{c}"' for c in sch.names)
        data = store.arrow(f'SELECT {cols} FROM "{name}"')
        spark.createDataFrame(data, schema=ddl).createOrReplaceTempView(name)
        names.append(name)
    return names
