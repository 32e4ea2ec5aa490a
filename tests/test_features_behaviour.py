"""Behavioural features (events, sessions, funnel, e-mail, reviews, categories) by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.features import FeatureParams, build_features, catalog, load_inputs
from cip.features.build import output_specs

from tests._features_data import T, make_store

AS_OF = "2024-07-01"


def _ev(ts: str, et: str, who: str | None = "P", **kw) -> dict:
    return {"ts": T(ts), "event_type": et, "customer_id": who, **kw}


EVENTS = [
    _ev("2024-06-28 10:00", "page_view", session_id="s1"),
    _ev("2024-06-28 10:05", "product_view", session_id="s1", item_id="i1"),
    _ev("2024-06-28 10:06", "add_to_cart", session_id="s1", item_id="i1"),
    _ev("2024-06-28 10:10", "purchase", session_id="s1"),
    _ev("2024-06-20 12:00", "product_view", session_id="s2", item_id="i3"),
    _ev("2024-06-20 12:01", "product_view", session_id="s2", item_id="i1"),
    _ev("2024-05-15 09:00", "product_view", item_id="i2"),  # no session: day 05-15
    _ev("2024-05-15 18:00", "search"),  # same day-session
    _ev("2024-05-16 08:00", "page_view"),  # next day: another session
    _ev("2024-04-01 12:00", "add_to_cart", session_id="s3", item_id="i2"),
    _ev("2024-06-10 08:00", "email_send"),
    _ev("2024-06-11 09:00", "email_open"),
    _ev("2024-06-11 09:01", "email_click"),
    _ev("2024-03-01 08:00", "email_send"),
    _ev("2024-06-15 12:00", "review", rating=5.0),
    _ev("2024-02-01 12:00", "review", rating=2.0),
    _ev("2024-01-10 12:00", "review"),  # unrated review
    _ev("2023-05-01 12:00", "page_view", session_id="s0"),  # outside every window
    _ev("2024-07-01 00:00", "page_view", session_id="s9"),  # at as_of: invisible
    _ev("2024-06-30 12:00", "email_open", who="Q"),
    _ev("2024-06-30 12:00", "page_view", who=None, session_id="anon"),  # no person
]
LINES = [
    {"order_id": "L1", "ts": T("2024-06-28 10:10"), "customer_id": "P", "item_id": "i1", "quantity": 2.0, "unit_price": 10.0},
    {"order_id": "L1", "ts": T("2024-06-28 10:10"), "customer_id": "P", "item_id": "i3", "quantity": 1.0, "unit_price": 15.0},
    {"order_id": "L1", "ts": T("2024-06-28 10:10"), "customer_id": "P", "item_id": "i4", "quantity": 1.0, "unit_price": 100.0},
    {"order_id": "L2", "ts": T("2024-03-01"), "customer_id": "P", "item_id": "i2", "quantity": 1.0, "unit_price": 5.0, "status": "returned"},
    {"order_id": "L3", "ts": T("2023-01-01"), "customer_id": "P", "item_id": "i3", "quantity": 9.0, "unit_price": 9.0},
    {"order_id": "R1", "ts": T("2024-06-01"), "customer_id": "R", "item_id": "i3", "quantity": 1.0, "unit_price": 8.0},
]  # fmt: skip
PRODUCTS = [
    {"item_id": "i1", "category": "toys"},
    {"item_id": "i2", "category": "toys"},
    {"item_id": "i3", "category": "books"},
    {"item_id": "i4", "category": None},
]


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    with make_store(lines=LINES, events=EVENTS, products=PRODUCTS) as store:
        return build_features(store, AS_OF).set_index("unified_id")


def test_population_and_columns_match_catalog(feats: pd.DataFrame) -> None:
    assert feats.index.tolist() == ["P", "Q", "R"]
    assert feats.columns.tolist() == ["as_of", *(s.name for s in catalog())]


def test_event_counts_per_type_and_window(feats: pd.DataFrame) -> None:
    p = feats.loc["P"]
    assert [p[f"events_{w}d"] for w in (7, 30, 90, 365)] == [4, 10, 13, 17]
    assert [p[f"product_view_{w}d"] for w in (7, 30, 90, 365)] == [1, 3, 4, 4]
    assert [p[f"page_view_{w}d"] for w in (7, 30, 90, 365)] == [1, 1, 2, 2]
    assert [p[f"add_to_cart_{w}d"] for w in (7, 30, 90, 365)] == [1, 1, 1, 2]
    assert [p[f"email_send_{w}d"] for w in (7, 30, 90, 365)] == [0, 1, 1, 2]
    assert (p.purchase_7d, p.search_90d, p.search_30d, p.checkout_365d) == (1, 1, 0, 0)
    r = feats.loc["R"]
    assert r.events_365d == 0 and r.sessions_365d == 0
    assert feats.loc["Q", "email_open_7d"] == 1


def test_sessions(feats: pd.DataFrame) -> None:
    p = feats.loc["P"]
    # 7d: s1 | 30d: s1, s2, day 06-15 | 90d: + days 05-15, 05-16 | 365d: + s3, days 02-01, 01-10
    assert [p[f"sessions_{w}d"] for w in (7, 30, 90, 365)] == [1, 3, 5, 8]
    assert feats.loc["Q", "sessions_365d"] == 0  # e-mail events are not visits


def test_funnel_recency_email_reviews(feats: pd.DataFrame) -> None:
    p, q, r = feats.loc["P"], feats.loc["Q"], feats.loc["R"]
    assert p.view_to_cart_rate == 0.5  # 2 carts / 4 views
    assert p.cart_to_purchase_rate == 0.5  # 1 purchase / 2 carts
    assert p.days_since_last_view == pytest.approx(2 + 835 / 1440, abs=1e-12)
    assert p.days_since_last_cart == pytest.approx(2 + 834 / 1440, abs=1e-12)
    assert p.days_since_last_email_open == 19.625
    assert p.days_since_last_visit == pytest.approx(2 + 830 / 1440, abs=1e-12)
    assert (p.email_open_rate, p.email_click_rate) == (0.5, 0.5)
    assert (p.reviews, p.avg_review_score, p.low_reviews) == (3, 3.5, 1)
    assert q.days_since_last_email_open == 0.5 and np.isnan(q.email_open_rate)
    assert np.isnan(q.days_since_last_visit) and np.isnan(q.view_to_cart_rate)
    assert np.isnan(r.days_since_last_view) and np.isnan(r.avg_review_score)
    assert r.reviews == 0 and r.low_reviews == 0


def test_categories_and_tenure(feats: pd.DataFrame) -> None:
    p, q, r = feats.loc["P"], feats.loc["Q"], feats.loc["R"]
    assert p.categories_viewed == 2  # toys (i1, i2), books (i3)
    assert p.distinct_categories == 2  # L1: toys 20, books 15; i4 has no category
    assert p.top_category_share == pytest.approx(20 / 35, abs=1e-12)
    assert (r.distinct_categories, r.top_category_share, r.categories_viewed) == (1, 1.0, 0)
    assert q.distinct_categories == 0 and np.isnan(q.top_category_share)
    assert p.tenure_days == 547.0  # order L3 on 2023-01-01 precedes the first event (2023-05-01)
    assert q.tenure_days == 0.5
    assert np.isnan(q.recency_days) and q.frequency == 0
    # order-derived features come from the lines: L1 = 20 + 15 + 100
    assert (
        p.frequency == 1
        and p.monetary == 135.0 - 5.0
        and p.recency_days == pytest.approx(2 + 830 / 1440, abs=1e-12)
    )


def test_events_without_products_drop_category_columns() -> None:
    with make_store(lines=LINES, events=EVENTS) as store:
        df = build_features(store, AS_OF)
        inputs = load_inputs(store)
    assert inputs.products is None and inputs.events is not None
    names = [s.name for s in output_specs(inputs, FeatureParams())]
    assert df.columns.tolist() == ["unified_id", "as_of", *names]
    assert "categories_viewed" not in df and "distinct_categories" not in df
    assert "events_30d" in df and "sessions_30d" in df


def test_empty_event_table_means_absent_event_features() -> None:
    with make_store(lines=LINES, products=[{"item_id": "i1", "category": None}]) as store:
        df = build_features(store, AS_OF)
    assert not any(c.startswith(("events_", "sessions_", "days_since_last_")) for c in df)
    assert "distinct_categories" not in df  # no product with a category
    assert df["unified_id"].tolist() == ["P", "R"]
