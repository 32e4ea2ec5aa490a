"""Optuna tuning: own validation split, every algorithm tried, best refit on everything."""

from __future__ import annotations

import cip.models as models
import numpy as np
import pandas as pd
import pytest
from cip.models.recommender.tuning import split_validation
from cip.profiles.errors import ConfigError


def clustered(n_users: int = 90, n_items: int = 30, per_user: int = 10, seed: int = 0):
    """Users of three taste clusters, each buying items of its cluster over 100 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        c = u % 3
        cluster_items = np.arange(c * (n_items // 3), (c + 1) * (n_items // 3))
        for it in rng.choice(cluster_items, size=per_user, replace=False):
            rows.append(
                (
                    f"u{u}",
                    f"i{it}",
                    pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 100))),
                )
            )
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_auto_tuning_tries_every_algorithm_and_beats_popular():
    df = clustered()
    seen = []
    rec = models.tune_recommender(
        df, algorithm="auto", trials=6, random_state=0, callback=lambda n, best: seen.append(n)
    )
    info = rec.extra_["tuning"]
    assert info["trials"] == 6 and seen == [1, 2, 3, 4, 5, 6]
    assert info["algorithm"] == rec.algorithm and rec.algorithm in {"als", "ease", "itemknn", "bpr"}
    assert info["validation"] == "auto"
    assert info["validation_ndcg"] > 1.5 * info["popular_validation_ndcg"]
    assert rec.get_params()[next(iter(info["params"]))] == next(iter(info["params"].values()))
    assert rec.n_users_ == df["user_id"].nunique()  # refit on all the given interactions


def test_single_algorithm_tuning_is_seeded():
    df = clustered(seed=1)
    a = models.tune_recommender(df, algorithm="itemknn", trials=3, random_state=5)
    b = models.tune_recommender(df, algorithm="itemknn", trials=3, random_state=5)
    assert a.algorithm == "itemknn" and a.get_params() == b.get_params()


def test_validation_splits():
    df = clustered()
    train, valid = split_validation(df, "temporal", 0.2)
    assert train["ts"].max() < valid["ts"].min()
    assert set(valid["user_id"]) <= set(train["user_id"])
    train, valid = split_validation(df.drop(columns="ts"), "auto", 0.2)
    assert len(valid) == pytest.approx(0.2 * len(df), abs=len(df) * 0.05)
    with pytest.raises(ConfigError):
        split_validation(df, "kfold")
    with pytest.raises(ConfigError):
        models.tune_recommender(df, algorithm="svd")


def _diverging_bpr(monkeypatch) -> None:
    """BPR fails as implicit does when its factors blow up (NaN)."""
    import cip.models.recommender.tuning as tuning
    from implicit.recommender_base import ModelFitError

    real = tuning.make_recommender

    def make(alg, **params):
        if alg == "bpr":
            raise ModelFitError("NaN encountered in factors")
        return real(alg, **params)

    monkeypatch.setattr(tuning, "make_recommender", make)


def test_a_diverging_trial_is_pruned_and_tuning_goes_on(monkeypatch):
    _diverging_bpr(monkeypatch)
    rec = models.tune_recommender(clustered(), algorithm="auto", trials=6, random_state=0)
    assert rec.algorithm != "bpr" and rec.extra_["tuning"]["trials"] == 6


def test_tuning_where_nothing_converges_is_a_clear_error(monkeypatch):
    from cip.profiles.errors import DataError

    _diverging_bpr(monkeypatch)
    with pytest.raises(DataError, match="none of the 2 trials converged"):
        models.tune_recommender(clustered(), algorithm="bpr", trials=2, random_state=0)
