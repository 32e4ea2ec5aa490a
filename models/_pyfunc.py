"""The MLflow pyfunc form of a churn or propensity model (saved as data).

The logged model holds the estimator's data directory (LightGBM text model plus
``model.json`` with the calibration, the feature list and descriptions) as the
artifact ``model``; this wrapper loads it and returns calibrated probabilities.
It is logged "from code" (``_pyfunc_entry.py``), so nothing is pickled.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from cip.models.estimators import load_model

__all__ = ["CIPClassifierPyfunc"]


class CIPClassifierPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(df) -> DataFrame(probability)``; ``.model`` is the fitted estimator."""

    model: Any = None

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts["model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        X = pd.DataFrame(model_input)[self.model.feature_names_].astype(np.float64)
        return pd.DataFrame({"probability": self.model.predict_proba(X)[:, 1]})
