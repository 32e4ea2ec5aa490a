"""MLflow side of an uplift run: metrics vs baselines, the Qini curve, the registered model."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from cip.models.uplift.learners import UpliftResult

__all__ = ["registry_name", "log_uplift_run", "UpliftPyfunc", "QINI_CURVE_ARTIFACT"]

#: Run artifact holding the champion's holdout Qini curve (``{"x": [...], "y": [...]}``).
QINI_CURVE_ARTIFACT = "qini_curve.json"


def registry_name(campaign: str) -> str:
    """Registered model name of a campaign's uplift model: ``cip-uplift-<campaign>``."""
    return "cip-uplift-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", campaign).strip("-")


def _pyfunc_base() -> type:
    import mlflow

    return mlflow.pyfunc.PythonModel


class UpliftPyfunc(_pyfunc_base()):  # type: ignore[misc]
    """Pyfunc wrapper: ``predict(features) -> uplift`` (needs ``cip`` installed to load)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Uplift per row of ``model_input``."""
        return pd.DataFrame({"uplift": self.model.predict(model_input)})


def log_uplift_run(
    result: UpliftResult,
    campaign: str,
    X_example: pd.DataFrame,
    *,
    tracking_uri: str,
    artifact_location: str | None,
    params: dict[str, Any],
) -> tuple[str, str]:
    """One MLflow run: holdout metrics of every learner and baseline, the Qini curve,
    the champion registered as ``cip-uplift-<campaign>`` and made champion if promoted.

    Returns ``(run_id, version)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from cip.models.registry import (
        configure_mlflow,
        ensure_experiment,
        register_model,
    )
    from cip.models.tracking import code_version, pip_requirements
    from mlflow.models import infer_signature

    name = registry_name(campaign)
    configure_mlflow(tracking_uri, artifact_location)
    ensure_experiment(name, artifact_location)
    with mlflow.start_run(run_name=f"uplift-{campaign}") as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        metrics = {
            f"holdout.{who}.{k}": v
            for who, ev in result.metrics.items()
            for k, v in ev.as_dict().items()
        }
        metrics["promotion.promoted"] = float(result.decision.promote)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tags(
            {
                "cip.kind": "uplift",
                "cip.code_version": code_version(),
                "uplift.campaign": campaign,
                "uplift.champion": result.champion,
                **result.decision.as_tags(),
            }
        )
        fig, ax = plt.subplots(figsize=(5, 4))
        c = result.qini_curve
        ax.plot(c["x"], c["y"], label=result.champion)
        ax.plot([0, c["x"].iloc[-1]], [0, c["y"].iloc[-1]], "--", label="random")
        ax.set(xlabel="persons targeted", ylabel="incremental conversions", title="Qini curve")
        ax.legend()
        mlflow.log_figure(fig, "plots/qini.png")
        plt.close(fig)
        mlflow.log_dict(result.as_dict(), "uplift.json")
        mlflow.log_dict(  # the curve's points, for `cip report`
            {"x": [float(v) for v in c["x"]], "y": [float(v) for v in c["y"]]},
            QINI_CURVE_ARTIFACT,
        )
        out = pd.DataFrame({"uplift": result.model.predict(X_example)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=UpliftPyfunc(result.model),
            signature=infer_signature(X_example, out),
            pip_requirements=pip_requirements(),
        )
        version = register_model(
            info.model_uri,
            name,
            tags={
                "run_id": run.info.run_id,
                "kind": result.champion,
                "holdout_qini": f"{result.metrics[result.champion].qini:.4f}",
            },
            promote=result.decision.promote,
        )
    return run.info.run_id, version
