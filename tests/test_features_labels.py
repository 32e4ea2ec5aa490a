"""Labels, the horizon convention, the data-end guard and the training-set builder."""

from __future__ import annotations

import numpy as np
import pytest
from cip.features import (
    FEATURE_SET_VERSION,
    FeatureParams,
    build_labels,
    build_training_set,
    data_end,
)
from cip.profiles.errors import DataError
from cip.profiles.store import open_store

from tests._features_data import T, make_store
from tests.test_features_rfm import ORDERS

EXTRA = [
    # B returns something inside the horizon; E buys long after (extends the data)
    {"order_id": "b3", "ts": T("2024-07-10"), "customer_id": "B", "amount": 4.0, "status": "returned"},
    {"order_id": "e1", "ts": T("2024-09-01 10:00"), "customer_id": "E", "amount": 1.0, "status": "completed"},
    # A buys again exactly at the horizon end (2024-07-31): outside [as_of, as_of + 30 d)
    {"order_id": "a7", "ts": T("2024-07-31"), "customer_id": "A", "amount": 5.0, "status": "completed"},
]  # fmt: skip


@pytest.fixture(scope="module")
def store():
    st = make_store(orders=ORDERS + EXTRA)
    yield st
    st.close()


def test_labels_hand_computed(store) -> None:
    lab = build_labels(store, "2024-07-01", horizon_days=30).set_index("unified_id")
    assert lab.index.tolist() == ["A", "B", "C"]  # D and E have nothing before as_of
    assert (lab["as_of"] == T("2024-07-01")).all()
    # A: the order at exactly as_of (999) is in the horizon; a7 at as_of + 30 d is not
    assert lab.loc["A"].tolist()[1:] == [0.0, 1, 999.0, 1]
    # B: active (2024-05-02), no purchase, a return of 4 -> churned, spend -4
    assert lab.loc["B"].tolist()[1:] == [1.0, 0, -4.0, 1]
    # C: never bought -> not active, churn undefined
    assert np.isnan(lab.loc["C", "churn"])
    assert lab.loc["C"].tolist()[2:] == [0, 0.0, 0]
    assert lab.dtypes.astype(str).tolist() == [
        "datetime64[us]",
        "float64",
        "int64",
        "float64",
        "int64",
    ]


def test_lookback_defines_active(store) -> None:
    # with a 30-day lookback B's last purchase (2024-05-02) is too old: not active
    lab = build_labels(store, "2024-07-01", 30, lookback_days=30).set_index("unified_id")
    assert lab.loc["B", "active"] == 0 and np.isnan(lab.loc["B", "churn"])
    assert lab.loc["A", "active"] == 1  # 2024-06-01 is inside [06-01, 07-01)


def test_data_end_and_horizon_guard(store) -> None:
    assert data_end(store) == T("2024-09-01 10:00")
    build_labels(store, "2024-08-01", horizon_days=31)  # ends 2024-09-01 00:00: observed
    with pytest.raises(DataError, match=r"after the end of the data .*2024-09-01 10:00"):
        build_labels(store, "2024-08-15", horizon_days=30)
    with pytest.raises(DataError, match="latest labelable as_of is 2024-06-03"):
        build_training_set(store, ["2024-06-01", "2024-07-01"], horizon_days=90)


def test_data_end_of_an_empty_store_is_an_error() -> None:
    with open_store("duckdb") as st, pytest.raises(DataError, match="no orders or events"):
        data_end(st)


def test_training_set_stacks_snapshots_with_labels(store) -> None:
    params = FeatureParams(windows=(30,))
    ts = build_training_set(store, ["2024-07-01", "2024-06-01"], horizon_days=30, params=params)
    assert ts.attrs["feature_set_version"] == FEATURE_SET_VERSION
    assert ts.attrs["as_ofs"] == ["2024-06-01", "2024-07-01"]
    assert ts.attrs["horizon_days"] == 30
    assert ts.groupby("as_of").size().to_dict() == {T("2024-06-01"): 2, T("2024-07-01"): 3}
    june = ts[ts.as_of == T("2024-06-01")].set_index("unified_id")
    # June: A bought a3 at exactly 06-01 (in the horizon, not in the features)
    assert june.loc["A", "purchase"] == 1 and june.loc["A", "churn"] == 0.0
    assert june.loc["A", "recency_days"] == 92.0  # last visible purchase 2024-03-01
    # B: active (2024-05-02), nothing in [06-01, 07-01) -> churned
    assert june.loc["B", "active"] == 1 and june.loc["B", "purchase"] == 0
    assert june.loc["B", "churn"] == 1.0
    assert ts.columns[-4:].tolist() == ["churn", "purchase", "future_spend", "active"]
    assert "orders_30d" in ts and "orders_7d" not in ts
    # the attrs survive a Parquet round trip (JSON-friendly)
    assert isinstance(ts.attrs["params"]["windows"], list)


def test_training_set_needs_dates(store) -> None:
    with pytest.raises(DataError, match="at least one"):
        build_training_set(store, [], horizon_days=30)


def test_record_map_defines_the_person() -> None:
    """With the identity step's record_map, two shop accounts can be one person."""
    events = [{"ts": T("2024-06-30"), "event_type": "page_view", "customer_id": None,
               "anonymous_id": "cookie1"}]  # fmt: skip
    with make_store(orders=ORDERS, events=events) as st:
        rm = st.sql(
            "SELECT 'orders' AS source_table, record_id, "
            "CASE WHEN customer_id IN ('A', 'B') THEN 'u1' ELSE 'u-' || customer_id END "
            "AS unified_id FROM orders WHERE customer_id IS NOT NULL AND customer_id <> 'C'"
            " UNION ALL SELECT 'events', record_id, 'u1' FROM events"
        )
        st.load_arrow("record_map", rm, mode="replace")
        from cip.features import build_features

        df = build_features(st, "2024-07-01", FeatureParams(windows=(30,))).set_index("unified_id")
    assert df.index.tolist() == ["u1"]  # C has no mapping; the anonymous event is u1's
    u1 = df.loc["u1"]
    assert u1.frequency == 4 and u1.monetary == 170.0  # A's 180 - 20 plus B's 10
    assert u1.events_30d == 1 and u1.tenure_days == 547.0
    # completed orders of A and B: gaps 365, 60, 62, 30 days
    assert u1.ipi_mean_days == 517 / 4
    assert u1.ipi_std_days == pytest.approx(np.std([365, 60, 62, 30], ddof=1), abs=1e-9)


def test_training_sets_leave_out_persons_who_objected_to_profiling() -> None:
    import pandas as pd
    from cip.features import profiling_objections
    from cip.models.clv.frames import clv_frame

    st = make_store(orders=ORDERS + EXTRA)
    try:
        dates = ["2024-07-01"]
        before = build_training_set(st, dates, horizon_days=30)
        assert "B" in set(before.unified_id) and before.attrs["excluded_no_consent"] == 0
        consent = pd.DataFrame(
            {"unified_id": ["A", "B", "C"], "consent_profiling": [True, False, None]}
        )
        st.load_arrow("profiles", consent.astype({"consent_profiling": "boolean"}), mode="replace")
        after = build_training_set(st, dates, horizon_days=30)
        assert "B" not in set(after.unified_id)  # objected: out of churn/propensity sets
        assert {"A", "C"} <= set(after.unified_id)  # consent true or unknown: kept
        n_b = int((before.unified_id == "B").sum())
        assert len(after) == len(before) - n_b and after.attrs["excluded_no_consent"] == n_b
        clv = clv_frame(st, dates, 30)  # the CLV training set too
        assert "B" not in set(clv.unified_id) and "A" in set(clv.unified_id)
        # as unify writes profiles: no statement is false with a null time, not an objection
        unify_like = consent.assign(
            consent_profiling=[True, False, False],
            consent_profiling_at=pd.to_datetime(["2024-01-02", "2024-03-01", None]),
        )
        st.load_arrow("profiles", unify_like, mode="replace")
        assert profiling_objections(st) == {"B"}
        stated = build_training_set(st, dates, horizon_days=30)
        assert "B" not in set(stated.unified_id) and "C" in set(stated.unified_id)
        assert stated.attrs["excluded_no_consent"] == n_b
    finally:
        st.close()
