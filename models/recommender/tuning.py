"""Hyperparameter tuning with Optuna (TPE) on a validation split of the given interactions.

The tuner never sees test data: it carves its own train/validation parts out
of the interactions it is given, fits every trial on the train part, scores
NDCG@k on the validation part (protocol of :mod:`models.evaluation`), then refits
the best configuration on all the given interactions.

``algorithm="auto"`` searches algorithms and their parameters jointly: every
candidate algorithm first runs once with its defaults (enqueued trials, so no
algorithm is starved on a small budget), then TPE (Bergstra et al. 2011) takes
over with a conditional search space.

One validation split is a noisy judge: among many trials, the one that scores
best on it is partly the luckiest (a winner's curse; on MovieLens 100K with
ratings as weights a tuned 8-factor ALS led a split by 0.5 % over the tuned
EASE and lost the test by 8 %, see benchmarks/RESULTS.md). So the finalists --
the best trial of each algorithm and the best few overall, within
:data:`FINALIST_MARGIN` of the leader -- are scored again on
:data:`EXTRA_SPLITS` further validation splits, and the best mean wins.

``auto`` also blends the best trials of its two best algorithms
(:class:`~models.recommender._blend.BlendRecommender`: standardised scores, the
second member's share one of :data:`BLEND_WEIGHTS`, chosen on the first split
like every trial's parameters); the blend is one more finalist and is chosen
only when its mean over the splits is the best.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from cip.models import evaluation
from cip.models.recommender import ALGORITHMS, Recommender, make_recommender
from cip.profiles.errors import ConfigError, DataError

__all__ = ["SEARCH_SPACES", "split_validation", "tune_recommender"]

log = logging.getLogger(__name__)

#: Algorithms ``auto`` chooses from (``popular`` is the baseline, not a candidate).
AUTO_ALGORITHMS: tuple[str, ...] = ("als", "ease", "itemknn", "bpr")
DEFAULT_TRIALS = 20
#: EASE inverts a dense item x item matrix: ``auto`` skips it above this many items.
EASE_MAX_ITEMS = 10_000
#: Trials within this share of the best validation NDCG are finalists.
FINALIST_MARGIN = 0.05
#: At most this many finalists (each algorithm's best first, then the next best overall).
MAX_FINALISTS = 5
#: Further validation splits each finalist is scored on.
EXTRA_SPLITS = 2
#: Shares of the second member tried when ``auto`` blends its two best algorithms.
BLEND_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 0.75)


def _als(t: Any) -> dict[str, Any]:
    # Where ALS does well, not everywhere it runs. implicit's ``regularization`` is an
    # absolute penalty against sums over a user's items, so 1e-3 is next to none; the
    # old space (factors 8-256, regularization 1e-3-100, alpha 0.1-100, sweeps 5-30)
    # let 20 TPE trials pick near-unpenalised low-rank models that led one split
    # (11 factors, regularization 0.001 on ML-100K). Ranges 2-100x narrower and the
    # sweeps at the model's default: tuned ALS went from 0.460-0.466 to 0.461-0.479
    # test NDCG@10 on ML-100K (75/25) and from 0.0860 to 0.0898 on Online Retail
    # (benchmarks/RESULTS.md, session of 2026-12-07 14:30 UTC).
    return {
        "factors": t.suggest_int("als.factors", 16, 256, log=True),
        "regularization": t.suggest_float("als.regularization", 0.1, 100.0, log=True),
        "alpha": t.suggest_float("als.alpha", 0.3, 30.0, log=True),
        "weighting": t.suggest_categorical("als.weighting", ["binary", "log", "raw"]),
    }


def _bpr(t: Any) -> dict[str, Any]:
    return {
        "factors": t.suggest_int("bpr.factors", 8, 256, log=True),
        "learning_rate": t.suggest_float("bpr.learning_rate", 1e-3, 0.3, log=True),
        "regularization": t.suggest_float("bpr.regularization", 1e-5, 0.1, log=True),
        "iterations": t.suggest_int("bpr.iterations", 20, 400, log=True),
    }


def _itemknn(t: Any) -> dict[str, Any]:
    sim = t.suggest_categorical("itemknn.similarity", ["cosine", "bm25"])
    p: dict[str, Any] = {
        "similarity": sim,
        "K": t.suggest_int("itemknn.K", 5, 1000, log=True),
        "weighting": t.suggest_categorical("itemknn.weighting", ["binary", "log", "raw"]),
    }
    if sim == "cosine":
        p["shrinkage"] = t.suggest_float("itemknn.shrinkage", 0.0, 100.0)
    else:
        p["bm25_k1"] = t.suggest_float("itemknn.bm25_k1", 0.1, 10.0, log=True)
        p["bm25_b"] = t.suggest_float("itemknn.bm25_b", 0.0, 1.0)
    return p


def _ease(t: Any) -> dict[str, Any]:
    return {
        "l2": t.suggest_float("ease.l2", 1.0, 1e4, log=True),
        "weighting": t.suggest_categorical("ease.weighting", ["binary", "log"]),
    }


#: Search space per algorithm: a function of an Optuna trial returning parameters.
SEARCH_SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "als": _als,
    "bpr": _bpr,
    "itemknn": _itemknn,
    "ease": _ease,
    "popular": lambda t: {},
}


def split_validation(
    interactions: pd.DataFrame,
    validation: str = "auto",
    size: float = 0.2,
    random_state: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve (train, validation) out of ``interactions``.

    ``temporal``: the latest ``size`` share of interactions (by ``ts``) is the
    validation, for users with earlier history; ``random``: a per-user random
    split; ``auto``: temporal when ``ts`` has more than one distinct value.
    """
    validation = _resolved(interactions, validation)
    if validation == "random":
        return evaluation.random_split_per_user(interactions, size, random_state)
    if validation == "temporal":
        ts = pd.to_datetime(interactions["ts"])
        cut = ts.quantile(1.0 - size)
        return evaluation.temporal_split(interactions.assign(ts=ts), cut)
    raise ConfigError(f"validation must be auto, temporal or random, not {validation!r}")


def _resolved(interactions: pd.DataFrame, validation: str) -> str:
    """``auto`` resolved: ``temporal`` when ``ts`` has more than one distinct value, else ``random``."""
    if validation != "auto":
        return validation
    has_ts = "ts" in interactions.columns and interactions["ts"].nunique() > 1
    return "temporal" if has_ts else "random"


def tune_recommender(
    interactions: pd.DataFrame,
    algorithm: str = "auto",
    trials: int | None = None,
    minutes: float | None = None,
    random_state: int = 0,
    k: int = 10,
    validation: str = "auto",
    validation_size: float = 0.2,
    exclude_seen: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> Recommender:
    """Tune, select and fit a recommender; returns it fitted on all ``interactions``.

    Args:
        interactions: ``user_id, item_id[, weight, ts]``; the tuner splits them itself.
        algorithm: ``auto`` (search ALS, EASE, item-kNN and BPR, then blend the two
            best) or one algorithm name.
        trials: number of Optuna trials (default 20 when ``minutes`` is not given).
        minutes: time budget for the search (stops starting trials after it; the
            blend and the finalists' re-check on further validation splits come on top).
        random_state: seed of the split, the sampler and the models.
        k: cut-off of the NDCG@k objective.
        validation: ``auto``, ``temporal`` or ``random`` (see :func:`split_validation`).
        validation_size: share of interactions held out for validation.
        exclude_seen: protocol of the objective (see :mod:`models.evaluation`).
        callback: called after each trial with (trial number, best NDCG so far).

    The result carries ``extra_["tuning"]``: the chosen parameters, the validation
    NDCG of the chosen trial on the first split and of the popularity baseline,
    the number of trials, and ``finalists`` (each with its NDCG on every
    validation split and their mean, ``selection_ndcg`` being the chosen one's).
    """
    import optuna
    from implicit.recommender_base import ModelFitError

    if algorithm != "auto" and algorithm not in SEARCH_SPACES:
        raise ConfigError(
            f"cannot tune {algorithm!r}; expected auto or {', '.join(SEARCH_SPACES)}"
            + (" (auto builds blends)" if algorithm == "blend" else "")
        )
    if trials is None and minutes is None:
        trials = DEFAULT_TRIALS
    if trials is not None and trials < 1:
        raise ConfigError("trials must be >= 1")
    train, valid = split_validation(interactions, validation, validation_size, random_state)
    n_items = train["item_id"].nunique()
    candidates = (
        [algorithm]
        if algorithm != "auto"
        else [a for a in AUTO_ALGORITHMS if a != "ease" or n_items <= EASE_MAX_ITEMS]
    )
    if "ease" in candidates and n_items > EASE_MAX_ITEMS and algorithm == "ease":
        log.warning("EASE on %d items keeps only the %d most popular", n_items, EASE_MAX_ITEMS)

    def score_on(alg: str, params: dict[str, Any], fit: pd.DataFrame, held: pd.DataFrame) -> float:
        model = make_recommender(alg, random_state=random_state, **params).fit(fit)
        return evaluation.evaluate(model, fit, held, k=k, exclude_seen=exclude_seen)["ndcg"]

    def score(alg: str, params: dict[str, Any]) -> float:
        return score_on(alg, params, train, valid)

    popular_ndcg = score("popular", {})

    def objective(trial: Any) -> float:
        alg = trial.suggest_categorical("algorithm", candidates)
        params = SEARCH_SPACES[alg](trial)
        started = time.perf_counter()
        try:
            value = score(alg, params)
        except ModelFitError as exc:  # e.g. BPR diverging (NaN factors) at a high learning rate
            log.warning("trial %d %s %s diverged (%s): pruned", trial.number, alg, params, exc)
            raise optuna.TrialPruned(f"{alg} did not converge: {exc}") from None
        log.info(
            "trial %d %s %s ndcg@%d=%.4f (%.1fs)",
            trial.number,
            alg,
            params,
            k,
            value,
            time.perf_counter() - started,
        )
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate/group are "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=random_state, multivariate=True, group=True, n_startup_trials=5
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for alg in candidates:  # every algorithm gets a run with its defaults first
        study.enqueue_trial({"algorithm": alg, **_defaults(alg)}, skip_if_exists=True)

    def _cb(study: Any, trial: Any) -> None:
        if callback is not None:
            callback(trial.number + 1, study.best_value)

    study.optimize(
        objective,
        n_trials=trials,
        timeout=None if minutes is None else minutes * 60,
        callbacks=[_cb],
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise DataError(
            f"tuning: none of the {len(study.trials)} trials converged; "
            "try another algorithm or more trials"
        )

    if algorithm == "auto":
        blend = _blend_candidate(done, train, valid, k, exclude_seen, random_state)
        if blend is not None:
            done = [*done, blend]

    further: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}  # each split made once

    def rescore(alg: str, params: dict[str, Any], j: int) -> float:
        if j not in further:
            further[j] = _extra_split(interactions, validation, validation_size, random_state, j)
        fit, held = further[j]
        try:
            return score_on(alg, params, fit, held)
        except ModelFitError:  # converged on the first split only: not a robust choice
            return 0.0

    best, finalists = _final_choice(done, rescore)
    further.clear()
    alg, params = _params_of(best)
    selection = float(np.mean(finalists[0]["ndcg"]))
    model = make_recommender(alg, random_state=random_state, **params).fit(interactions)
    model.extra_ = {
        "tuning": {
            "algorithm": alg,
            "params": params,
            "validation_ndcg": float(best.value),
            "selection_ndcg": selection,
            "finalists": finalists,
            "popular_validation_ndcg": float(popular_ndcg),
            "trials": len(study.trials),
            "k": k,
            "validation": validation,
        }
    }
    log.info(
        "tuning chose %s %s (validation ndcg@%d %.4f, mean of %d splits %.4f, vs popular %.4f, "
        "%d trials, %d finalists)",
        alg,
        params,
        k,
        best.value,
        len(finalists[0]["ndcg"]),
        selection,
        popular_ndcg,
        len(study.trials),
        len(finalists),
    )
    if not np.isfinite(best.value):
        raise DataError("tuning produced no finite validation score")
    return model


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A configuration scored outside the Optuna study (the blend), shaped like a trial."""

    value: float
    number: int
    params: dict[str, Any]


def _blend_candidate(
    done: list[Any],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    k: int,
    exclude_seen: bool,
    random_state: int,
) -> _Candidate | None:
    """The best trials of the two best algorithms, blended (``None`` with one algorithm).

    The members are fitted once on the first split, where their parameters were
    chosen; the share of the second member is chosen there too, among
    :data:`BLEND_WEIGHTS`. The blend then goes to :func:`_final_choice` like any
    trial (re-scored on the further splits when it is a finalist).
    """
    best: dict[str, dict[str, Any]] = {}
    for t in sorted(done, key=lambda t: (-t.value, t.number)):
        alg, params = _params_of(t)
        if alg != "popular":
            best.setdefault(alg, params)
    if len(best) < 2:
        return None
    from implicit.recommender_base import ModelFitError

    members = [[alg, params] for alg, params in list(best.items())[:2]]
    started = time.perf_counter()
    try:
        model = make_recommender("blend", members=members, random_state=random_state).fit(train)
    except ModelFitError:
        return None
    scored = []
    for w in BLEND_WEIGHTS:
        model.set_params(weights=[1.0 - w, w])  # the weights only act at scoring: no refit
        ndcg = evaluation.evaluate(model, train, valid, k=k, exclude_seen=exclude_seen)["ndcg"]
        scored.append((float(ndcg), w))
    value, w = max(scored)
    log.info(
        "blend of %s and %s: ndcg@%d %s on the first split (%.1fs)",
        members[0][0],
        members[1][0],
        k,
        ", ".join(f"share {w_:.2f} {v:.4f}" for v, w_ in scored),
        time.perf_counter() - started,
    )
    return _Candidate(
        value,
        max(t.number for t in done) + 1,
        {"algorithm": "blend", "blend.members": members, "blend.weights": [1.0 - w, w]},
    )


def _params_of(trial: Any) -> tuple[str, dict[str, Any]]:
    """``(algorithm, parameters)`` of a trial, parameter names without the algorithm prefix."""
    alg = trial.params["algorithm"]
    prefix = alg + "."
    return alg, {key[len(prefix) :]: v for key, v in trial.params.items() if key.startswith(prefix)}


def _extra_split(
    interactions: pd.DataFrame, validation: str, size: float, random_state: int, j: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``j``-th further validation split (``j >= 1``) a finalist is scored on.

    A random split draws another seed; a temporal split, which no seed changes,
    moves its cut instead (a share of ``size * (1 - 0.25 j)`` or ``size * (1 + 0.25 j)``,
    alternately), so a finalist is judged on other weeks as well.
    """
    if _resolved(interactions, validation) == "temporal":
        step = 0.25 * ((j + 1) // 2)
        share = size * (1 - step if j % 2 else 1 + step)
        return split_validation(interactions, "temporal", min(max(share, 0.05), 0.5), random_state)
    return split_validation(interactions, validation, size, random_state + j)


def _final_choice(
    done: list[Any], rescore: Callable[[str, dict[str, Any], int], float]
) -> tuple[Any, list[dict[str, Any]]]:
    """Pick the trial to refit: the best mean NDCG of the finalists over every validation split.

    ``done`` are the completed trials (their ``value`` is the NDCG on the first
    split); ``rescore(algorithm, params, j)`` scores one on the ``j``-th further
    split. Returns the chosen trial and the finalists, best first, each as
    ``{"algorithm", "params", "ndcg": [first split, further splits...]}``.
    With one finalist nothing is re-scored.
    """
    ranked = sorted(done, key=lambda t: (-t.value, t.number))
    floor = ranked[0].value - FINALIST_MARGIN * abs(ranked[0].value)
    near = [(t, *_params_of(t)) for t in ranked if t.value >= floor]
    unique: list[tuple[Any, str, dict[str, Any]]] = []
    keys: set[str] = set()
    # each algorithm's best first, then the next best overall; the same parameters
    # enqueued or sampled twice score the same and are kept once
    for each_first in (True, False):
        for t, alg, params in near:
            key = repr((alg, sorted(params.items())))
            if key in keys or len(unique) >= MAX_FINALISTS:
                continue
            if each_first and any(a == alg for _, a, _ in unique):
                continue
            keys.add(key)
            unique.append((t, alg, params))
    scores = [[float(t.value)] for t, _, _ in unique]
    if len(unique) > 1:
        for j in range(1, EXTRA_SPLITS + 1):
            try:
                col = [float(rescore(alg, params, j)) for _, alg, params in unique]
            except DataError as exc:  # e.g. a moved temporal cut leaves no validation rows
                log.info("further validation split %d skipped: %s", j, exc)
                continue
            for row, v in zip(scores, col, strict=True):
                row.append(v)
    rows = [
        (t, {"algorithm": alg, "params": params, "ndcg": nd})
        for (t, alg, params), nd in zip(unique, scores, strict=True)
    ]
    rows.sort(key=lambda r: (-float(np.mean(r[1]["ndcg"])), -r[0].value, r[0].number))
    return rows[0][0], [r[1] for r in rows]


def _defaults(alg: str) -> dict[str, Any]:
    """The enqueued first trial of ``alg``: its defaults, in the search-space names."""
    cls = ALGORITHMS[alg]
    defaults = {p: v.default for p, v in _signature(cls).items()}
    trial = _Recorder(defaults)
    SEARCH_SPACES[alg](trial)
    return trial.values


def _signature(cls: type) -> dict[str, Any]:
    import inspect

    return dict(inspect.signature(cls.__init__).parameters)


class _Recorder:
    """A fake trial that answers every suggestion with the algorithm's default."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.values: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        v = self.defaults[name.split(".", 1)[1]]
        self.values[name] = v
        return v

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._get(name)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._get(name)

    def suggest_categorical(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._get(name)
