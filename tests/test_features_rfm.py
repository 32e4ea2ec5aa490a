"""RFM and order features on a hand-computed fixture (orders only), scores and segments."""

from __future__ import annotations

import math

import ibis
import numpy as np
import pandas as pd
import pytest
from cip.features import (
    RFM_COLUMNS,
    SEGMENT_GRID,
    SEGMENTS,
    FeatureParams,
    build_features,
    catalog,
    rfm_segment,
)
from cip.profiles.errors import ConfigError

from tests._features_data import T, make_store

AS_OF = "2024-07-01"

ORDERS = [
    # A: three completed, one return, one cancellation, one order exactly at as_of
    {"order_id": "a1", "ts": T("2024-01-01"), "customer_id": "A", "amount": 100.0, "status": "completed", "channel": "web"},
    {"order_id": "a2", "ts": T("2024-03-01"), "customer_id": "A", "amount": 50.0, "status": "completed", "channel": "web"},
    {"order_id": "a3", "ts": T("2024-06-01"), "customer_id": "A", "amount": 30.0, "status": "completed", "channel": "app"},
    {"order_id": "a4", "ts": T("2024-06-10"), "customer_id": "A", "amount": 20.0, "status": "returned"},
    {"order_id": "a5", "ts": T("2024-06-20"), "customer_id": "A", "amount": 40.0, "status": "cancelled", "channel": "web"},
    {"order_id": "a6", "ts": T("2024-07-01"), "customer_id": "A", "amount": 999.0, "status": "completed", "channel": "web"},
    # B: one old purchase outside the 365-day lookback, one recent; status missing = completed
    {"order_id": "b1", "ts": T("2023-01-01"), "customer_id": "B", "amount": 200.0, "status": "completed", "channel": "store"},
    {"order_id": "b2", "ts": T("2024-05-02"), "customer_id": "B", "amount": 10.0, "channel": "web"},
    # C: only a cancelled order
    {"order_id": "c1", "ts": T("2024-06-25"), "customer_id": "C", "amount": 15.0, "status": "cancelled"},
    # D: only after as_of -> not in the population; guest order -> no person
    {"order_id": "d1", "ts": T("2024-07-05"), "customer_id": "D", "amount": 5.0, "status": "completed"},
    {"order_id": "g1", "ts": T("2024-06-01"), "customer_id": None, "amount": 7.0, "status": "completed"},
]  # fmt: skip


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    with make_store(orders=ORDERS) as store:
        df = build_features(store, AS_OF)
    return df.set_index("unified_id")


def test_population_is_everyone_with_an_order_before_as_of(feats: pd.DataFrame) -> None:
    assert feats.index.tolist() == ["A", "B", "C"]
    assert (feats["as_of"] == T(AS_OF)).all()


def test_rfm_hand_computed(feats: pd.DataFrame) -> None:
    a, b, c = feats.loc["A"], feats.loc["B"], feats.loc["C"]
    # A: last completed 2024-06-01 (the order at exactly as_of is not visible)
    assert a.recency_days == 30.0
    assert a.frequency == 3
    assert a.monetary == 180.0 - 20.0
    assert a.avg_order_value == 60.0
    assert a.tenure_days == 182.0  # 2024-01-01 -> 2024-07-01
    assert a.days_since_first == 182.0
    assert a.ipi_mean_days == 76.0  # gaps 60 and 92 days
    assert a.ipi_std_days == pytest.approx(32 / math.sqrt(2), abs=1e-12)
    assert a.monetary_365d == 160.0
    # B: 2023-01-01 is outside [2023-07-02, 2024-07-01)
    assert b.recency_days == 60.0
    assert b.frequency == 1
    assert b.monetary == 10.0
    assert b.avg_order_value == 10.0
    assert b.tenure_days == 547.0
    assert b.days_since_first == 547.0
    assert b.ipi_mean_days == 487.0
    assert np.isnan(b.ipi_std_days)
    assert b.monetary_365d == 10.0
    # C: never bought
    assert np.isnan(c.recency_days) and np.isnan(c.avg_order_value)
    assert np.isnan(c.days_since_first) and np.isnan(c.ipi_mean_days)
    assert c.frequency == 0 and c.monetary == 0.0 and c.monetary_365d == 0.0
    assert c.tenure_days == 6.0


def test_windows_trends_rates_channels(feats: pd.DataFrame) -> None:
    a, b, c = feats.loc["A"], feats.loc["B"], feats.loc["C"]
    # window starts are inclusive: a3 at 2024-06-01 00:00 is inside the 30-day window
    assert (a.orders_7d, a.orders_30d, a.orders_90d, a.orders_365d) == (0, 1, 1, 3)
    assert (a.revenue_7d, a.revenue_30d, a.revenue_90d, a.revenue_365d) == (0, 30, 30, 180)
    assert (b.orders_30d, b.orders_90d, b.orders_365d, b.revenue_90d) == (0, 1, 1, 10)
    assert a.spend_trend_30d == 1.0  # 30 vs 0
    assert a.spend_trend_90d == pytest.approx((30 - 50) / 80)
    assert (b.spend_trend_30d, b.spend_trend_90d) == (-1.0, 1.0)
    assert np.isnan(c.spend_trend_30d)
    assert a.cancel_rate == pytest.approx(1 / 5)
    assert a.return_rate == pytest.approx(1 / 3)
    assert (b.cancel_rate, b.return_rate) == (0.0, 0.0)
    assert c.cancel_rate == 1.0 and np.isnan(c.return_rate)
    assert a.channel_share_web == pytest.approx(2 / 3)
    assert a.channel_share_app == pytest.approx(1 / 3)
    assert a.channel_share_store == 0.0
    assert b.channel_share_web == 1.0  # the 2023 store order is outside the lookback
    assert np.isnan(c.channel_share_web)


def test_scores_and_segments(feats: pd.DataFrame) -> None:
    # two buyers: ranks 0 and 1 -> scores 1 and 1 + floor(5 * 1 / 2) = 3
    a, b, c = feats.loc["A"], feats.loc["B"], feats.loc["C"]
    assert (a.r_score, a.f_score, a.m_score) == (3, 3, 3)
    assert (b.r_score, b.f_score, b.m_score) == (1, 1, 1)
    assert a.rfm_segment == "Need Attention" and b.rfm_segment == "Lost"
    assert pd.isna(c.r_score) and pd.isna(c.rfm_segment)
    assert str(feats["r_score"].dtype) == "Int64"


def test_orders_only_produces_order_columns_only(feats: pd.DataFrame) -> None:
    expected = [s.name for s in catalog() if s.source_table in ("orders", "orders+events")]
    assert feats.columns.tolist() == ["as_of", *expected]
    assert set(RFM_COLUMNS) <= set(feats.columns)
    assert {"recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"} <= set(
        RFM_COLUMNS
    )
    numeric = feats.drop(columns=["as_of", "rfm_segment", "r_score", "f_score", "m_score"])
    assert set(map(str, numeric.dtypes)) == {"float64", "int64"}


def test_quintile_scores_over_ten_buyers() -> None:
    # customer k has k+1 completed orders of 10, the last one k days before as_of
    orders = []
    for k in range(10):
        for j in range(k + 1):
            ts = T(AS_OF) - pd.Timedelta(days=k + 1 + 30 * j)
            orders.append(
                {"order_id": f"{k}-{j}", "ts": ts, "customer_id": f"k{k}", "amount": 10.0}
            )
    orders.append({"order_id": "tie", "ts": T("2024-06-29"), "customer_id": "tie", "amount": 10.0})
    with make_store(orders=orders) as store:
        df = build_features(store, AS_OF).set_index("unified_id")
    # 11 buyers; frequency ranks: 'tie' and k0 share frequency 1 -> min rank 0
    assert df.loc[["k0", "tie"], "f_score"].tolist() == [1, 1]
    assert df.loc[[f"k{k}" for k in range(1, 10)], "f_score"].tolist() == [
        1 + (5 * (k + 1)) // 11 for k in range(1, 10)
    ]
    # recency: k0 and tie were 1 and 2 days ago; k9 is the oldest
    assert df.loc["k0", "r_score"] == 5 and df.loc["k9", "r_score"] == 1
    assert df.loc["k9", "rfm_segment"] == "Cannot Lose Them"  # R1, F5, M5


def test_rfm_segment_grid_scalar_vector_and_ibis_agree() -> None:
    assert set(SEGMENTS) == {n for row in SEGMENT_GRID.values() for n in row.values()}
    assert rfm_segment(5, 5, 5) == "Champions"
    assert rfm_segment(5, 1, 1) == "New Customers"
    assert rfm_segment(1, 1, 1) == "Lost"
    assert rfm_segment(1, 5, 4) == "Cannot Lose Them"
    assert rfm_segment(3, 1, 2) == "About to Sleep"  # FM = ceil(3 / 2) = 2
    assert rfm_segment(3, 3, 2) == "Need Attention"  # FM = ceil(5 / 2) = 3
    with pytest.raises(ValueError):
        rfm_segment(0, 1, 1)
    grid = pd.DataFrame(
        [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)],
        columns=["r", "f", "m"],
    )
    scalar = [rfm_segment(*row) for row in grid.itertuples(index=False)]
    vector = rfm_segment(grid.r, grid.f, grid.m)
    assert vector.tolist() == scalar
    t = ibis.memtable(grid)
    con = ibis.duckdb.connect()
    in_db = con.to_pandas(t.mutate(s=rfm_segment(t.r, t.f, t.m)).order_by(["r", "f", "m"]))
    assert in_db["s"].tolist() == scalar
    with_na = rfm_segment(pd.Series([5, None]), pd.Series([5, 1]), pd.Series([5, 1]))
    assert with_na.iloc[0] == "Champions" and pd.isna(with_na.iloc[1])


def test_params_change_windows_and_validate() -> None:
    with make_store(orders=ORDERS) as store:
        df = build_features(store, AS_OF, FeatureParams(windows=(14,), lookback_days=200))
    a = df.set_index("unified_id").loc["A"]
    assert "orders_14d" in df and "orders_30d" not in df
    assert a.frequency == 3  # 2024-01-01 is within 200 days
    with pytest.raises(ConfigError, match="positive"):
        FeatureParams(windows=(0,))
