"""One contract, every algorithm: known answers, business rules, fold-in, persistence, erasure."""

from __future__ import annotations

import json

import cip.models as models
import numpy as np
import pandas as pd
import pytest
from cip.profiles.errors import ConfigError, DataError, NotFoundError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALGOS = ["als", "bpr", "itemknn", "ease", "blend", "popular"]
PERSONAL = [a for a in ALGOS if a != "popular"]
SMALL = {
    "als": {"factors": 8},
    "bpr": {"factors": 8},
    "blend": {"members": [["ease", {}], ["als", {"factors": 8}]], "weights": [0.4, 0.6]},
}
HALF = 10  # items 0..9 belong to group A, 10..19 to group B


def _checkerboard() -> pd.DataFrame:
    """Two disjoint groups of 15 users; each user has 6 of the 10 items of the group's half."""
    rng = np.random.default_rng(7)
    rows = []
    for u in range(30):
        offset = 0 if u < 15 else HALF
        for it in rng.choice(HALF, size=6, replace=False):
            rows.append((f"u{u}", int(it) + offset))
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _checkerboard()


@pytest.fixture(scope="module", params=ALGOS)
def fitted(request, data):
    return models.make_recommender(request.param, **SMALL.get(request.param, {})).fit(data)


def _half(item: int) -> int:
    return 0 if item < HALF else 1


def _seen(data: pd.DataFrame, user: str) -> set[int]:
    return set(data.loc[data.user_id == user, "item_id"])


@pytest.mark.parametrize("algo", PERSONAL)
def test_checkerboard_recommends_from_the_users_half(algo, data):
    rec = models.make_recommender(algo, **SMALL.get(algo, {})).fit(data)
    users = [f"u{u}" for u in range(30)]
    out = rec.recommend(users, n=3)
    assert len(out) == 90 and not out["backfilled"].any()
    group = out["user_id"].str[1:].astype(int) >= 15
    assert (out["item_id"].map(_half) == group.astype(int)).all()
    for user, grp in out.groupby("user_id"):
        assert not set(grp["item_id"]) & _seen(data, user)
        assert list(grp["rank"]) == [1, 2, 3]
        assert grp["score"].is_monotonic_decreasing


def test_popular_known_answer():
    df = pd.DataFrame(
        {"user_id": [1, 2, 3, 1, 2, 1, 4], "item_id": ["c", "c", "c", "b", "b", "a", "d"]}
    )
    rec = models.make_recommender("popular").fit(df)
    assert list(rec.popular_items(3)["item_id"]) == ["c", "b", "a"]
    assert rec.popular_items(1)["score"].iloc[0] == pytest.approx(3 / 4)
    out = rec.recommend([1, 3], n=2)
    assert list(out.loc[out.user_id == 1, "item_id"]) == ["d"]  # only d unseen for user 1
    assert list(out.loc[out.user_id == 3, "item_id"]) == ["b", "a"]
    assert not out["backfilled"].any()


def test_unknown_users_get_popular_items_flagged(fitted):
    out = fitted.recommend(["nobody", "u0"], n=4)
    unknown = out[out.user_id == "nobody"]
    assert list(unknown["item_id"]) == list(fitted.popular_items(4)["item_id"])
    assert unknown["backfilled"].all() == (fitted.algorithm != "popular")
    assert list(out["user_id"]) == ["nobody"] * 4 + ["u0"] * 4  # input order kept
    assert list(fitted.known_users(["u0", "nobody", "u29"])) == [True, False, True]


def test_backfill_reaches_n_without_seen_or_duplicates(fitted, data):
    for n in (5, 14, 40):
        out = fitted.recommend("u3", n=n)
        assert len(out) == min(n, 20 - 6)  # the catalog allows 14 unseen items
        assert out["item_id"].is_unique
        assert not set(out["item_id"]) & _seen(data, "u3")
        assert list(out["rank"]) == list(range(1, len(out) + 1))
        personal = out[~out["backfilled"]]
        assert list(personal.index) == list(range(len(personal)))  # backfill comes last


def test_recommend_one_matches_the_batch_answer(fitted):
    """The serving hot path (arrays) gives exactly the rows of ``recommend`` for each user."""
    users = ["u3", "u20", "nobody"]
    for kw in ({"n": 5}, {"n": 9, "exclude_seen": False}, {"n": 4, "items": [0, 1, 2, 12, 13]}):
        batch = fitted.recommend(users, **kw)
        for user in users:
            one = fitted.recommend_one(user, **kw)
            rows = batch[batch.user_id == user]
            assert list(one.item_ids) == list(rows["item_id"])
            np.testing.assert_allclose(one.scores, rows["score"].to_numpy(), rtol=1e-5)  # float32
            assert list(one.backfilled) == list(rows["backfilled"])


def test_exclude_seen_false_can_return_seen_items(fitted, data):
    out = fitted.recommend("u3", n=20, exclude_seen=False)
    assert len(out) == 20 and set(out["item_id"]) == set(range(20))
    if fitted.algorithm != "popular":  # a personal model ranks the user's own items high
        top = set(out["item_id"].head(8))
        assert len(top & _seen(data, "u3")) >= 4


def test_items_allow_list_is_respected(fitted, data):
    allowed = [0, 1, 2, 12, 13, "new-sku"]
    out = fitted.recommend(["u3", "u20"], n=6, items=allowed)
    assert set(out["item_id"]) <= {0, 1, 2, 12, 13, "new-sku"}
    for user, grp in out.groupby("user_id"):
        expected = len([i for i in allowed if i not in _seen(data, user)])
        assert len(grp) == min(6, expected)
        if "new-sku" in set(grp["item_id"]):  # a cold item is only ever a last resort
            assert grp["item_id"].iloc[-1] == "new-sku"
            assert grp["backfilled"].iloc[-1] == (fitted.algorithm != "popular")
    pop = fitted.popular_items(10, items=[3, 4, 99])
    assert set(pop["item_id"]) == {3, 4, 99} and pop["item_id"].iloc[-1] == 99


def test_fold_in_for_an_item_list(fitted):
    out = fitted.recommend_for_items([1, 2, 3], n=4)
    assert len(out) == 4 and list(out.columns) == ["item_id", "score", "rank", "backfilled"]
    assert not {1, 2, 3} & set(out["item_id"])
    if fitted.algorithm != "popular":
        assert (out.loc[~out["backfilled"], "item_id"] < HALF).all()
        assert (out["item_id"].head(2) < HALF).all()
    again = fitted.recommend_for_items([1, 2, 3], n=20, exclude_seen=False)
    assert len(again) == 20
    cold = fitted.recommend_for_items(["never-seen"], n=3)
    assert list(cold["item_id"]) == list(fitted.popular_items(3)["item_id"])


def test_similar_items(fitted):
    out = fitted.similar_items([0, 15, "unknown"], n=3)
    assert list(out.columns) == ["item_id", "similar_item_id", "score", "rank", "backfilled"]
    assert len(out) == 9
    assert not (out["item_id"] == out["similar_item_id"]).any()
    if fitted.algorithm != "popular":
        first = out[(out["rank"] == 1) & (out["item_id"] != "unknown")]
        assert [_half(i) for i in first["similar_item_id"]] == [0, 1]
    assert out[out["item_id"] == "unknown"]["backfilled"].all() == (fitted.algorithm != "popular")


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "model.json"]
    with np.load(path / "arrays.npz", allow_pickle=False) as z:  # no object arrays inside
        assert all(z[k].dtype != object for k in z.files)
    loaded = models.load_recommender(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    users = ["u0", "u17", "ghost"]
    pd.testing.assert_frame_equal(loaded.recommend(users, n=5), fitted.recommend(users, n=5))
    pd.testing.assert_frame_equal(
        loaded.recommend_for_items([4, 5], n=5), fitted.recommend_for_items([4, 5], n=5)
    )
    pd.testing.assert_frame_equal(loaded.similar_items([4], n=5), fitted.similar_items([4], n=5))


def test_drop_users_erases_personal_data(data, tmp_path):
    for algo in ALGOS:
        rec = models.make_recommender(algo, **SMALL.get(algo, {})).fit(data)
        before_other = rec.recommend("u20", n=5)
        assert rec.drop_users(["u1", "u2", "not-there"]) == 2
        assert list(rec.known_users(["u1", "u2", "u3"])) == [False, False, True]
        gone = rec.recommend("u1", n=3)
        assert gone["backfilled"].all() == (algo != "popular")
        assert len(rec.user_ids_) == rec.user_items_.shape[0] == 28
        if algo in ("als", "bpr"):
            assert rec.user_factors_.shape[0] == 28
        if algo == "blend":  # and from every member
            assert [m.n_users_ for m in rec.members_] == [28, 28]
        if algo != "popular":  # personal picks of others stay (backfill follows new popularity)
            after = rec.recommend("u20", n=5)
            pd.testing.assert_frame_equal(
                after[~after.backfilled], before_other[~before_other.backfilled]
            )
        saved = json.loads((rec.save(tmp_path / algo) / "model.json").read_text())
        assert "u1" not in saved["user_ids"] and "u2" not in saved["user_ids"]


@pytest.mark.parametrize("algo", ALGOS)
def test_ids_of_any_type_and_weights(algo):
    df = pd.DataFrame(
        {
            "user_id": [17850.0, 17850.0, 13047.0, 13047.0, 12583.0],
            "item_id": ["85123A", "71053", "85123A", "84406B", "71053"],
            "weight": [5.0, 1.0, 3.0, 0.0, 2.0],
        }
    )
    rec = models.make_recommender(algo, **SMALL.get(algo, {})).fit(df)
    assert rec.user_kind_ == "int" and rec.item_kind_ == "str"
    assert "84406B" not in set(rec.item_ids_)  # weight 0 is no interaction
    out = rec.recommend(["17850", 13047], n=2, exclude_seen=False)
    assert list(out["user_id"]) == ["17850", "17850", 13047, 13047]
    assert set(out["item_id"]) == {"85123A", "71053"}
    assert rec.known_users(["17850", 17850, "x"]).tolist() == [True, True, False]


def test_validation_errors(data):
    with pytest.raises(ConfigError, match="unknown recommender algorithm"):
        models.make_recommender("svd")
    with pytest.raises(ConfigError, match="no parameter"):
        models.make_recommender("als", factor=3)
    with pytest.raises(ConfigError, match="factors"):
        models.make_recommender("als", factors=0).fit(data)
    with pytest.raises(ConfigError, match="weighting"):
        models.make_recommender("ease", weighting="tfidf").fit(data)
    with pytest.raises(DataError, match="item_id"):
        models.make_recommender("als").fit(data.drop(columns="item_id"))
    with pytest.raises(DataError, match="weight"):
        models.make_recommender("als").fit(data.assign(weight=-1.0))
    with pytest.raises(DataError, match="null"):
        models.make_recommender("als").fit(data.assign(user_id=None))
    with pytest.raises(NotFoundError, match="not fitted"):
        models.make_recommender("als").recommend("u1")
    rec = models.make_recommender("popular").fit(data)
    with pytest.raises(ConfigError, match="positive integer"):
        rec.recommend("u1", n=0)
    with pytest.raises(NotFoundError):
        models.load_recommender("/nonexistent/model")


def test_sklearn_style_params():
    rec = models.make_recommender("als", factors=16, random_state=3)
    assert rec.get_params()["factors"] == 16 and rec.get_params()["random_state"] == 3
    rec.set_params(factors=4)
    assert rec.factors == 4 and not hasattr(rec, "user_factors_")
    assert "ALSRecommender(factors=4" in repr(rec)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 11)), min_size=1, max_size=60),
    algo=st.sampled_from(["als", "itemknn", "ease", "blend", "popular"]),
    n=st.integers(1, 15),
    allowed=st.one_of(st.none(), st.sets(st.integers(0, 14), max_size=10)),
    exclude_seen=st.booleans(),
)
def test_recommend_invariants(pairs, algo, n, allowed, exclude_seen):
    df = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    rec = models.make_recommender(algo, **SMALL.get(algo, {})).fit(df)
    items = None if allowed is None else sorted(allowed)
    out = rec.recommend([0, 3, 99], n=n, exclude_seen=exclude_seen, items=items)
    catalog = set(rec.item_ids_.tolist()) if items is None else set(items)
    for user in (0, 3, 99):
        got = out[out["user_id"] == user]
        seen = set(df.loc[df.user_id == user, "item_id"]) if exclude_seen else set()
        assert len(got) == min(n, len(catalog - seen))
        assert got["item_id"].is_unique and set(got["item_id"]) <= catalog - seen
        assert list(got["rank"]) == list(range(1, len(got) + 1))
        assert not got["backfilled"].iloc[: (~got["backfilled"]).sum()].any()


def _grid_scale(a: np.ndarray) -> int:
    """The power of two ``s`` that turns the grid values of ``a`` into integers <= 2^21."""
    _, e = np.frexp(np.abs(a).max())
    return 21 - int(e)


def _random_interactions(users: int = 300, items: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(users, size=4000),
            "item_id": rng.integers(items, size=4000),
            "weight": rng.integers(1, 4, size=4000),
        }
    )


@pytest.mark.parametrize("algo", ["als", "bpr"])
def test_mf_scores_are_exact_whatever_the_number_of_rows(algo):
    """The factors are on a power-of-two grid, so the float64 scores equal the exact
    integer products and a many-row product gives the bits of one-row products."""
    from cip.models.recommender._mf import on_grid

    rec = models.make_recommender(algo, factors=48, iterations=3, num_threads=1)
    rec.fit(_random_interactions())
    u, it = rec.user_factors_, rec.item_factors_
    assert u.dtype == np.float32 and it.dtype == np.float32
    su, si = _grid_scale(u), _grid_scale(it)
    qu, qi = np.ldexp(u.astype(np.float64), su), np.ldexp(it.astype(np.float64), si)
    assert np.array_equal(qu, np.rint(qu)) and np.abs(qu).max() <= 2**21
    assert np.array_equal(qi, np.rint(qi)) and np.abs(qi).max() <= 2**21
    exact = qu.astype(np.int64) @ qi.astype(np.int64).T  # integer arithmetic: no rounding
    rows = np.arange(len(u))
    many = rec.exact_scores(rows)
    one = np.vstack([rec.exact_scores(rows[i : i + 1]) for i in rows])
    assert np.array_equal(many, np.ldexp(exact.astype(np.float64), -(su + si)))
    assert np.array_equal(many, one)
    assert np.array_equal(rec.exact_scores(rows[::-1][:37]), many[::-1][:37])
    assert np.array_equal(on_grid(u), u)  # idempotent
    folded = rec._fold_in(rec.user_items_[5])
    assert np.array_equal(on_grid(folded), folded)


def test_on_grid_keeps_values_close_and_rejects_too_many_factors():
    from cip.models.recommender._mf import on_grid

    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 64)).astype(np.float32) * 0.2
    g = on_grid(a)
    assert np.abs(g - a).max() <= np.abs(a).max() * 2.0**-21
    assert not np.array_equal(g, a)
    wide = on_grid(rng.normal(size=(2, 4096)))  # 4,096 factors: 20 bits keep sums below 2^53
    q = np.ldexp(wide.astype(np.float64), _grid_scale(wide) - 1)
    assert np.array_equal(q, np.rint(q)) and np.abs(q).max() <= 2**20
    assert np.array_equal(on_grid(np.zeros((3, 4))), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="too many"):
        on_grid(np.ones((1, 4)), dim=2**53)


def test_model_saved_before_the_grid_still_loads(tmp_path):
    """Factors saved off the grid (models saved before it) are rounded on load."""
    rec = models.make_recommender("als", factors=16, iterations=3, num_threads=1)
    rec.fit(_random_interactions())
    path = rec.save(tmp_path / "old")
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    rng = np.random.default_rng(1)
    for name in ("user_factors_", "item_factors_"):  # off the grid, as implicit returns them
        f = arrays[name]
        arrays[name] = (f * (1 + rng.uniform(-1e-4, 1e-4, f.shape))).astype(np.float32)
    old_u, old_i = arrays["user_factors_"], arrays["item_factors_"]
    assert not np.array_equal(np.ldexp(old_u.astype(np.float64), _grid_scale(old_u)) % 1, 0)
    np.savez(path / "arrays.npz", **arrays)
    loaded = models.load_recommender(path)
    u, it = loaded.user_factors_, loaded.item_factors_
    assert np.abs(u - old_u).max() <= np.abs(old_u).max() * 2.0**-21
    assert np.abs(it - old_i).max() <= np.abs(old_i).max() * 2.0**-21
    qu = np.ldexp(u.astype(np.float64), _grid_scale(u))
    assert np.array_equal(qu, np.rint(qu))
    rows = np.arange(len(u))
    many = loaded.exact_scores(rows)
    assert np.array_equal(many, np.vstack([loaded.exact_scores(rows[i : i + 1]) for i in rows]))
    np.testing.assert_allclose(many, old_u.astype(np.float64) @ old_i.T, rtol=0, atol=1e-5)
    users = loaded.user_ids_[:20]
    assert set(loaded.recommend(users, n=5)["user_id"]) == set(users)
