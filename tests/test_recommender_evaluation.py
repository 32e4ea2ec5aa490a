"""Ranking metrics against hand-computed values, and the splits' invariants."""

from __future__ import annotations

import math

import cip.models as models
import numpy as np
import pandas as pd
import pytest
from cip.models import evaluation as ev
from cip.profiles.errors import DataError


@pytest.fixture
def recs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2"],
            "item_id": ["a", "b", "c", "d", "e"],
            "rank": [1, 2, 3, 1, 2],
        }
    )


@pytest.fixture
def truth() -> pd.DataFrame:
    # u1 hits a (rank 1) and c (rank 3); u2 misses; u3 has no recommendations at all
    return pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "c", "f", "g"]})


def test_metrics_by_hand(recs, truth):
    k = 3
    assert ev.precision_at_k(recs, truth, k) == pytest.approx((2 / 3) / 3)
    assert ev.recall_at_k(recs, truth, k) == pytest.approx(1.0 / 3)
    ap_u1 = (1 / 1 + 2 / 3) / 2
    assert ev.map_at_k(recs, truth, k) == pytest.approx(ap_u1 / 3)
    ndcg_u1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ev.ndcg_at_k(recs, truth, k) == pytest.approx(ndcg_u1 / 3)
    assert ev.hit_rate(recs, truth, k) == pytest.approx(1 / 3)
    assert ev.catalog_coverage(recs, 10, k) == pytest.approx(0.5)
    assert ev.catalog_coverage(recs, ["a", "b", "c", "d", "e"], k=1) == pytest.approx(0.4)


def test_cutoff_and_map_normaliser(recs, truth):
    # at k=1 u1 has one hit out of min(1, 2) possible: AP 1, NDCG 1, recall 1/2
    per = ev.per_user_metrics(recs, truth, k=1)
    assert per.loc["u1", "ap"] == pytest.approx(1.0)
    assert per.loc["u1", "ndcg"] == pytest.approx(1.0)
    assert per.loc["u1", "recall"] == pytest.approx(0.5)
    assert per.loc["u3", "hits"] == 0  # a user without recommendations still counts


def test_ranks_from_row_order_and_id_types():
    recs = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 20]})
    truth = pd.DataFrame({"user_id": [1.0], "item_id": ["20"]})  # float / string ids still match
    assert ev.ndcg_at_k(recs, truth, 2) == pytest.approx(1 / math.log2(3))


def test_temporal_split_keeps_only_known_users():
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c"],
            "item_id": [1, 2, 3, 4],
            "ts": pd.to_datetime(["2021-01-01", "2021-03-01", "2021-03-02", "2021-01-05"]),
        }
    )
    train, test = ev.temporal_split(df, "2021-02-01", "2021-03-02")
    assert set(train["item_id"]) == {1, 4}
    assert list(test["item_id"]) == [2]  # b has no history, 3 is after the end
    with pytest.raises(DataError):
        ev.temporal_split(df, "2020-01-01")


def test_random_split_per_user_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"user_id": np.repeat(np.arange(50), 8), "item_id": rng.integers(0, 1000, 400)}
    ).drop_duplicates()
    train, test = ev.random_split_per_user(df, test_size=0.25, random_state=3)
    assert len(train) + len(test) == len(df)
    sizes = df.groupby("user_id").size()
    got = test.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    assert (got == sizes - np.round(sizes * 0.75)).all()
    again = ev.random_split_per_user(df, test_size=0.25, random_state=3)[1]
    pd.testing.assert_frame_equal(test, again)
    single = pd.DataFrame({"user_id": ["x"], "item_id": [1]})
    assert len(ev.random_split_per_user(single)[1]) == 0  # too few to split


def test_leave_last_out():
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": [1, 2, 3, 4],
            "ts": pd.to_datetime(["2021-01-03", "2021-01-01", "2021-01-02", "2021-01-01"]),
        }
    )
    train, test = ev.leave_last_out(df)
    assert list(test["item_id"]) == [1]
    assert sorted(train["item_id"]) == [2, 3, 4]


def test_evaluate_drops_seen_targets_and_counts_users():
    train = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": [1, 2, 1, 3, 3]})
    test = pd.DataFrame({"user_id": ["u1", "u1", "u3"], "item_id": [2, 3, 3]})
    rec = models.make_recommender("popular").fit(train)
    out = ev.evaluate(rec, train, test, k=1)
    # u1: item 2 was seen (dropped), target {3}; popular unseen for u1 is 3 -> hit.
    # u3 only re-bought a seen item: no target left, skipped.
    assert out["users"] == 1 and out["ndcg"] == pytest.approx(1.0)
    assert out["coverage"] == pytest.approx(1 / 3)
    repeat = ev.evaluate(rec, train, test, k=1, exclude_seen=False)
    assert repeat["users"] == 2
