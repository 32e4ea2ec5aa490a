"""The MLflow pyfunc form of a :class:`~models.clv.model.CLVModel` (saved as data, logged from code)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd
from cip.models.clv.model import load_clv_model

__all__ = ["CLVPyfunc"]


class CLVPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(df) -> DataFrame(clv, expected_orders, p_alive, ...)``; ``.model`` is the CLVModel."""

    model: Any = None

    def load_context(self, context: Any) -> None:
        self.model = load_clv_model(context.artifacts["model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.model.predict(pd.DataFrame(model_input)).reset_index(drop=True)
