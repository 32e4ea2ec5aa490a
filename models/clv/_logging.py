"""MLflow side of a CLV run: the champion on the same holdout, the run, the registered model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cip.models.clv.metrics import decile_figure, decile_table, evaluate_values
from cip.models.clv.model import OUTPUT_COLUMNS
from cip.models.registry import PromotionDecision, decide_promotion
from cip.profiles.contracts import CLV_MODEL

_ENTRY = Path(__file__).with_name("_pyfunc_entry.py")
REGISTRY_NAME = CLV_MODEL


def load_clv_champion(tracking_uri: str | None = None) -> tuple[str, Any] | None:
    """``(version, CLVModel)`` of the ``cip-clv`` champion, or None when there is none."""
    import mlflow
    from cip.models.registry import champion_version, configure_mlflow

    if tracking_uri:
        configure_mlflow(tracking_uri)
    version = champion_version(REGISTRY_NAME)
    if version is None:
        return None
    pm = mlflow.pyfunc.load_model(f"models:/{REGISTRY_NAME}/{version}")
    return version, pm.unwrap_python_model().model


def champion_metrics_on(
    fitted: Any, frame: pd.DataFrame, tracking_uri: str, min_delta: float
) -> tuple[str | None, dict[str, float] | None, PromotionDecision]:
    """Score the current champion on the run's holdout and decide whether the winner replaces it."""
    win = fitted.metrics[fitted.winner]["normalized_gini"]
    champ = load_clv_champion(tracking_uri)
    if champ is None:
        return None, None, decide_promotion(win, None, {}, min_delta=min_delta)
    version, model = champ
    hold = frame[pd.to_datetime(frame["as_of"]) == fitted.holdout_as_of]
    missing = [c for c in model.feature_names_ if c not in hold.columns]
    if missing:
        reason = (
            f"champion version {version} needs columns {missing[:5]} that this training set "
            "lacks; not comparable on the same holdout (promote by hand)"
        )
        return version, None, PromotionDecision(False, reason, win, None, None)
    m = evaluate_values(fitted.y_hold, model.predict(hold)["clv"].to_numpy())
    return version, m, decide_promotion(win, m["normalized_gini"], {}, min_delta=min_delta)


def log_clv_run(
    fitted: Any,
    decision: PromotionDecision,
    champion_before: str | None,
    champion_metrics: dict[str, float] | None,
    *,
    tracking_uri: str,
    artifact_location: str,
    lineage: dict[str, Any],
    run_params: dict[str, Any],
) -> tuple[str, str]:
    """One MLflow run: params, every candidate's metrics, the decile chart, the winner registered."""
    import mlflow
    from cip.models.registry import (
        configure_mlflow,
        ensure_experiment,
        register_model,
    )
    from cip.models.tracking import code_version, log_dict_artifacts
    from mlflow.models import infer_signature

    configure_mlflow(tracking_uri, artifact_location)
    ensure_experiment(REGISTRY_NAME, artifact_location)
    winner = fitted.models[fitted.winner]
    with mlflow.start_run(run_name=f"clv-{fitted.holdout_as_of.date()}") as run:
        mlflow.log_params({k: v for k, v in run_params.items() if v is not None})
        mlflow.log_params({f"model.{k}": v for k, v in fitted.params.items()})
        mlflow.log_params(
            {
                "winner": fitted.winner,
                **{
                    f"btyd.{k}": v
                    for k, v in {**winner.bgnbd.params_, **winner.gamma_gamma.params_}.items()
                },
            }
        )
        metrics = {f"holdout.{k}": v for k, v in fitted.metrics[fitted.winner].items()}
        for name, m in fitted.metrics.items():
            metrics |= {f"candidate.{name}.{k}": v for k, v in m.items()}
        if champion_metrics:
            metrics |= {f"champion.{k}": v for k, v in champion_metrics.items()}
        metrics["promotion.promoted"] = float(decision.promote)
        corr = getattr(winner.gamma_gamma, "frequency_spend_correlation_", None)
        if corr is not None:
            metrics["btyd.frequency_spend_correlation"] = corr
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tags(
            {
                "cip.kind": "clv",
                "cip.code_version": code_version(),
                "clv.winner": fitted.winner,
                "clv.gate": fitted.reason,
                "lineage.holdout_as_of": str(fitted.holdout_as_of.date()),
                "lineage.fit_as_ofs": ",".join(str(a.date()) for a in fitted.fit_as_ofs),
                "promotion.champion_before": champion_before or "none",
                **decision.as_tags(),
                **{f"lineage.{k}": str(v) for k, v in lineage.items()},
                **(
                    {f"tuning.{k}": str(v) for k, v in fitted.tuning.items()}
                    if fitted.tuning
                    else {}
                ),
            }
        )
        mlflow.log_figure(
            decile_figure(fitted.y_hold, fitted.predictions, "holdout"), "plots/deciles.png"
        )
        log_dict_artifacts(
            {
                f"deciles_{name}.csv": decile_table(fitted.y_hold, p)
                for name, p in fitted.predictions.items()
            }
            | {"candidates.json": fitted.metrics, "lineage.json": lineage}
        )
        out = winner.predict(fitted.X_example)[list(OUTPUT_COLUMNS)]
        with tempfile.TemporaryDirectory() as tmp:
            path = winner.save(Path(tmp) / "clv_model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(_ENTRY),
                artifacts={"model": str(path)},
                signature=infer_signature(fitted.X_example, out),
                input_example=fitted.X_example,
                pip_requirements=_requirements(),
            )
        m = fitted.metrics[fitted.winner]
        version = register_model(
            info.model_uri,
            REGISTRY_NAME,
            tags={
                "run_id": run.info.run_id,
                "kind": fitted.winner,
                "horizon_days": str(winner.horizon_days),
                "holdout_normalized_gini": f"{m['normalized_gini']:.4f}",
                "holdout_total_ratio": f"{m['total_ratio']:.4f}",
                "holdout_as_of": str(fitted.holdout_as_of.date()),
            },
            promote=decision.promote,
        )
        mlflow.set_tag("registry.version", version)
    return run.info.run_id, version


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{p}=={version(p)}"
        for p in ("lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "mlflow")
    ]
