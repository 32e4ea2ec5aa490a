"""Hyperparameter search for the LightGBM estimators with Optuna (Akiba et al., 2019).

* Sampler: TPE (Bergstra et al., 2011), seeded, so a fresh study with the same
  seed and data proposes the same trials.
* Pruning: a LightGBM callback reports the validation AUC every
  ``report_every`` boosting rounds (``trial.report``) and stops unpromising
  trials (``trial.should_prune``, median rule: Optuna's ``MedianPruner``).
  This replaces ``optuna-integration``'s LightGBM callback, which is not a
  dependency.
* Objective: ROC AUC on the estimator's time-based validation snapshot (the
  latest training snapshot); the holdout is never seen during tuning.
* Storage: any Optuna storage, e.g. a SQLite ``RDBStorage`` in the workspace
  (``<workspace>/models/optuna.db``); studies are created with
  ``load_if_exists=True`` so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

__all__ = ["TuningResult", "tune", "suggest_params", "sqlite_storage"]

log = logging.getLogger(__name__)


def sqlite_storage(path: str) -> optuna.storages.RDBStorage:
    """An Optuna storage in a SQLite file (created when missing)."""
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The LightGBM search space (names of the estimators' parameters)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 300, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def _pruning_callback(trial: optuna.Trial, every: int) -> Callable[[Any], None]:
    """LightGBM callback: report validation AUC, raise ``TrialPruned`` when told to."""

    def _callback(env: Any) -> None:
        step = env.iteration + 1
        if step % every or not env.evaluation_result_list:
            return
        for data_name, metric, value, _ in env.evaluation_result_list:
            if data_name == "valid" and metric == "auc":
                trial.report(float(value), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {step} (valid auc {value:.4f})")
                return

    _callback.order = 25  # type: ignore[attr-defined]  # before early stopping (30)
    return _callback


@dataclass
class TuningResult:
    """What a search found: best parameters and value, and trial counts."""

    best_params: dict[str, Any]
    best_value: float
    study_name: str
    n_complete: int
    n_pruned: int
    n_new: int
    values: list[float] = field(default_factory=list)


def tune(
    make_estimator: Callable[..., Any],
    X: pd.DataFrame,
    y: np.ndarray,
    snapshot: Sequence[Any],
    *,
    n_trials: int | None = None,
    timeout_minutes: float | None = None,
    seed: int = 0,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str = "cip",
    report_every: int = 10,
    on_trial: Callable[[int, float | None], None] | None = None,
    groups: Sequence[Any] | None = None,
) -> TuningResult:
    """Search LightGBM parameters within a trial count or a time budget.

    Args:
        make_estimator: ``make_estimator(**params)`` builds an unfitted estimator.
        X, y, snapshot: training rows, target and per-row snapshot date (the latest
            snapshot is the validation set).
        n_trials: the study's target number of finished trials (complete or pruned),
            counting those already stored: re-running resumes an interrupted search.
        timeout_minutes: wall-clock budget of this call.
        seed: sampler seed (offset by the number of stored trials, so a resumed
            search does not repeat proposals).
        storage: Optuna storage (``None``: in memory).
        study_name: name of the study in ``storage``.
        report_every: boosting rounds between pruning reports.
        on_trial: progress callback ``(trial_number, value or None)``.
        groups: per-row person id, passed to the estimator's ``fit`` (its
            validation split by person when the history is too short to purge).
    """
    if n_trials is None and timeout_minutes is None:
        raise ValueError("give n_trials or timeout_minutes")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage)
    n_stored = 0
    if storage is not None and study_name in optuna.get_all_study_names(storage):
        n_stored = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + n_stored, n_startup_trials=8),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=3 * report_every, interval_steps=report_every
        ),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = sum(t.state in finished for t in study.trials)
    remaining = None if n_trials is None else max(0, n_trials - done)

    def objective(trial: optuna.Trial) -> float:
        est = make_estimator(**suggest_params(trial))
        est.fit(
            X,
            y,
            snapshot=snapshot,
            callbacks=[_pruning_callback(trial, report_every)],
            **({} if groups is None else {"groups": groups}),
        )
        trial.set_user_attr("best_iteration", int(est.best_iteration_))
        return float(est.validation_auc_)

    def _progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial.number, trial.value)

    started = time.monotonic()
    if remaining != 0:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=None if timeout_minutes is None else timeout_minutes * 60.0,
            callbacks=[_progress],
        )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study_name!r} has no completed trial")
    best = study.best_trial
    log.info(
        "study %s: %d complete, best valid auc %.4f (%.1fs)",
        study_name,
        len(complete),
        best.value,
        time.monotonic() - started,
    )
    return TuningResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        study_name=study_name,
        n_complete=len(complete),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        n_new=len(study.trials) - n_stored,
        values=[float(t.value) for t in complete],
    )
