"""spark_als: implicit ALS fitted by Spark MLlib, served as an ordinary CIP recommender."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.models.recommender import (
    SparkALSRecommender,
    load_recommender,
    make_recommender,
)
from cip.profiles.errors import DataError

pytestmark = pytest.mark.spark


def _shop(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four taste groups over skewed item popularity; two group items per user held out."""
    rng = np.random.default_rng(seed)
    n_users, n_items, groups = 240, 80, 4
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.7  # item 0 the most popular overall
    group_of = rng.permutation(np.arange(n_items) % groups)
    train, test = [], []
    for u in range(n_users):
        mine = np.flatnonzero(group_of == u % groups)
        taste = rng.choice(mine, size=8, replace=False, p=pop[mine] / pop[mine].sum())
        noise = rng.choice(n_items, size=2, replace=False, p=pop / pop.sum())
        for it in taste[:6]:
            train.append((f"u{u}", f"i{it}", float(rng.integers(1, 4))))
        for it in noise:
            train.append((f"u{u}", f"i{it}", 1.0))
        test += [(f"u{u}", f"i{it}") for it in taste[6:] if it not in set(taste[:6]) | set(noise)]
    cols = ["user_id", "item_id", "weight"]
    return pd.DataFrame(train, columns=cols), pd.DataFrame(test, columns=cols[:2])


def _hit_rate(model, test: pd.DataFrame) -> float:
    recs = model.recommend(test["user_id"].unique().tolist(), n=10)
    hits = test.merge(recs[["user_id", "item_id"]], on=["user_id", "item_id"])
    return len(hits) / len(test)


@pytest.fixture(scope="module")
def fitted(spark):
    train, test = _shop()
    sdf = spark.createDataFrame(train)
    model = make_recommender(
        "spark_als", factors=8, iterations=8, regularization=0.05, alpha=10.0, blocks=2
    ).fit(sdf)
    return model, train, test


def test_spark_als_beats_popularity_on_held_out_items(fitted) -> None:
    model, train, test = fitted
    assert isinstance(model, SparkALSRecommender)
    assert model.user_factors_.shape == (train["user_id"].nunique(), 8)
    assert np.abs(model.item_factors_).sum(axis=1).min() > 0  # every item got a factor
    popular = make_recommender("popular").fit(train)
    als, pop = _hit_rate(model, test), _hit_rate(popular, test)
    assert als > 1.5 * pop and als > 0.3, (als, pop)


def test_fold_in_of_a_known_history_gives_the_fitted_user_factor(fitted) -> None:
    # MLlib solves the users last with the final item factors: the same equation
    model = fitted[0]
    for row in (0, 17, 101):
        got = model._fold_in(model.user_items_[row])[0]
        np.testing.assert_allclose(got, model.user_factors_[row], rtol=2e-3, atol=2e-4)
    visitor = model.recommend_for_items(["i3", "i7"], n=5)
    assert len(visitor) == 5 and not set(visitor["item_id"]) & {"i3", "i7"}


def test_spark_als_round_trips_through_save_and_load(fitted, tmp_path) -> None:
    model = fitted[0]
    back = load_recommender(model.save(tmp_path / "rec"))
    assert type(back) is SparkALSRecommender and back.get_params() == model.get_params()
    users = ["u0", "u5", "u77", "nobody"]
    pd.testing.assert_frame_equal(back.recommend(users, n=7), model.recommend(users, n=7))


def test_a_spark_frame_without_ids_is_a_clear_error(spark) -> None:
    sdf = spark.createDataFrame(pd.DataFrame({"user_id": ["a"], "sku": ["x"]}))
    with pytest.raises(DataError, match="item_id"):
        SparkALSRecommender().fit(sdf)


@pytest.mark.slow
def test_spark_als_is_tracked_registered_and_served_like_als(spark, tmp_path) -> None:
    import mlflow
    from cip.models.recommender.tracking import train_recommender_run

    from tests._models_support import mlflow_db

    train, _ = _shop(seed=1)
    uri = mlflow_db(tmp_path / "mlflow.db")
    model, run_id, metrics = train_recommender_run(
        train,
        algorithm="spark_als",
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
        validation="random",
    )
    assert isinstance(model, SparkALSRecommender) and metrics["version"] == "1"
    # the default hyperparameters are not tuned for a 240-user shop: quality is checked above
    assert 0 <= metrics["ndcg_at_10"] <= 1 and metrics["popular_ndcg_at_10"] > 0
    assert mlflow.MlflowClient().get_run(run_id).data.params["algorithm"] == "spark_als"
    served = mlflow.pyfunc.load_model("models:/cip-recommender/1")
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "n": 10})
    pd.testing.assert_frame_equal(
        served.predict(users).reset_index(drop=True),
        model.recommend(["u1", "u2", "u3"], n=10).reset_index(drop=True),
    )
