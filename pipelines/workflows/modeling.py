"""Model workflows: train churn/propensity/recommender, score, and the registry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cip.pipelines.workflows.results import (
    AsOf,
    ChampionChange,
    ModelList,
    ModelVersion,
    RecommenderTrainResult,
    to_date,
)
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import REGISTERED_MODELS
from cip.profiles.errors import ConfigError, DataError

if TYPE_CHECKING:
    from cip.models.clv import CLVTrainResult
    from cip.models.scoring import ScoreResult
    from cip.models.training import TrainResult

__all__ = [
    "MODEL_KINDS",
    "ALGORITHMS",
    "REASONS",
    "registry_name",
    "train",
    "train_recommender",
    "train_clv",
    "score",
    "list_models",
    "promote",
    "rollback",
]

# MLflow's per-file download bars would clutter the output; callers report progress themselves.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

#: the supervised model kinds and their registered model names
MODEL_KINDS = {k: REGISTERED_MODELS[k] for k in ("churn", "propensity")}
#: recommender algorithms (``auto`` picks the best on validation)
ALGORITHMS = ("als", "bpr", "itemknn", "ease", "spark_als", "blend", "popular", "auto")
#: reason-code methods of ``score``
REASONS = ("path", "shap")


def registry_name(name: str) -> str:
    """``churn`` -> ``cip-churn``; other names are kept."""
    return REGISTERED_MODELS.get(name, name)


def train(
    ws: Workspace,
    kind: str,
    as_of: AsOf | None = None,
    *,
    horizon_days: int | None = None,
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    seed: int = 0,
    snapshot_every_days: int | None = None,
    n_snapshots: int | None = None,
    holdout: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``churn`` or ``propensity`` (options default to ``cip.yaml``'s ``models:``)."""
    from cip.models.training import train_model

    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}: churn, propensity, clv or recommender")
    if tune_trials is not None and tune_minutes is not None:
        raise ConfigError("give --tune-trials or --tune-minutes, not both")
    cfg = ws.config.models
    with ws.open_store() as store:
        return train_model(
            store,
            kind,
            None if as_of is None else to_date(as_of),
            horizon_days or cfg.horizon_days,
            ws.mlflow_tracking_uri,
            ws.mlflow_artifact_location,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            seed=seed,
            snapshot_every_days=snapshot_every_days or cfg.snapshot_every_days,
            n_snapshots=n_snapshots or cfg.n_snapshots,
            holdout=holdout or cfg.holdout,
            study_dir=ws.models_dir,
            min_delta=cfg.min_delta,
            min_auc=cfg.min_auc,
            progress=progress,
        )


def train_clv(
    ws: Workspace,
    as_of: AsOf | None = None,
    *,
    horizon_days: int | None = None,
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    seed: int = 0,
    snapshot_every_days: int | None = None,
    n_snapshots: int | None = None,
    holdout: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> CLVTrainResult:
    """Train the CLV model (``cip-clv``): predicted net revenue in ``[as_of, as_of + H)``.

    Candidates BG/NBD x Gamma-Gamma, last period's spend and a two-part LightGBM
    are compared on the same holdout (normalized Gini); the winner is registered
    and becomes the champion when it beats the current one (see
    :func:`cip.models.clv.train_clv`). Options left out come from ``models.clv``
    of ``cip.yaml``, then from ``models:`` (the snapshot grid only when set there).
    """
    from cip.models.clv import train_clv as run_train_clv

    if tune_trials is not None and tune_minutes is not None:
        raise ConfigError("give --tune-trials or --tune-minutes, not both")
    cfg = ws.config.models
    clv = cfg.clv
    # the snapshot grid: the option, else models.clv, else models: when set there (else
    # the CLV defaults, 12 snapshots 30 days apart)
    extra: dict[str, Any] = {}
    for key, given in (("snapshot_every_days", snapshot_every_days), ("n_snapshots", n_snapshots)):
        value = given or getattr(clv, key)
        if value is None and key in cfg.model_fields_set:
            value = getattr(cfg, key)
        if value is not None:
            extra[key] = value
    with ws.open_store() as store:
        return run_train_clv(
            store,
            None if as_of is None else to_date(as_of),
            horizon_days or clv.horizon_days or cfg.horizon_days,
            ws.mlflow_tracking_uri,
            ws.mlflow_artifact_location,
            seed=seed,
            tune_trials=tune_trials if tune_trials is not None or tune_minutes else clv.tune_trials,
            tune_minutes=tune_minutes,
            holdout=holdout or cfg.holdout,
            min_delta=cfg.min_delta,
            max_rows=clv.max_rows,
            holdout_rows=clv.holdout_rows,
            progress=progress,
            **extra,
        )


def train_recommender(
    ws: Workspace,
    algorithm: str | None = None,
    *,
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    as_of: AsOf | None = None,
) -> RecommenderTrainResult:
    """Read interactions from the workspace store, train, log to MLflow, register.

    ``algorithm`` defaults to ``recommender.algorithm`` of ``cip.yaml``; only
    interactions before ``as_of`` are used when it is given. The alias
    ``champion`` moves to the new version only when it beats the popularity
    baseline and the current champion on the same validation split.
    """
    from cip.models import interactions_from_store
    from cip.models.recommender.tracking import train_recommender_run

    cfg = ws.config.recommender
    algo = algorithm or cfg.algorithm
    if algo not in ALGORITHMS:
        raise ConfigError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, not {algo!r}")
    if tune_trials is not None and tune_minutes is not None:
        raise ConfigError("give --tune-trials or --tune-minutes, not both")
    day = None if as_of is None else str(to_date(as_of))
    with ws.open_store(read_only=True) as store:
        interactions = interactions_from_store(
            store, weights=cfg.event_weights, half_life_days=cfg.half_life_days, as_of=day
        )
    if interactions.empty:
        raise DataError(
            "no interactions in the store (completed order lines or weighted events with an "
            "item); run `cip ingest` first"
        )
    from implicit.recommender_base import ModelFitError

    try:
        model, run_id, metrics = train_recommender_run(
            interactions,
            algorithm=algo,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            tracking_uri=ws.mlflow_tracking_uri,
            artifact_location=ws.mlflow_artifact_location,
            k=cfg.k,
            validation=cfg.validation,
            as_of=day,
        )
    except ModelFitError as exc:  # e.g. BPR's factors diverging to NaN
        raise DataError(
            f"{algo} did not converge on these interactions ({exc}); nothing was registered. "
            "Try another --algorithm or tune it (--tune-trials)"
        ) from None
    return RecommenderTrainResult(
        run_id=run_id,
        algorithm=metrics["algorithm"],
        version=str(metrics["version"]),
        promoted=bool(metrics["promoted"]),
        users=int(model.n_users_),
        items=int(model.n_items_),
        interactions=int(model.user_items_.nnz),
        metrics={k: v for k, v in metrics.items() if k not in ("version", "promoted", "algorithm")},
    )


def score(
    ws: Workspace,
    as_of: AsOf,
    *,
    out: Path | None = None,
    reasons: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every profile at ``as_of`` with the champions into the ``scores`` table (and ``out``)."""
    from cip.models.scoring import score as run_score

    day = to_date(as_of)
    method = reasons or ws.config.models.reasons
    if method not in REASONS:
        raise ConfigError(f"--reasons must be path or shap, not {method!r}")
    with ws.open_store() as store:
        return run_score(
            store, day, ws.mlflow_tracking_uri, out=out, reasons=method, progress=progress
        )


def _registry(ws: Workspace) -> Any:
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    return registry


def list_models(ws: Workspace, names: list[str] | None = None) -> ModelList:
    """Every registered model version (optionally of ``names``) and which is the champion."""
    rows = _registry(ws).list_models([registry_name(n) for n in names] if names else None)
    return ModelList([ModelVersion(**r) for r in rows])


def promote(ws: Workspace, name: str, version: str | int) -> ChampionChange:
    """Make ``version`` the champion of ``name`` by hand (bypasses the promotion gate)."""
    full = registry_name(name)
    _registry(ws).set_champion(full, str(version))
    return ChampionChange(full, str(version))


def rollback(ws: Workspace, name: str) -> ChampionChange:
    """Restore the previous champion of ``name``."""
    full = registry_name(name)
    return ChampionChange(full, str(_registry(ws).rollback(full)))
