"""The simple rules a model has to beat, evaluated on the same holdout every run.

* :class:`RecencyRule`: the campaign team's rule of thumb, "the longer since the
  last purchase, the likelier to churn" (and the less likely to buy). Its score
  is days since the last purchase (never purchased ranks as the most lapsed).
* :class:`RFMLogisticRegression`: logistic regression on the RFM columns
  (recency, frequency, monetary, average order value, tenure), each
  ``sign(x) * log1p(|x|)``-transformed, median-imputed with missing indicators
  and standardised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

__all__ = ["RecencyRule", "RFMLogisticRegression", "DEFAULT_RFM_COLUMNS"]

DEFAULT_RFM_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
)


class RecencyRule:
    """Score = days since the last purchase (``direction=+1``) or its negation (``-1``).

    Args:
        column: the recency column.
        direction: ``+1`` for churn (older is riskier), ``-1`` for purchase propensity.
    """

    def __init__(self, column: str = "recency_days", direction: int = 1) -> None:
        if direction not in (1, -1):
            raise ValueError("direction must be +1 or -1")
        self.column = column
        self.direction = direction

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Rule scores (higher = more likely positive); missing recency is most lapsed."""
        r = pd.to_numeric(X[self.column], errors="coerce").to_numpy(dtype=np.float64)
        fill = np.nanmax(r) + 1.0 if np.isfinite(r).any() else 0.0
        return self.direction * np.where(np.isnan(r), fill, r)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class RFMLogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression on RFM columns (the "analyst's model" baseline).

    Args:
        columns: the RFM columns to use (those absent from ``X`` are ignored).
        C: inverse L2 regularisation strength.
    """

    def __init__(self, columns: Sequence[str] = DEFAULT_RFM_COLUMNS, C: float = 1.0) -> None:
        self.columns = columns
        self.C = C

    def _select(self, X: pd.DataFrame) -> np.ndarray:
        return X[list(self.columns_)].to_numpy(dtype=np.float64)

    def fit(self, X: pd.DataFrame, y: object) -> RFMLogisticRegression:
        """Fit on the RFM columns present in ``X``."""
        self.columns_ = [c for c in self.columns if c in X.columns]
        if not self.columns_:
            raise ValueError(f"none of the RFM columns {list(self.columns)} are in X")
        self.pipeline_: Pipeline = make_pipeline(
            FunctionTransformer(_signed_log1p),
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=1000),
        )
        self.pipeline_.fit(self._select(X), np.asarray(y))
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(self._select(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Most likely class."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(self._select(X))
