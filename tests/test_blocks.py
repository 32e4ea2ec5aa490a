"""Recommendation blocks: known answers per block on hand-made catalogues, fallbacks, batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.models.recommender.blocks import BLOCKS, fit_blocks, make_block
from cip.profiles.errors import ConfigError, DataError, NotFoundError

T0 = pd.Timestamp("2024-01-01")
AS_OF = T0 + pd.Timedelta(days=100)


def catalogue() -> pd.DataFrame:
    """Seven products; N1 is new (never sold), A3 is out of stock."""
    return pd.DataFrame(
        [
            ("A1", "red mug", "mugs", "X", 5.0, True, "Best", 0.1),
            ("A2", "blue mug", "mugs", "Y", 7.0, True, "Best|Sale", 0.5),
            ("A3", "green mug", "mugs", "X", 9.0, False, None, 0.9),
            ("B1", "tea towel", "textiles", "X", 3.0, True, "Best", 0.2),
            ("B2", "cotton tea towel set", "textiles", "Y", 12.0, True, None, 0.3),
            ("C1", "garden candle", "candles", "Z", 4.0, True, "Sale", 0.4),
            ("N1", "red mug large", "mugs", "X", 6.0, True, None, 0.0),
        ],
        columns=["item_id", "title", "category", "brand", "price", "in_stock", "tags", "margin"],
    )


def order_lines() -> pd.DataFrame:
    rows = [
        ("u1", "o1", 0, "A1"),
        ("u1", "o1", 0, "B1"),
        ("u1", "o2", 30, "A1"),
        ("u1", "o3", 60, "A1"),
        ("u1", "o3", 60, "C1"),
        ("u2", "o4", 10, "A1"),
        ("u2", "o4", 10, "B1"),
        ("u2", "o5", 20, "A2"),
        ("u2", "o5", 20, "B2"),
        ("u3", "o6", 50, "A1"),
        ("u3", "o6", 50, "B1"),
        ("u3", "o6", 50, "C1"),
        ("u4", "o7", 70, "A2"),
        ("u4", "o7", 70, "B2"),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "order_id", "day", "item_id"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("day"), unit="D")
    return df


@pytest.fixture(scope="module")
def bs():
    return fit_blocks(order_lines(), catalogue(), as_of=AS_OF)


def test_every_block_but_personal_is_fitted_by_default(bs):
    assert set(bs.blocks) == set(BLOCKS) - {"personal"}


def test_buy_again_ranks_own_repeat_purchases_by_frequency(bs):
    r = bs.recommend("buy_again", user_id="u1", k=3)
    assert r.item_ids[0] == "A1"  # bought in 3 orders
    assert set(r.item_ids[1:]) == {"B1", "C1"}
    assert list(r.sources) == ["buy_again"] * 3


def _cycle_lines() -> tuple[pd.DataFrame, pd.Timestamp]:
    """P is re-bought every 10 days, Q every 40 days, by 20 people; z bought each once."""
    rows = []
    for u in range(20):
        for n in range(4):
            rows.append((f"p{u}", f"p{u}-{n}", 10 * n + u % 3, "P"))
            rows.append((f"p{u}", f"q{u}-{n}", 40 * n + u % 3, "Q"))
    rows += [("z", "z1", 150, "P"), ("z", "z2", 150, "Q")]
    df = pd.DataFrame(rows, columns=["user_id", "order_id", "day", "item_id"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("day"), unit="D")
    return df, T0 + pd.Timedelta(days=151)


def test_buy_again_follows_each_items_repurchase_cycle():
    lines, as_of = _cycle_lines()
    b = fit_blocks(lines, as_of=as_of, blocks={"buy_again": {"half_life_days": None}})
    model = b.blocks["buy_again"]
    pos = b.history.catalog.positions(["P", "Q"])
    assert model.item_interval_days_[pos] == pytest.approx([10.0, 40.0], rel=0.15)
    soon = b.recommend("buy_again", user_id="z", k=2, at=as_of + pd.Timedelta(days=9))
    late = b.recommend("buy_again", user_id="z", k=2, at=as_of + pd.Timedelta(days=39))
    assert list(soon.item_ids) == ["P", "Q"]  # 10 days after: P is due
    assert list(late.item_ids) == ["Q", "P"]  # 40 days after: Q is due, P long overdue


def _hub_baskets() -> pd.DataFrame:
    """H is in every basket; X with H in 4 baskets, with Y in 3: count prefers H, lift Y."""
    rows = []
    for b in range(10):
        rows.append((f"c{b}", f"b{b}", "H"))
        if b < 4:
            rows.append((f"c{b}", f"b{b}", "X"))
        if b < 3:
            rows.append((f"c{b}", f"b{b}", "Y"))
    df = pd.DataFrame(rows, columns=["user_id", "order_id", "item_id"])
    df["ts"] = T0
    return df


@pytest.mark.parametrize(
    ("measure", "first"), [("count", "H"), ("lift", "Y"), ("llr", "Y"), ("jaccard", "Y")]
)
def test_bought_together_measures_beyond_chance(measure, first):
    b = fit_blocks(
        _hub_baskets(),
        blocks={"bought_together": {"measure": measure, "shrinkage": 1.0, "min_support": 1}},
    )
    r = b.recommend("bought_together", items=["X"], k=2)
    assert r.item_ids[0] == first
    assert "X" not in r.item_ids


def test_bought_together_llr_drops_independent_pairs():
    b = fit_blocks(_hub_baskets(), blocks={"bought_together": {"measure": "llr", "min_support": 1}})
    r = b.recommend("bought_together", items=["X"], k=2)
    assert list(r.sources) == ["bought_together", "popular"]  # H is no better than chance
    alone = b.recommend("bought_together", items=["H"], k=2)
    assert alone.fallbacks == ["popular"] and alone.block == "bought_together"


def test_bought_together_known_lift(bs):
    r = bs.recommend("bought_together", items=["A1"], k=2)
    assert list(r.item_ids) == ["B1", "C1"]
    # lift with shrinkage 5: (c + 5) / (n_A1 n_B1 / N + 5), N = 7 baskets
    assert r.scores[0] == pytest.approx((3 + 5) / (5 * 3 / 7 + 5))


def test_similar_gives_a_new_item_content_neighbours(bs):
    r = bs.recommend("similar", items=["N1"], k=3)
    assert r.item_ids[0] == "A1"  # red mug, same category and brand
    assert list(r.sources) == ["similar"] * 3
    assert bs.blocks["similar"].cf_share_[bs.history.catalog.positions(["N1"])[0]] == 0.0


def test_upsell_is_similar_and_pricier(bs):
    r = bs.recommend("upsell", items=["A1"], k=7)
    prices = catalogue().set_index("item_id")["price"]
    assert len(r.item_ids) > 0
    assert (prices[list(r.item_ids)] > 5.0 * 1.1).all()  # fallbacks obey the price too
    assert r.item_ids[0] in {"N1", "A2", "A3"}


def test_popular_per_category_and_k_guaranteed_by_fallbacks(bs):
    r = bs.recommend("popular", k=7)
    assert len(r.item_ids) == 7 and len(set(r.item_ids)) == 7
    assert r.item_ids[0] == "A1"
    assert r.sources[-1] == "catalogue"  # N1 was never sold
    mugs = bs.recommend("popular", k=2, category="mugs")
    assert list(mugs.item_ids) == ["A1", "A2"]
    with pytest.raises(NotFoundError, match="unknown category"):
        bs.recommend("popular", category="shoes")


def test_fallback_order_is_block_then_category_then_popular(bs):
    r = bs.recommend("bought_together", items=["C1"], k=6)
    assert len(r.item_ids) == 6
    src = list(r.sources)
    assert r.item_ids[0] == "A1" and src[0] == "bought_together"  # B1: support 1 < 2
    assert "C1" not in r.item_ids  # the page's own item, not even as a fallback
    rest = src[1:]
    assert rest == sorted(rest, key=["popular_category", "popular", "catalogue"].index)
    assert r.fallbacks[0] == "popular"  # candles has no other item
    mug = bs.recommend("bought_together", items=["A2"], k=4)
    assert list(mug.sources[:2]) == ["bought_together", "popular_category"]
    assert mug.item_ids[1] == "A1"  # the best-selling other mug


def test_trending_prefers_accelerating_items():
    rows = [(f"s{d}", f"o{d}", d, "STEADY") for d in range(0, 100, 5)]
    rows += [(f"n{d}", f"m{d}", d, "NEW") for d in range(90, 100)]
    df = pd.DataFrame(rows, columns=["user_id", "order_id", "day", "item_id"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("day"), unit="D")
    b = fit_blocks(df, blocks={"trending": {}})
    assert b.recommend("trending", k=2).item_ids[0] == "NEW"


def test_recently_viewed_newest_first(bs):
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1"],
            "item_id": ["B2", "C1", "A2"],
            "ts": [AS_OF - pd.Timedelta(days=d) for d in (5, 1, 3)],
            "event_type": ["product_view"] * 3,
        }
    )
    b = fit_blocks(order_lines(), catalogue(), events, AS_OF, blocks={"recently_viewed": {}})
    r = b.recommend("recently_viewed", user_id="u1", k=3)
    assert list(r.item_ids) == ["C1", "A2", "B2"]
    s = b.recommend("recently_viewed", user_id="u1", items=["A1", "N1"], k=2)
    assert list(s.item_ids) == ["N1", "A1"]  # this session's items, the latest first
    again = b.recommend("recently_viewed", items=["A1", "N1", "A1"], k=2)
    assert list(again.item_ids) == ["A1", "N1"]  # a repeated item counts at its latest view


@pytest.mark.parametrize(
    "personal",
    [
        {"algorithm": "itemknn"},
        {"algorithm": "blend", "params": {"members": [["ease", {}], ["als", {"factors": 4}]]}},
    ],
)
def test_personal_block_wraps_a_cf_model(personal):
    b = fit_blocks(order_lines(), catalogue(), as_of=AS_OF, blocks={"personal": personal})
    r = b.recommend("personal", user_id="u4", k=4, rules={"exclude_purchased": True})
    assert r.sources[0] == "personal"
    assert not {"A2", "B2"} & set(r.item_ids)
    assert len(r.item_ids) == 4
    many = b.recommend_many("personal", ["u4", "u1"], k=4, rules={"exclude_purchased": True})
    assert list(many.loc[many["user_id"] == "u4", "item_id"]) == list(r.item_ids)


def test_point_in_time_lines_after_as_of_change_nothing(bs):
    future = order_lines().assign(ts=AS_OF + pd.Timedelta(days=1), order_id="f")
    later = fit_blocks(pd.concat([order_lines(), future]), catalogue(), as_of=AS_OF)
    for name in ("buy_again", "bought_together", "similar", "popular"):
        a = bs.recommend(name, user_id="u2", items=["B1"], k=5)
        b = later.recommend(name, user_id="u2", items=["B1"], k=5)
        assert list(a.item_ids) == list(b.item_ids)
        np.testing.assert_allclose(a.scores, b.scores)


def test_batch_equals_single_requests(bs):
    users = ["u1", "u2", "nobody", "u3"]
    df = bs.recommend_many("buy_again", users, k=3, rules={"in_stock_only": True}, chunk=2)
    for u in users:
        one = bs.recommend("buy_again", user_id=u, k=3, rules={"in_stock_only": True})
        got = df[df["user_id"] == u].sort_values("rank")
        assert list(got["item_id"]) == list(one.item_ids)
        assert list(got["source"]) == list(one.sources)


def test_bad_parameters_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown block"):
        make_block("nope")
    with pytest.raises(ConfigError, match="no parameter"):
        make_block("buy_again", decay=3)
    with pytest.raises(ConfigError, match="measure"):
        fit_blocks(order_lines(), blocks={"bought_together": {"measure": "raw"}})
    with pytest.raises(DataError, match="no order line before"):
        fit_blocks(order_lines(), as_of=T0)


def test_catalogue_reads_tags_as_strings_or_lists_and_cleans_names():
    from cip.models.recommender.blocks import build_catalog

    c = build_catalog(
        pd.DataFrame(
            {
                "item_id": ["a", "b", "c", "d"],
                "tags": ["x| y", ["y", "z"], None, np.array(["x"])],
                "category": [" k", "", None, "k"],
            }
        ),
        extra_items=["e", "a"],
    )
    assert list(c.ids) == ["a", "b", "c", "d", "e"]
    assert list(c.tag_names) == ["x", "y", "z"]
    assert c.tags.toarray().tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert list(c.category) == [0, -1, -1, 0, -1] and list(c.categories) == ["k"]
    assert list(c.in_products) == [True, True, True, True, False]
