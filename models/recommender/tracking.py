"""Train a recommender as an MLflow run: tune, compare with popularity and the champion, register.

One call (:func:`train_recommender_run`) does the whole, honest loop:

1. carve a validation split out of the interactions (temporal when they carry
   ``ts``; :func:`models.recommender.tuning.split_validation`);
2. optionally tune (Optuna, on a further split of the training part only);
3. fit the candidate, the popularity baseline and the current champion's
   *recipe* (algorithm + parameters, refit on the same training part) and score
   all three on the same validation split;
4. refit the candidate on all interactions and log it as an MLflow pyfunc
   ("model from code" + ``.npz``/JSON artifacts, no pickles; a copy of the ``cip``
   package as ``code_paths`` and its pinned dependencies, so it loads outside a
   CIP installation: :mod:`models._portable`), register it as
   ``cip-recommender``; the alias ``champion`` moves to it only when it beats both
   popularity and the current champion on NDCG@k.

Only ids, counts, parameters and metrics are logged: never names, e-mails or phones.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from cip.models import evaluation, registry
from cip.models._portable import package_code_path, package_requirements
from cip.models.recommender import Recommender, make_recommender
from cip.models.recommender.tuning import split_validation, tune_recommender
from cip.profiles.contracts import RECOMMENDER_MODEL
from cip.profiles.errors import CIPError

__all__ = ["REGISTRY_NAME", "train_recommender_run"]

log = logging.getLogger(__name__)

REGISTRY_NAME = RECOMMENDER_MODEL
_MODEL_CODE = Path(__file__).with_name("_pyfunc_model.py")


def train_recommender_run(
    interactions: pd.DataFrame,
    algorithm: str = "als",
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    tracking_uri: str | None = None,
    experiment: str = "cip-recommender",
    registry_name: str = REGISTRY_NAME,
    k: int = 10,
    random_state: int = 0,
    validation: str = "auto",
    artifact_location: str | None = None,
    as_of: Any = None,
) -> tuple[Recommender, str, dict[str, Any]]:
    """Train, evaluate against baselines, log and register a recommender.

    Args:
        interactions: ``user_id, item_id[, weight, ts]`` (e.g. from
            :func:`models.interactions_from_store`).
        algorithm: ``als``, ``bpr``, ``itemknn``, ``ease``, ``popular`` or ``auto``.
        tune_trials / tune_minutes: Optuna budget; ``auto`` without a budget
            uses the tuner's default number of trials.
        tracking_uri: MLflow tracking URI (e.g. ``sqlite:///.../mlflow.db``).
        experiment: MLflow experiment name.
        registry_name: registered model name.
        k: cut-off of the metrics.
        random_state: seed of splits, tuning and models.
        validation: ``auto``, ``temporal`` or ``random`` validation split.
        artifact_location: artifact root for a newly created experiment.
        as_of: logged as a parameter (the data's cut-off time).

    Returns:
        ``(model fitted on all interactions, run id, metrics)``; ``metrics`` holds
        the validation metrics of the model, popularity and the old champion,
        ``version`` and ``promoted``.
    """
    import mlflow
    from mlflow import MlflowClient

    registry.configure_mlflow(tracking_uri or mlflow.get_tracking_uri())
    registry.ensure_experiment(experiment, artifact_location)
    client = MlflowClient()

    train, valid = split_validation(interactions, validation, 0.2, random_state)
    tuning: dict[str, Any] = {}
    if algorithm == "auto" or tune_trials is not None or tune_minutes is not None:
        tuned = tune_recommender(train, algorithm, tune_trials, tune_minutes, random_state, k)
        tuning = tuned.extra_["tuning"]
        algo, params = tuning["algorithm"], dict(tuning["params"])
    else:
        algo, params = algorithm, {}
    params["random_state"] = random_state

    def score(alg: str, p: dict[str, Any]) -> dict[str, float]:
        model = make_recommender(alg, **p).fit(train)
        return evaluation.evaluate(model, train, valid, k=k)

    cand = score(algo, params)
    popular = score("popular", {"random_state": random_state})
    champ_version, champ_recipe = _champion(client, registry_name)
    champ = None
    if champ_recipe:
        try:
            champ = score(*champ_recipe)
        except CIPError as exc:  # a recipe this version cannot rebuild: compare without it
            log.warning("cannot refit champion v%s for comparison: %s", champ_version, exc)

    model = make_recommender(algo, **params).fit(interactions)
    model.extra_ = {"tuning": tuning} if tuning else {}
    metrics: dict[str, Any] = {f"{m}_at_{k}": v for m, v in cand.items() if m != "users"}
    metrics.update({f"popular_{m}_at_{k}": v for m, v in popular.items() if m != "users"})
    if champ is not None:
        metrics.update({f"champion_{m}_at_{k}": v for m, v in champ.items() if m != "users"})
    metrics["validation_users"] = cand["users"]
    metrics["ndcg_lift_vs_popular"] = cand["ndcg"] / popular["ndcg"] if popular["ndcg"] else 0.0
    decision = registry.decide_promotion(
        cand["ndcg"], None if champ is None else champ["ndcg"], {"popular": popular["ndcg"]}
    )
    if champ_version is not None and champ is None:  # a champion we cannot refit stays
        decision = registry.PromotionDecision(
            False,
            f"champion v{champ_version} cannot be refit for comparison",
            cand["ndcg"],
            None,
            popular["ndcg"],
        )

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(_flat({"algorithm": algo, **params}))
        mlflow.log_params(
            {
                "n_users": model.n_users_,
                "n_items": model.n_items_,
                "n_interactions": int(model.user_items_.nnz),
                "k": k,
                "validation": validation,
                "as_of": str(as_of) if as_of is not None else "",
                "tune_trials": tuning.get("trials", 0),
                "champion_version_before": champ_version or "",
            }
        )
        mlflow.log_metrics({key: float(v) for key, v in metrics.items()})
        saved = model.save(Path(tmp) / "recommender")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_MODEL_CODE),
            artifacts={"recommender": str(saved)},
            code_paths=[package_code_path(Path(tmp) / "code")],
            input_example=pd.DataFrame({"user_id": ["example-user"], "n": [10]}),
            # explicit: skips MLflow's slow module capture
            pip_requirements=package_requirements(("threadpoolctl",)),
        )
        promoted = decision.promote
        version = registry.register_model(  # champion in the same step (keeps the history)
            info.model_uri,
            registry_name,
            tags={"algorithm": algo, "params": json.dumps(params)},
            promote=promoted,
        )
        mlflow.set_tags({"promoted": str(promoted), "model_version": version, **decision.as_tags()})
        run_id = run.info.run_id
    metrics.update({"version": version, "promoted": promoted, "algorithm": algo})
    log.info(
        "recommender run %s: %s v%s ndcg@%d %.4f (popular %.4f), promoted=%s",
        run_id,
        algo,
        version,
        k,
        cand["ndcg"],
        popular["ndcg"],
        promoted,
    )
    return model, run_id, metrics


def _champion(client: Any, name: str) -> tuple[str | None, tuple[str, dict[str, Any]] | None]:
    """The champion's version and recipe (algorithm, params), if there is one."""
    version = registry.champion_version(name)
    if version is None:
        return None, None
    tags = client.get_model_version(name, version).tags or {}
    if "algorithm" not in tags:
        return version, None
    return version, (tags["algorithm"], json.loads(tags.get("params", "{}")))


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()}
