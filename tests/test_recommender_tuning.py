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


class _Trial:
    """What the final choice reads of an Optuna trial."""

    def __init__(self, number: int, value: float, algorithm: str, **params) -> None:
        self.number, self.value = number, value
        self.params = {"algorithm": algorithm, **{f"{algorithm}.{k}": v for k, v in params.items()}}


def test_final_choice_prefers_the_steady_finalist_over_the_lucky_one():
    from cip.models.recommender import tuning

    trials = [
        _Trial(0, 0.2408, "als", factors=8),  # leads the first split by luck
        _Trial(1, 0.2393, "ease", l2=700.0),
        _Trial(2, 0.2390, "ease", l2=700.0),  # the same parameters again: scored once
        _Trial(3, 0.2000, "itemknn", K=50),  # outside the margin: never re-scored
    ]
    later = {("als", 1): 0.2289, ("als", 2): 0.2369, ("ease", 1): 0.2393, ("ease", 2): 0.2392}
    calls = []

    def rescore(alg, params, j):
        calls.append((alg, params, j))
        return later[(alg, j)]

    best, finalists = tuning._final_choice(trials, rescore)
    assert best.number == 1 and best.params["ease.l2"] == 700.0
    assert [f["algorithm"] for f in finalists] == ["ease", "als"]
    assert finalists[0]["ndcg"] == [0.2393, 0.2393, 0.2392] and finalists[0]["params"] == {
        "l2": 700.0
    }
    assert finalists[1]["ndcg"] == [0.2408, 0.2289, 0.2369]
    assert sorted((a, j) for a, _, j in calls) == sorted(later)  # itemknn and the copy never refit


def test_final_choice_with_one_finalist_refits_nothing_and_a_failed_split_is_dropped():
    from cip.models.recommender import tuning
    from cip.profiles.errors import DataError

    def never(alg, params, j):
        raise AssertionError("one finalist needs no further split")

    best, finalists = tuning._final_choice(
        [_Trial(0, 0.3, "ease", l2=1.0), _Trial(1, 0.1, "als", factors=4)], never
    )
    assert best.number == 0 and finalists == [
        {"algorithm": "ease", "params": {"l2": 1.0}, "ndcg": [0.3]}
    ]

    def second_split_empty(alg, params, j):
        if j == 2:
            raise DataError("no validation rows")
        return {"ease": 0.25, "als": 0.31}[alg]

    best, finalists = tuning._final_choice(
        [_Trial(0, 0.30, "ease", l2=1.0), _Trial(1, 0.29, "als", factors=4)], second_split_empty
    )
    assert best.number == 1  # mean 0.30 over (0.29, 0.31) beats (0.30, 0.25)
    assert all(len(f["ndcg"]) == 2 for f in finalists)  # split 2 dropped for every finalist


def test_further_validation_splits_differ_from_the_first():
    from cip.models.recommender import tuning

    df = clustered()
    first = split_validation(df, "random", 0.2, 0)[1]
    for j in (1, 2):
        other = tuning._extra_split(df.drop(columns="ts"), "auto", 0.2, 0, j)[1]
        assert len(other) == len(first) and not other.equals(first)  # another seed, same share
    cuts = [split_validation(df, "temporal", 0.2)[1]["ts"].min()]
    for j in (1, 2):
        train, valid = tuning._extra_split(df, "auto", 0.2, 0, j)
        assert train["ts"].max() < valid["ts"].min()
        cuts.append(valid["ts"].min())
    assert cuts[1] > cuts[0] > cuts[2]  # a later cut (share 0.15), then an earlier one (0.25)


def test_auto_tuning_reports_its_finalists():
    rec = models.tune_recommender(clustered(), algorithm="auto", trials=8, random_state=0)
    info = rec.extra_["tuning"]
    chosen = info["finalists"][0]
    assert chosen["algorithm"] == rec.algorithm and chosen["params"] == info["params"]
    assert chosen["ndcg"][0] == info["validation_ndcg"]
    assert info["selection_ndcg"] == pytest.approx(np.mean(chosen["ndcg"]))
    means = [np.mean(f["ndcg"]) for f in info["finalists"]]
    assert means == sorted(means, reverse=True)
    assert all(len(f["ndcg"]) == len(chosen["ndcg"]) for f in info["finalists"])


def test_als_search_space_stays_where_als_is_good():
    """The ALS space: no vanishing penalty, no drowning confidence, sweeps left at the default."""
    import optuna
    from cip.models.recommender.tuning import SEARCH_SPACES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    drawn = []
    study.optimize(lambda t: drawn.append(SEARCH_SPACES["als"](t)) or 0.0, n_trials=200)
    assert {p for d in drawn for p in d} == {"factors", "regularization", "alpha", "weighting"}
    assert min(d["factors"] for d in drawn) >= 16 and max(d["factors"] for d in drawn) <= 256
    assert min(d["regularization"] for d in drawn) >= 0.1
    assert min(d["alpha"] for d in drawn) >= 0.3 and max(d["alpha"] for d in drawn) <= 30.0
    assert {d["weighting"] for d in drawn} == {"binary", "log", "raw"}
