"""MLflow "model from code" of a churn or propensity model: self-contained on purpose.

CIP never imports this module. MLflow copies the file into every logged
classifier and runs it when the model is loaded, so it imports nothing from
``cip``: ``mlflow.pyfunc.load_model("models:/cip-churn@champion")`` works in any
Python with mlflow, lightgbm, numpy and pandas (``mlflow models serve``, a
notebook outside the repository), not only in a CIP checkout.

The artifact ``model`` is the estimator's folder as
:meth:`cip.models.estimators.ChurnModel.save` writes it (``booster.txt``, the
LightGBM text model, and ``model.json`` with the feature list, the best
iteration, the input rounding and the calibrator), or, for a logistic-regression
baseline registered as the champion, ``model.json`` alone (its ``linear`` entry). :meth:`predict` repeats the
estimator's ``predict_proba``: inputs rounded to ``input_decimals``, the raw
LightGBM score at the best iteration, then the calibrator of
:func:`cip.models.calibration.apply_calibrator`; tests/test_mlflow_portable.py
checks that both give the same probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd

_EPS = 1e-4  # cip.models.calibration.EPS
_TIE_BREAK = 5e-7  # cip.models.calibration.TIE_BREAK


def _calibrate(calibrator: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    method = calibrator["method"]
    if method == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-(calibrator["a"] * raw + calibrator["b"])))
    elif method == "isotonic":
        p = np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
        p = np.clip(p, _EPS + _TIE_BREAK, 1.0 - _EPS - _TIE_BREAK)
        return p + _TIE_BREAK * np.tanh(raw / 4.0)
    elif method == "none":
        p = 1.0 / (1.0 + np.exp(-raw))
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    return np.clip(p, _EPS, 1.0 - _EPS)


def _linear(lin: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """cip.models.baselines.LogisticBaselineModel.predict_proba, from its saved data."""
    z = np.sign(X) * np.log1p(np.abs(X))
    miss = np.isnan(z)
    z = np.where(miss, np.asarray(lin["median"]), z)
    d = np.hstack([z, miss[:, np.asarray(lin["indicator"], dtype=int)].astype(np.float64)])
    d = (d - np.asarray(lin["mean"])) / np.asarray(lin["scale"])
    raw = d @ np.asarray(lin["coef"]) + float(lin["intercept"])
    return 1.0 / (1.0 + np.exp(-raw))


class CIPClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(df) -> DataFrame(probability)``, the calibrated probability of the positive class.

    After loading, ``model_dir`` is the estimator's saved folder (CIP loads the full
    estimator, with its reason codes, from there) and ``feature_names`` its inputs.
    """

    def __init__(self) -> None:
        self.model_dir = ""
        self.feature_names: list[str] = []

    def load_context(self, context: Any) -> None:
        """Read ``booster.txt`` and ``model.json`` from the ``model`` artifact."""
        self.model_dir = str(context.artifacts["model"])
        meta = json.loads((Path(self.model_dir) / "model.json").read_text())
        self._booster = None
        if "linear" not in meta:  # a LightGBM model (else a logistic baseline, as data)
            self._booster = lgb.Booster(model_file=str(Path(self.model_dir) / "booster.txt"))
        self._meta = meta
        self.feature_names = list(meta["feature_names"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Calibrated probabilities for the rows of ``model_input`` (extra columns ignored)."""
        frame = pd.DataFrame(model_input)
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise ValueError(f"model input lacks feature columns: {', '.join(missing)}")
        X = frame[self.feature_names].to_numpy(dtype=np.float64)
        if self._booster is None:
            p = _linear(self._meta["linear"], X)
            return pd.DataFrame({"probability": p}, index=frame.index)
        decimals = self._meta["params"].get("input_decimals")
        if decimals is not None:
            X = np.round(X, int(decimals))
        raw = self._booster.predict(
            X,
            raw_score=True,
            num_iteration=int(self._meta["best_iteration"]),
            num_threads=self._meta["params"].get("n_jobs") or 0,
        )
        p = _calibrate(self._meta["calibrator"], np.asarray(raw, dtype=np.float64))
        return pd.DataFrame({"probability": p}, index=frame.index)


mlflow.models.set_model(CIPClassifierPyfunc())
