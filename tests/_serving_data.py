"""Fixtures of the serving tests: a small shop in a real store and a small real recommender.

The shop has two tastes: customers C01-C06 buy garden items (a1-a5), C07-C12
buy kitchen items (b1-b5); a6 and b6 are out of stock, z1 nobody bought.
Identity resolution maps C<k> to U<k> (``identity_map`` + ``record_map``).
The champion is a real item-kNN recommender (``models.recommender``, cosine
similarities), trained and registered by ``train_recommender_run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from cip.profiles.store import open_store

GARDEN = [f"a{i}" for i in range(1, 7)]
KITCHEN = [f"b{i}" for i in range(1, 7)]
CUSTOMERS = [f"C{k:02d}" for k in range(1, 13)]


def uid(customer: str) -> str:
    return "U" + customer[1:]


def purchases() -> pd.DataFrame:
    """Each customer buys 3 of the 5 in-stock items of their taste (rotating)."""
    rows = []
    for k, c in enumerate(CUSTOMERS):
        items = GARDEN[:5] if k < 6 else KITCHEN[:5]
        for j in range(3):
            rows.append((c, items[(k + j) % 5]))
    return pd.DataFrame(rows, columns=["customer_id", "item_id"])


def interactions(exclude_customers: tuple[str, ...] = ("C12",)) -> pd.DataFrame:
    """Training interactions (C12's purchases are left out: a customer the model never saw)."""
    p = purchases()
    p = p[~p["customer_id"].isin(exclude_customers)]
    return pd.DataFrame({"user_id": p["customer_id"].map(uid), "item_id": p["item_id"]})


def build_store(path: Path) -> None:
    """The shop in a DuckDB store, as after ingest, unify, score and segments."""
    st = open_store("duckdb", path=path)
    try:
        st.ensure_schema()
        p = purchases()
        lines = pd.DataFrame(
            {
                "source": "shop",
                "record_id": [f"r{i}" for i in range(len(p))],
                "source_record_id": [f"r{i}" for i in range(len(p))],
                "order_id": [f"o-{c}-{i}" for i, c in enumerate(p["customer_id"])],
                "ts": pd.Timestamp("2024-05-01"),
                "customer_id": p["customer_id"],
                "item_id": p["item_id"],
                "quantity": 1.0,
                "unit_price": 2.5,
                "status": "completed",
            }
        )
        st.load_arrow("order_lines", lines)
        items = [*GARDEN, *KITCHEN, "z1"]
        st.load_arrow(
            "products",
            pd.DataFrame(
                {
                    "source": "catalog",
                    "record_id": items,
                    "item_id": items,
                    "title": [f"Item {i}" for i in items],
                    "category": ["garden"] * 6 + ["kitchen"] * 6 + ["misc"],
                    "price": 3.0,
                    "in_stock": [i not in ("a6", "b6") for i in items],
                    "ingested_at": pd.Timestamp("2024-05-01"),
                }
            ),
        )
        ids = pd.DataFrame(
            {
                "identifier_type": "customer_id",
                "identifier_value": CUSTOMERS,
                "unified_id": [uid(c) for c in CUSTOMERS],
            }
        )
        ids.loc[len(ids)] = ["anonymous_id", "anon-known", "U01"]
        st.load_arrow("identity_map", ids, mode="create")
        st.execute(
            "CREATE TABLE record_map AS SELECT 'orders' AS source_table, o.record_id, "
            "'U' || substr(o.customer_id, 2) AS unified_id FROM orders o"
        )
        prof = pd.DataFrame(
            {
                "unified_id": [uid(c) for c in CUSTOMERS],
                "customer_id": CUSTOMERS,
                "email": [f"{c.lower()}@example.com" for c in CUSTOMERS],
            }
        )
        prof["consent_personalization"] = prof["unified_id"] != "U03"
        prof["consent_personalization_at"] = pd.Timestamp("2024-01-01")
        prof["consent_profiling"] = prof["unified_id"] != "U04"
        prof["consent_profiling_at"] = pd.Timestamp("2024-01-01")
        prof["consent_email"] = prof["unified_id"] != "U05"
        st.load_arrow("profiles", prof, mode="create")
        scores = pd.DataFrame(
            {
                "unified_id": [uid(c) for c in CUSTOMERS[:10]],
                "as_of": pd.Timestamp("2024-06-01"),
                "model": "cip-churn+cip-propensity",
                "model_version": "3+2",
                "churn_probability": np.linspace(0.1, 0.9, 10),
                "purchase_probability": np.linspace(0.9, 0.1, 10),
                "reasons": json.dumps({"churn": ["few orders lately"]}),
                "rfm_segment": "loyal",
                # CLV outputs for the first two only (the others: no CLV champion then)
                "clv": [250.0, 12.5] + [None] * 8,
                "expected_orders": [3.5, 0.25] + [None] * 8,
                "p_alive": [0.95, 0.2] + [None] * 8,
                "next_order_date": pd.to_datetime(["2024-06-09", "2024-07-30"] + [None] * 8).date,
                "clv_model_version": ["4", "4"] + [None] * 8,
            }
        )
        old = scores.iloc[:1].assign(as_of=pd.Timestamp("2024-05-01"), churn_probability=0.5)
        st.load_arrow("scores", pd.concat([old, scores], ignore_index=True), mode="create")
        st.load_arrow(
            "erased",
            pd.DataFrame({"unified_id": ["U11"], "erased_at": [pd.Timestamp("2024-06-02")]}),
            mode="create",
        )
        members = pd.DataFrame(
            {
                "segment": "at_risk",
                "unified_id": [uid(c) for c in CUSTOMERS[:7]],
                "as_of": pd.Timestamp("2024-06-01"),
                "score": np.linspace(0.9, 0.3, 7),
                "reasons": json.dumps(["churn risk high"]),
                "model_version": "3",
            }
        )
        st.load_arrow("segment_members", members, mode="create")
        st.load_arrow(
            "segment_builds",
            pd.DataFrame(
                {
                    "segment": ["at_risk"],
                    "as_of": [pd.Timestamp("2024-06-01")],
                    "kind": ["predictive"],
                    "purpose": ["email"],
                    "description": ["churn_probability >= 0.3"],
                    "members": [7],
                    "entered": [7],
                    "exited": [0],
                    "previous_as_of": [pd.NaT],
                    "digest": ["d"],
                    "built_at": [pd.Timestamp("2024-06-01 01:00")],
                }
            ),
            mode="create",
        )
    finally:
        st.close()


def register(tracking_uri: str, exclude_customers: tuple[str, ...] = ("C12",)) -> str:
    """Train an item-kNN recommender as an MLflow run, register it and make it the champion."""
    from cip.models.recommender.tracking import train_recommender_run
    from cip.models.registry import set_champion

    artifacts = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    _, _, metrics = train_recommender_run(
        interactions(exclude_customers),
        "itemknn",
        tracking_uri=tracking_uri,
        artifact_location=artifacts,
    )
    if not metrics["promoted"]:
        set_champion("cip-recommender", metrics["version"])
    return str(metrics["version"])
