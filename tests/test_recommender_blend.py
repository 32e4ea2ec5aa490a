"""The blend of recommenders: standardised scores, every query kind, persistence, and auto's blend."""

from __future__ import annotations

import json

import cip.models as models
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cip.models import evaluation
from cip.models.recommender import tuning
from cip.models.recommender._blend import standardised
from cip.profiles.errors import ConfigError

from tests._models_support import mlflow_db
from tests.test_recommender_tuning import clustered

MEMBERS = [["ease", {"l2": 5.0}], ["als", {"factors": 8, "weighting": "log"}]]


def _rated(users: int = 80, items: int = 40, seed: int = 5) -> pd.DataFrame:
    """Two taste halves plus noise; weights 1-5 (the ALS member weights them, EASE does not)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        half = np.arange(items // 2) + (u % 2) * (items // 2)
        picks = np.concatenate(
            [rng.choice(half, size=int(rng.integers(5, 12)), replace=False), rng.choice(items, 2)]
        )
        rows += [(f"u{u}", int(i), float(rng.integers(1, 6))) for i in picks]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])
    return df.drop_duplicates(["user_id", "item_id"], ignore_index=True)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _rated()


@pytest.fixture(scope="module")
def blend(data):
    return models.make_recommender("blend", members=MEMBERS, weights=[0.3, 0.7]).fit(data)


def test_standardised_rows_keep_what_no_model_scores() -> None:
    inf = np.inf
    z = standardised(np.array([[1.0, 2.0, 3.0, -inf], [5.0, 5.0, 5.0, 5.0], [-inf] * 4]))
    np.testing.assert_allclose(z[0, :3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert z[0, 3] == -inf and (z[1] == 0).all() and (z[2] == -inf).all()


def _members(data):
    return [models.make_recommender(a, random_state=0, **p).fit(data) for a, p in MEMBERS]


def test_scores_are_the_weighted_sum_of_the_members_z_scores(blend, data) -> None:
    ease, als = _members(data)
    rows = np.arange(blend.n_users_)
    want = 0.3 * standardised(ease._dense_scores("users", rows)) + 0.7 * standardised(
        als._dense_scores("users", rows)
    )
    np.testing.assert_allclose(blend._dense_scores("users", rows), want, rtol=1e-6, atol=1e-6)
    # and the ranking follows them: the top unseen item of each of a few users
    out = blend.recommend(["u0", "u1", "u2"], n=1)
    for user, item in zip(out["user_id"], out["item_id"], strict=True):
        r = int(np.flatnonzero(blend.user_ids_ == user)[0])
        s = want[r].copy()
        s[blend.user_items_[r].indices] = -np.inf
        assert blend.item_ids_[int(np.argmax(s))] == item


def test_a_visitor_history_reaches_each_member_in_its_own_weighting(blend, data) -> None:
    ease, als = _members(data)
    viewed = [3, 3, 3, 7]  # item 3 three times: the log member sees log(1 + 3), EASE sees 1
    cols = [int(np.flatnonzero(blend.item_ids_ == i)[0]) for i in (3, 7)]

    def hist(values):
        return sp.csr_matrix((values, cols, [0, 2]), shape=(1, blend.n_items_))

    want = 0.3 * standardised(ease._dense_scores("history", hist([1.0, 1.0]))) + 0.7 * standardised(
        als._dense_scores("history", hist(np.log1p([3.0, 1.0])))
    )
    want[0, cols] = -np.inf
    out = blend.recommend_for_items(viewed, n=5)
    assert list(out["item_id"]) == [int(blend.item_ids_[i]) for i in np.argsort(-want[0])[:5]]
    np.testing.assert_allclose(out["score"], np.sort(want[0])[::-1][:5], rtol=1e-5)


def test_a_zero_weight_leaves_the_other_members_ranking(data) -> None:
    only_ease = models.make_recommender("blend", members=MEMBERS, weights=[1.0, 0.0]).fit(data)
    ease = models.make_recommender("ease", l2=5.0).fit(data)
    users = [f"u{u}" for u in range(10)]
    got, want = only_ease.recommend(users, n=5), ease.recommend(users, n=5)
    pd.testing.assert_frame_equal(got[["user_id", "item_id"]], want[["user_id", "item_id"]])
    got, want = only_ease.similar_items([1, 25], n=4), ease.similar_items([1, 25], n=4)
    assert list(got["similar_item_id"]) == list(want["similar_item_id"])


def test_popularity_can_be_a_member(data) -> None:
    members = [["ease", {"l2": 5.0}], ["popular", {}]]
    rec = models.make_recommender("blend", members=members, weights=[0.5, 0.5]).fit(data)
    pop = rec.members_[1].item_popularity_ / rec.n_users_
    s = rec._dense_scores("users", np.array([0, 1]))
    want = 0.5 * standardised(rec.members_[0]._dense_scores("users", np.array([0, 1])))
    np.testing.assert_allclose(s, want + 0.5 * standardised(np.tile(pop, (2, 1))), atol=1e-6)
    assert len(rec.recommend_for_items([1, 2], n=5)) == 5


def test_an_item_one_member_cannot_score_is_ranked_by_the_others(data) -> None:
    members = [["ease", {"l2": 5.0, "max_items": 10}], ["als", {"factors": 8}]]
    rec = models.make_recommender("blend", members=members, weights=[0.5, 0.5]).fit(data)
    ease, als = (models.make_recommender(a, **p).fit(data) for a, p in members)
    rows = np.arange(rec.n_users_)
    s = rec._dense_scores("users", rows)
    assert np.isfinite(s).all()  # every item is a candidate: ALS scores them all
    outside = np.setdiff1d(np.arange(rec.n_items_), ease.ease_items_)[0]
    ze, za = (standardised(m._dense_scores("users", rows)) for m in (ease, als))
    low = np.min(np.where(np.isfinite(ze), ze, np.inf), axis=1)
    np.testing.assert_allclose(s[:, outside], 0.5 * low + 0.5 * za[:, outside], rtol=1e-6)


def test_mf_dense_scores_agree_with_its_rankings(data) -> None:
    als = models.make_recommender("als", factors=8).fit(data)
    rows = np.array([0, 5])
    np.testing.assert_array_equal(als._dense_scores("users", rows), als.exact_scores(rows))
    sim = als._dense_scores("items", np.array([4]))[0]
    sim[4] = -np.inf
    top = als.similar_items([int(als.item_ids_[4])], n=3)["similar_item_id"]
    assert list(top) == [int(als.item_ids_[i]) for i in np.argsort(-sim)[:3]]


def test_members_are_saved_inside_the_blend_and_erased_with_it(data, tmp_path) -> None:
    rec = models.make_recommender("blend", members=MEMBERS, weights=[0.3, 0.7]).fit(data)
    path = rec.save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    assert [m["algorithm"] for m in meta["members"]] == ["ease", "als"]
    assert "user_ids" not in meta["members"][0]  # the id maps are stored once
    loaded = models.load_recommender(path)
    assert [type(m).__name__ for m in loaded.members_] == ["EASERecommender", "ALSRecommender"]
    assert loaded.members_[1].weighting == "log"
    pd.testing.assert_frame_equal(
        loaded.recommend(["u3", "u4"], n=6), rec.recommend(["u3", "u4"], n=6)
    )
    assert rec.drop_users(["u3"]) == 1
    assert [m.known_users(["u3"])[0] for m in rec.members_] == [False, False]
    again = json.loads((rec.save(tmp_path / "erased") / "model.json").read_text())
    assert "u3" not in again["user_ids"]
    erased = models.load_recommender(tmp_path / "erased")
    assert [m.n_users_ for m in erased.members_] == [rec.n_users_] * 2


@pytest.mark.parametrize(
    ("members", "weights", "match"),
    [
        ([["ease", {}]], [1.0], "at least 2 members"),
        (MEMBERS, [1.0], "2 non-negative numbers"),
        (MEMBERS, [1.0, -0.5], "non-negative"),
        (MEMBERS, [0.0, 0.0], "not all 0"),
        ([["ease", {}], ["blend", {}]], [0.5, 0.5], "'blend' is not a recommender algorithm"),
        ([["ease", {}], ["svd", {}]], [0.5, 0.5], "'svd' is not"),
        ([["ease", {}], "als"], [0.5, 0.5], r"\[algorithm, params\] pairs"),
    ],
)
def test_bad_blends_are_refused_before_fitting(data, members, weights, match) -> None:
    with pytest.raises(ConfigError, match=match):
        models.make_recommender("blend", members=members, weights=weights).fit(data)


def test_auto_tuning_judges_a_blend_of_its_two_best_algorithms_like_a_trial() -> None:
    data = clustered(n_users=90, n_items=30, per_user=10)
    model = models.tune_recommender(data, "auto", trials=6, validation="random", random_state=0)
    info = model.extra_["tuning"]
    blends = [f for f in info["finalists"] if f["algorithm"] == "blend"]
    assert len(blends) == 1 and len(blends[0]["ndcg"]) == 1 + tuning.EXTRA_SPLITS
    (first, _), (second, _) = blends[0]["params"]["members"]
    assert first != second and {first, second} <= set(tuning.AUTO_ALGORITHMS)
    assert blends[0]["params"]["weights"][1] in tuning.BLEND_WEIGHTS
    # its further-split figure is a refit of the chosen blend on that split
    fit, held = tuning._extra_split(data, "random", 0.2, 0, 1)
    again = models.make_recommender("blend", random_state=0, **blends[0]["params"]).fit(fit)
    assert evaluation.evaluate(again, fit, held, k=10)["ndcg"] == pytest.approx(
        blends[0]["ndcg"][1], abs=1e-12
    )
    best = max(info["finalists"], key=lambda f: np.mean(f["ndcg"]))
    assert info["algorithm"] == best["algorithm"] == model.algorithm
    assert info["selection_ndcg"] == pytest.approx(np.mean(best["ndcg"]))
    alone = models.tune_recommender(data, "ease", trials=2, validation="random")
    assert all(f["algorithm"] == "ease" for f in alone.extra_["tuning"]["finalists"])


def test_a_blend_needs_two_algorithms() -> None:
    one = [
        tuning._Candidate(0.3, i, {"algorithm": "ease", "ease.l2": float(i + 1)}) for i in range(3)
    ]
    data = clustered(n_users=30, n_items=15, per_user=5)
    assert tuning._blend_candidate(one, data, data, 10, True, 0) is None
    with pytest.raises(ConfigError, match="auto builds blends"):
        models.tune_recommender(data, "blend", trials=2)


def test_a_blend_is_trained_registered_and_served_through_mlflow(tmp_path) -> None:
    import mlflow
    from cip.models.recommender.tracking import train_recommender_run

    data = clustered(n_users=60, n_items=24, per_user=8)
    model, _, metrics = train_recommender_run(
        data,
        algorithm="blend",
        tracking_uri=mlflow_db(tmp_path / "mlflow.db"),
        artifact_location=str(tmp_path / "artifacts"),
    )
    assert metrics["algorithm"] == "blend" and metrics["promoted"]
    users = pd.DataFrame({"user_id": ["u0", "u7", "nobody"], "n": [4, 4, 4]})
    served = mlflow.pyfunc.load_model("models:/cip-recommender@champion").predict(users)
    pd.testing.assert_frame_equal(
        served.reset_index(drop=True),
        model.recommend(["u0", "u7", "nobody"], n=4).reset_index(drop=True),
    )
