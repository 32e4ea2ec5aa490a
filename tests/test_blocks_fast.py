"""The single-request path of the blocks answers exactly what the batch path answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.models.recommender.blocks import NoCandidatesError, _one, fit_blocks

AS_OF = pd.Timestamp("2024-06-01")


def _shop(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """60 products in 5 categories, 40 people, ~150 orders, a few views: tiny and random."""
    rng = np.random.default_rng(seed)
    n = 60
    products = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "title": [f"thing {j % 7} {'red' if j % 3 else 'blue'}" for j in range(n)],
            "category": [f"c{j % 5}" if j % 11 else None for j in range(n)],
            "brand": [f"b{j % 4}" for j in range(n)],
            "price": rng.uniform(1, 50, n).round(2),
            "in_stock": rng.random(n) > 0.15,
            "tags": [
                ("Best" if j % 4 == 0 else "") + ("|Sale" if j % 6 == 0 else "") for j in range(n)
            ],
            "margin": rng.random(n),
        }
    )
    rows = []
    for o in range(150):
        u = f"u{rng.integers(40)}"
        day = rng.uniform(0, 150)
        for j in rng.choice(50, rng.integers(1, 5), replace=False):  # i50..i59 never sold
            rows.append((u, f"o{o}", j, day))
    lines = pd.DataFrame(rows, columns=["user_id", "order_id", "item", "day"])
    lines["item_id"] = "i" + lines.pop("item").astype(str)
    lines["ts"] = AS_OF - pd.to_timedelta(lines.pop("day"), unit="D")
    views = pd.DataFrame(
        {
            "user_id": [f"u{rng.integers(40)}" for _ in range(80)],
            "item_id": [f"i{rng.integers(n)}" for _ in range(80)],
            "ts": AS_OF - pd.to_timedelta(rng.uniform(0, 60, 80), unit="D"),
        }
    )
    return lines, products, views


RULES = [
    None,
    {"in_stock_only": True, "exclude_purchased": True, "max_per_category": 2},
    {"max_per_category": 1},
    {"include_tags": ["Best", "Sale"], "min_price": 5.0},
    {"boost_field": "margin", "boost_weight": 2.0, "max_per_category": 3},
    {"exclude_categories": ["c0", "c1", "c2", "c3"], "in_stock_only": True},
]


@pytest.fixture(scope="module")
def shop():
    lines, products, views = _shop()
    blocks = {n: {} for n in ("buy_again", "bought_together", "similar", "upsell", "popular")}
    blocks.update(trending={}, recently_viewed={}, personal={"algorithm": "itemknn"})
    return fit_blocks(lines, products, views, AS_OF, blocks=blocks)


def _answer(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NoCandidatesError as e:
        return str(e)


@pytest.mark.parametrize("head", [256, 3])
def test_single_request_path_equals_the_batch_path(shop, head, monkeypatch) -> None:
    monkeypatch.setattr(_one, "_HEAD", head)  # 3: the wide retry ranks whole tiers too
    rng = np.random.default_rng(1)
    ids = list(shop.history.catalog.ids) + ["unknown-item"]
    users = [f"u{j}" for j in range(42)]  # u40, u41: nobody known
    compared = 0
    for name in shop.blocks:
        for _ in range(40):
            user = str(rng.choice(users)) if rng.random() < 0.8 else None
            items = [str(x) for x in rng.choice(ids, rng.integers(0, 4))]
            rules = RULES[rng.integers(len(RULES))]
            cat = f"c{rng.integers(5)}" if rng.random() < 0.2 else None
            k = int(rng.integers(1, 15))
            fast = _answer(shop.recommend, name, user, items, k, rules, category=cat)
            q = shop.queries([user], [items], None, [cat])
            slow = _answer(shop._run_dense, name, q, k, rules, strict=True)
            slow = slow if isinstance(slow, str) else slow[0]
            if isinstance(fast, str) or isinstance(slow, str):
                assert fast == slow
                continue
            compared += 1
            np.testing.assert_array_equal(fast.scores, slow.scores)
            assert list(fast.sources) == list(slow.sources)
            # items equal up to the order of equal scores at the end of a tier (the batch
            # path's partial sort leaves which of several tied items it keeps open)
            src, sc = np.asarray(fast.sources), np.asarray(fast.scores)
            for s in set(src):
                tier = src == s
                above = tier & (sc > sc[tier].min())
                assert set(fast.item_ids[above]) == set(slow.item_ids[above])
                tied = tier & ~above
                assert len(set(fast.item_ids[tied])) == tied.sum()
    assert compared > 250


def test_single_request_answers_k_items_or_names_the_empty_rule(shop) -> None:
    r = shop.recommend("bought_together", "u1", ["i1"], k=12, rules={"max_per_category": 3})
    assert len(r.item_ids) == 12 and "i1" not in set(r.item_ids)
    cats = shop.history.catalog.category[shop.history.catalog.positions(list(r.item_ids))]
    assert max(np.bincount(cats[cats >= 0])) <= 3
    with pytest.raises(NoCandidatesError, match="no item passes the rules: include_tags"):
        shop.recommend("popular", k=3, rules={"include_tags": ["nope"]})


def test_batch_path_equals_single_requests_for_every_block(shop) -> None:
    users = [f"u{j}" for j in range(0, 42, 3)] + [None]
    rng = np.random.default_rng(2)
    items = [[f"i{j}" for j in rng.choice(60, rng.integers(0, 3))] for _ in users]
    for name in shop.blocks:
        rules = RULES[1] if name != "upsell" else RULES[4]
        df = shop.recommend_many(name, users, k=5, rules=rules, items=items, chunk=4)
        for u, its in zip(users, items, strict=True):
            one = _answer(shop.recommend, name, u, its, 5, rules)
            got = df[df["user_id"].isna()] if u is None else df[df["user_id"] == u]
            if isinstance(one, str):
                assert got.empty
                continue
            got = got.sort_values("rank")
            assert list(got["item_id"]) == list(one.item_ids)
            assert list(got["source"]) == list(one.sources)
            np.testing.assert_array_equal(got["score"].to_numpy(), one.scores)


@pytest.fixture(scope="module")
def campaign_shop(shop):
    """The shop's blocks plus a matrix-factorisation ``personal`` (its own batch scoring)."""
    from cip.models.recommender.block_eval import TopFrequency
    from cip.models.recommender.blocks import PersonalBlock

    # 64 factors: wide enough that a 16-row BLAS product of unrounded factors differs in the
    # last bits from 1-row products (measured), so the exact test below needs the grid
    als = PersonalBlock(algorithm="als", params={"factors": 64, "iterations": 3, "num_threads": 1})
    shop.blocks["personal_als"] = als.fit(shop.history)
    shop.blocks["top_freq"] = TopFrequency().fit(shop.history)  # overrides candidates()
    yield shop
    del shop.blocks["personal_als"], shop.blocks["top_freq"]


def test_campaign_batch_path_with_request_times(campaign_shop) -> None:
    """Timing-aware blocks get each person's own request time in the vectorised path."""
    users = [f"u{j}" for j in range(42)]
    at = [AS_OF + pd.Timedelta(days=3 * j) for j in range(42)]
    for name in ("buy_again", "top_freq", "personal_als"):
        df = campaign_shop.recommend_many(name, users, k=7, at=at, chunk=8)
        for u, t in zip(users, at, strict=True):
            one = campaign_shop.recommend(name, u, k=7, at=t)
            got = df[df["user_id"] == u]
            assert list(got["item_id"]) == list(one.item_ids)
            np.testing.assert_array_equal(got["score"].to_numpy(), one.scores)


@pytest.mark.parametrize("rules", RULES + [{"exclude_purchased": True, "max_per_category": 1}])
def test_campaign_batch_path_equals_single_requests_exactly(campaign_shop, rules, monkeypatch):
    """recommend_many without context (the vectorised campaign path) answers, for every
    block, person and rule set, exactly recommend(): same items, order, scores, sources."""
    import cip.models.recommender.blocks as blocks_mod

    retries = []
    real = blocks_mod.select_many

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        retries.append(int(out.retry.sum()))
        return out

    monkeypatch.setattr(blocks_mod, "select_many", spy)
    shop = campaign_shop
    assert hasattr(shop.blocks["personal_als"].model_, "user_factors_")
    users = [f"u{j}" for j in range(42)] + [None]  # u40, u41: nobody known; None: anonymous
    compared = 0
    for name in shop.blocks:
        for k in (1, 5, 13):
            df = shop.recommend_many(name, users, k=k, rules=rules, chunk=16)
            for u in users:
                one = _answer(shop.recommend, name, u, [], k, rules)
                got = df[df["user_id"].isna()] if u is None else df[df["user_id"] == u]
                if isinstance(one, str):
                    assert got.empty
                    continue
                compared += 1
                assert list(got["rank"]) == list(range(1, len(got) + 1))
                assert list(got["item_id"]) == list(one.item_ids), (name, u, k, rules)
                assert list(got["source"]) == list(one.sources)
                np.testing.assert_array_equal(got["score"].to_numpy(), one.scores)
    assert retries and compared > 500  # the vectorised path ran, on real answers
    if rules and rules.get("max_per_category") == 1:
        assert sum(retries) > 0  # and the wide retry (select_one per row) was exercised


def test_dense_top_m_is_exact_when_float32_rounding_ties_scores():
    """_top_dense cuts on float32: scores equal after rounding, huge and non-finite scores
    and rows with few candidates still give each row's exact best m (score, then position)."""
    from cip.models.recommender.blocks._many import Dense, _top_dense

    rng = np.random.default_rng(5)
    b, n, m = 40, 300, 7
    scores = 1.0 + rng.integers(0, 4, (b, n)) * 1e-12  # 4 values, one float32 value
    scores[::3] = rng.normal(size=(len(scores[::3]), n))
    scores[1, :5] = [1e300, -1e300, np.nan, np.inf, -np.inf]  # beyond float32, not finite
    scores[2, 4:] = -np.inf  # under m candidates
    cols = rng.permutation(n + 20)[:n]
    free = rng.random((b, n + 20)) > 0.2
    free[2, :] = True
    pos, val = _top_dense(free, Dense("p", scores, cols), m)
    for i in range(b):
        ok = free[i, cols] & np.isfinite(scores[i])
        p, s = cols[ok], scores[i, ok]
        o = np.lexsort((p, -s))[:m]
        got = pos[i][pos[i] >= 0]
        assert list(got) == list(p[o]), i
        np.testing.assert_array_equal(val[i][: len(got)], s[o])
    assert (pos[2] >= 0).sum() < m and pos[1][0] == cols[0]
