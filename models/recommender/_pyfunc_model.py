"""MLflow "model from code" for a CIP recommender (no pickled Python objects).

MLflow copies this file into the logged model and runs it at load time; the
recommender itself is the ``recommender`` artifact folder (``.npz`` + JSON).
Its ``import cip`` is served by the copy of the package the model carries as
``code_paths`` (:mod:`models._portable`), so the model loads outside a CIP
installation too. Input: a DataFrame with ``user_id`` (and optionally ``n`` and ``exclude_seen``
from the first row); output: the ``recommend`` DataFrame.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Recommendations for the ``user_id`` column of the input."""

    def load_context(self, context: Any) -> None:
        from cip.models.recommender import load_recommender

        self.recommender = load_recommender(context.artifacts["recommender"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        frame = pd.DataFrame(model_input)
        n = int(frame["n"].iloc[0]) if "n" in frame.columns and len(frame) else 10
        exclude = bool(frame["exclude_seen"].iloc[0]) if "exclude_seen" in frame.columns else True
        return self.recommender.recommend(frame["user_id"].tolist(), n=n, exclude_seen=exclude)


mlflow.models.set_model(RecommenderModel())
