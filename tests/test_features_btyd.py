"""The BTYD customer summary: hand-computed answers and point-in-time correctness."""

from __future__ import annotations

import pandas as pd
import pytest
from cip.features.btyd import build_btyd_summary
from cip.profiles.store import ORDERS_SRC, open_store

from tests._models_support import orders_frame


def _orders(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    """Canonical order rows from ``(customer, ts, amount, status)``."""
    base = orders_frame(1).iloc[[0] * len(rows)].reset_index(drop=True)
    ids = [f"h{i}" for i in range(len(rows))]
    base["order_id"] = base["record_id"] = base["source_record_id"] = ids
    base["customer_id"] = [r[0] for r in rows]
    base["ts"] = pd.to_datetime([r[1] for r in rows]).astype("datetime64[us]")
    base["amount"] = [r[2] for r in rows]
    base["status"] = [r[3] for r in rows]
    return base


ROWS = [
    # a: first day 01-01 (two orders), repeat days 01-11 and 01-31; one return; one cancel
    ("a", "2024-01-01 09:00", 10.0, "completed"),
    ("a", "2024-01-01 18:00", 30.0, "completed"),
    ("a", "2024-01-11 12:00", 20.0, "completed"),
    ("a", "2024-01-31 08:00", 40.0, "completed"),
    ("a", "2024-02-01 10:00", 10.0, "returned"),
    ("a", "2024-02-05 10:00", 99.0, "cancelled"),
    # b: one purchase only
    ("b", "2024-02-20 10:00", 50.0, "completed"),
    # c: only a cancelled order -> not in the summary
    ("c", "2024-01-05 10:00", 70.0, "cancelled"),
]


def test_summary_known_answer() -> None:
    with open_store("duckdb") as store:
        store.load_arrow(ORDERS_SRC, _orders(ROWS))
        s = build_btyd_summary(store, "2024-03-01", horizon_days=30).set_index("unified_id")
    assert list(s.index) == ["a", "b"]
    a, b = s.loc["a"], s.loc["b"]
    assert a["frequency"] == 2
    assert a["recency"] == pytest.approx(30.0)  # 01-01 -> 01-31
    assert a["T"] == pytest.approx(60.0)  # 01-01 -> 03-01 (2024 is a leap year)
    # repeat days 20 + 40 over 2, times the net share (100 - 10) / 100
    assert a["monetary_value"] == pytest.approx(30.0 * 0.9)
    # window [01-31, 03-01): completed 40 - returned 10
    assert a["last_period_spend"] == pytest.approx(30.0)
    assert (b["frequency"], b["recency"], b["monetary_value"]) == (0, 0.0, 0.0)
    assert b["T"] == pytest.approx(10.0)  # from the first purchase *day* 02-20
    assert b["last_period_spend"] == pytest.approx(50.0)


def test_summary_is_point_in_time() -> None:
    as_of = pd.Timestamp("2023-12-01")
    with open_store("duckdb") as store:
        df = orders_frame(300, seed=4)
        store.load_arrow(ORDERS_SRC, df[df["ts"] < as_of])
        before = build_btyd_summary(store, as_of, horizon_days=90)
        store.load_arrow(ORDERS_SRC, df[df["ts"] >= as_of])  # the future arrives
        after = build_btyd_summary(store, as_of, horizon_days=90)
        later = build_btyd_summary(store, as_of + pd.Timedelta(days=60))
    assert len(before) > 100
    pd.testing.assert_frame_equal(before, after)
    # and the later summary does see the new orders
    merged = before.merge(later, on="unified_id", suffixes=("", "_later"))
    assert (merged["frequency_later"] >= merged["frequency"]).all()
    assert (merged["frequency_later"] > merged["frequency"]).any()
    assert (merged["T_later"] - merged["T"]).round(6).eq(60.0).all()
