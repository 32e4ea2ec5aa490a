"""Offline protocols of the blocks: hand-computed metrics, splits, leave-one-out, cold items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.models.recommender import block_eval as be
from cip.models.recommender.blocks import fit_blocks
from cip.profiles.errors import DataError

T0 = pd.Timestamp("2024-01-01")


def _lines(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "order_id", "day", "item_id"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("day"), unit="D")
    return df


def test_top_frequency_breaks_ties_by_recency():
    lines = _lines(
        [
            ("u", "o1", 0, "X"),
            ("u", "o1", 0, "Y"),
            ("u", "o2", 5, "X"),
            ("u", "o3", 8, "Y"),
            ("u", "o4", 9, "Z"),
        ]
    )
    bs = fit_blocks(
        lines, as_of=T0 + pd.Timedelta(days=10), blocks={"buy_again": be.TopFrequency()}
    )
    assert list(bs.recommend("buy_again", user_id="u", k=3).item_ids) == ["Y", "X", "Z"]


def test_next_basket_protocol_by_hand():
    train = _lines(
        [
            ("u1", "a", 0, "A"),
            ("u1", "b", 10, "A"),
            ("u1", "b", 10, "B"),
            ("u1", "c", 20, "A"),
            ("u2", "d", 5, "C"),
            ("u3", "e", 6, "C"),
        ]
    )
    test = _lines(
        [
            ("u1", "t1", 40, "A"),
            ("u1", "t1", 40, "C"),
            ("u1", "t2", 50, "B"),  # a later order: not the target
            ("u2", "t3", 45, "D"),
            ("new", "t4", 41, "A"),  # nobody known: not judged
        ]
    )
    m = be.eval_buy_again(train, test, None, k=2)
    assert m["queries"] == 2
    # u1: [A, B] vs {A, C}: recall 1/2, nDCG 1 / (1 + 1/log2 3); u2: [C, A] vs {D}: 0
    assert m["recall"] == pytest.approx(0.25)
    assert m["ndcg"] == pytest.approx(0.5 / (1 + 1 / np.log2(3)))
    assert m["hit_rate"] == pytest.approx(0.5)


def _baskets(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for o in range(n):
        items = rng.choice(list("ABCDEFGH"), size=int(rng.integers(1, 5)), replace=False)
        rows += [(f"c{o % 7}", f"o{o}", o, str(i)) for i in items]
    return _lines(rows)


def test_leave_one_out_hides_one_known_item_per_order():
    lines = _baskets()
    train, test = be.split_lines(lines, T0 + pd.Timedelta(days=25))
    orders, contexts, hidden = be._loo(train, test, seed=1, max_queries=None)
    known = set(train["item_id"])
    t = test[test["item_id"].isin(known)].drop_duplicates(["order_id", "item_id"])
    multi = t.groupby("order_id")["item_id"].agg(set)
    multi = multi[multi.map(len) >= 2]
    assert set(orders) == set(multi.index)
    for o, ctx, target in zip(orders, contexts, hidden["item_id"], strict=True):
        assert target not in ctx
        assert set(ctx) | {target} == multi[o]
    again = be._loo(train, test, seed=1, max_queries=None)[2]
    assert list(again["item_id"]) == list(hidden["item_id"])  # seeded


def test_cold_items_and_their_test_partners():
    lines = _baskets(60)
    train, test = be.split_lines(lines, T0 + pd.Timedelta(days=30))
    cold, truth = be.cold_items(train, test, share=0.5, seed=0)
    assert len(cold) >= 1
    assert (truth["user_id"] != truth["item_id"]).all()
    pairs = test.merge(test, on="order_id")
    for c in cold:
        expected = set(pairs[(pairs["item_id_x"] == c) & (pairs["item_id_y"] != c)]["item_id_y"])
        assert set(truth[truth["user_id"] == c]["item_id"]) == expected
    m = be.eval_cold_similar(train, test, None, {}, k=3, share=0.5, seed=0)
    assert m["queries"] == len(cold) and 0 <= m["hit_rate"] <= 1


def test_splits_and_grid_search():
    lines = _baskets()
    train, test = be.split_lines(lines, T0 + pd.Timedelta(days=20), T0 + pd.Timedelta(days=30))
    assert train["ts"].max() < T0 + pd.Timedelta(days=20) <= test["ts"].min()
    assert test["ts"].max() < T0 + pd.Timedelta(days=30)
    with pytest.raises(DataError):
        be.split_lines(lines, T0 - pd.Timedelta(days=1))
    best, table = be.grid_search(lambda p: {"ndcg": -((p["x"] - 2) ** 2)}, {"x": [0, 1, 2, 3]})
    assert best == {"x": 2} and len(table) == 4
