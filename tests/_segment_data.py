"""Small hand-made store contents for the activation tests (loaded with store.load_arrow).

Two snapshots, A1 = 2024-03-01 and A2 = 2024-04-01, of seven persons u1..u7
(u7 only has events; u8 appears at A2). Expected answers are written next to
each test.
"""

from __future__ import annotations

import json

import pandas as pd
from cip.activation import SegmentDefinition
from cip.profiles.store import Store, open_store

A1 = pd.Timestamp("2024-03-01")
A2 = pd.Timestamp("2024-04-01")
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


def features(as_of: pd.Timestamp) -> pd.DataFrame:
    if as_of == A1:
        rows = [
            ("u1", "Champions", 1000.0, 900.0, 2.0),
            ("u2", "Loyal", 500.0, 400.0, 0.0),
            ("u3", "At Risk", 200.0, 150.0, 0.0),
            ("u4", "At Risk", 100.0, 80.0, 1.0),
            ("u5", "Lost", 50.0, None, 0.0),
            ("u6", "Champions", 800.0, 700.0, 0.0),
        ]
    else:
        rows = [
            ("u1", "Loyal", 1000.0, 900.0, 0.0),
            ("u2", "Loyal", 500.0, 400.0, 0.0),
            ("u3", "Lost", 200.0, 150.0, 0.0),
            ("u4", "At Risk", 100.0, 80.0, 0.0),
            ("u5", "Lost", 50.0, None, 0.0),
            ("u6", "Champions", 800.0, 700.0, 0.0),
            ("u8", "New Customers", 30.0, 30.0, 0.0),
        ]
    df = pd.DataFrame(
        rows, columns=["unified_id", "rfm_segment", "monetary", "monetary_365d", "add_to_cart_7d"]
    )
    df.insert(1, "as_of", pd.Series([as_of] * len(df), dtype="datetime64[us]"))
    df["recency_days"] = [float(i * 10) for i in range(len(df))]
    df["frequency"] = [float(len(df) - i) for i in range(len(df))]
    return df


def scores(as_of: pd.Timestamp) -> pd.DataFrame:
    churn = {"u1": 0.1, "u2": 0.8, "u3": 0.9, "u4": 0.75, "u5": 0.5, "u6": 0.7, "u8": 0.2}
    buy = {"u1": 0.9, "u2": 0.3, "u3": 0.2, "u4": 0.1, "u5": 0.05, "u6": 0.6, "u8": 0.4}
    ids = list(features(as_of)["unified_id"])
    return pd.DataFrame(
        {
            "unified_id": ids,
            "as_of": pd.Series([as_of] * len(ids), dtype="datetime64[us]"),
            "model": "churn+propensity",
            "model_version": "churn:3,propensity:2",
            "churn_probability": [churn[u] for u in ids],
            "purchase_probability": [buy[u] for u in ids],
            "reasons": [json.dumps([f"model says {u}"]) for u in ids],
            "rfm_segment": list(features(as_of)["rfm_segment"]),
        }
    )


def profiles() -> pd.DataFrame:
    # consent_email: u1 yes, u2 yes, u3 NULL (no statement), u4 no, u5 yes but no email,
    # u6 yes, u7 yes, u8 yes. consent_sms: only u1.
    ids = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]
    return pd.DataFrame(
        {
            "unified_id": ids,
            "customer_id": [f"c{i}" for i in range(1, 9)],
            "email": [f"{u}@example.com" if u != "u5" else None for u in ids],
            "phone": ["+441234567801"] + [None] * 7,
            "country": ["GB", "GB", "FR", "GB", "DE", "FR", "GB", "GB"],
            "consent_email": pd.array([True, True, None, False, True, True, True, True], "boolean"),
            "consent_sms": pd.array([True, False, None, None, None, None, None, None], "boolean"),
            "consent_push": pd.array([None] * 8, "boolean"),
            "first_seen": pd.Series([A1 - 100 * D] * 8, dtype="datetime64[us]"),
            "last_seen": pd.Series([A1 - D] * 8, dtype="datetime64[us]"),
        }
    )


def events() -> pd.DataFrame:
    """Events around A1; customer ids differ from unified ids (record_map links them)."""
    ev = [
        # abandoned cart (24 h before A1)
        ("u1", A1 - 2 * H, "add_to_cart", "i1"),  # member, n=1
        ("u2", A1 - 5 * H, "add_to_cart", "i1"),
        ("u2", A1 - 1 * H, "purchase", "i1"),  # bought since: not a member
        ("u3", A1 - 30 * H, "add_to_cart", "i1"),  # outside the window
        ("u4", A1 - 10 * H, "add_to_cart", "i1"),
        ("u4", A1 - 5 * H, "purchase", "i1"),
        ("u4", A1 - 3 * H, "add_to_cart", "i2"),  # added again after buying: member, n=2
        ("u6", A1 - 4 * H, "add_to_cart", "i1"),  # completed order at A1-2h (orders): not
        ("u5", A1, "add_to_cart", "i1"),  # at as_of: not seen by the A1 build
        # abandoned browse (3+ views of one category in 7 days, no purchase)
        ("u1", A1 - 1 * D, "product_view", "i1"),
        ("u1", A1 - 2 * D, "product_view", "i2"),
        ("u1", A1 - 3 * D, "product_view", "i1"),  # 3 x Shoes: member, score 3
        ("u1", A1 - 3 * D, "product_view", "i3"),
        ("u2", A1 - 1 * D, "product_view", "i3"),
        ("u2", A1 - 2 * D, "product_view", "i3"),
        ("u2", A1 - 3 * D, "product_view", "i3"),  # 3 x Hats but bought: not
        ("u3", A1 - 1 * D, "product_view", "i1"),
        ("u3", A1 - 2 * D, "product_view", "i1"),
        ("u3", A1 - 2 * D, "product_view", "i3"),  # 2 Shoes + 1 Hats: not
        ("u7", A1 - 1 * D, "product_view", "i3"),
        ("u7", A1 - 2 * D, "product_view", "i3"),
        ("u7", A1 - 6 * D, "product_view", "i3"),  # 3 x Hats, no features row: member
        ("u7", A1 - 8 * D, "product_view", "i1"),  # outside the window
    ]
    df = pd.DataFrame(ev, columns=["uid", "ts", "event_type", "item_id"])
    df["ts"] = df["ts"].astype("datetime64[us]")
    df["record_id"] = [f"e{i}" for i in range(len(df))]
    df["customer_id"] = "c" + df["uid"].str[1:]
    df["source"] = "web"
    return df


def load(store: Store, *, identity: bool = True, with_scores: bool = True) -> Store:
    """Load A1 and A2 features (and scores, profiles, events, products, orders)."""
    store.load_arrow("features_default", pd.concat([features(A1), features(A2)]), mode="replace")
    if with_scores:
        store.load_arrow("scores", pd.concat([scores(A1), scores(A2)]), mode="replace")
    ev = events()
    if identity:
        store.load_arrow("profiles", profiles(), mode="replace")
        rm = pd.DataFrame(
            {"source_table": "events", "record_id": ev["record_id"], "unified_id": ev["uid"]}
        )
        rm = pd.concat(
            [
                rm,
                pd.DataFrame(
                    {"source_table": ["orders"], "record_id": ["o1"], "unified_id": ["u6"]}
                ),
            ]
        )
        store.load_arrow("record_map", rm, mode="replace")
    else:
        ev["customer_id"] = ev["uid"]  # identity not run: customer_id is the person
    store.load_arrow(
        "events", ev[["source", "record_id", "ts", "event_type", "customer_id", "item_id"]]
    )
    store.load_arrow(
        "products",
        pd.DataFrame(
            {
                "source": "cat",
                "record_id": ["p1", "p2", "p3"],
                "item_id": ["i1", "i2", "i3"],
                "category": ["Shoes", "Shoes", "Hats"],
            }
        ),
    )
    store.load_arrow(
        "_orders_src",
        pd.DataFrame(
            {
                "source": ["shop"],
                "record_id": ["o1"],
                "order_id": ["o1"],
                "ts": pd.Series([A1 - 2 * H], dtype="datetime64[us]"),
                "customer_id": ["c6" if identity else "u6"],
                "amount": [10.0],
                "status": ["completed"],
            }
        ),
    )
    return store


def new_store(**kw) -> Store:
    return load(open_store("duckdb"), **kw)


#: Every RFM segment of the fixtures: u1..u6 at A1 (purpose email).
EVERYONE = SegmentDefinition(
    name="everyone",
    kind="rfm",
    purpose="email",
    score="monetary",
    rfm_segments=["Champions", "Loyal", "At Risk", "Lost", "New Customers"],
)
