"""The simple rules a model has to beat, evaluated on the same holdout every run.

* :class:`RecencyRule`: the campaign team's rule of thumb, "the longer since the
  last purchase, the likelier to churn" (and the less likely to buy). Its score
  is days since the last purchase (never purchased ranks as the most lapsed).
* :class:`RFMLogisticRegression`: logistic regression on the RFM columns
  (recency, frequency, monetary, average order value, tenure), each
  ``sign(x) * log1p(|x|)``-transformed, median-imputed with missing indicators
  and standardised.
* :class:`LogisticBaselineModel`: the same logistic regression as a registrable
  model (saved as data, reason codes): the champion when LightGBM loses.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "RecencyRule",
    "RFMLogisticRegression",
    "LogisticBaselineModel",
    "DEFAULT_RFM_COLUMNS",
]

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


_EFFECTS: dict[str, tuple[str, str]] = {
    "churn": ("raises churn risk", "lowers churn risk"),
    "propensity": ("raises purchase likelihood", "lowers purchase likelihood"),
}


class LogisticBaselineModel(ClassifierMixin, BaseEstimator):
    """A baseline that can be registered and scored like a LightGBM champion.

    Logistic regression on a few columns (the RFM columns, or recency alone), each
    ``sign(x) * log1p(|x|)``-transformed, median-imputed with a missing indicator
    (for columns with missing training values) and standardised: the same model as
    :class:`RFMLogisticRegression`, written with numpy so that it saves as data
    (``model.json``: medians, means, scales, coefficients) and has exact per-feature
    contributions (coefficient x standardised value; a feature's missing indicator
    counts towards that feature), hence reason codes. When the tuned LightGBM does not
    beat the baselines on the holdout, the best of these is registered as the champion.

    Args:
        columns: the input columns (those absent from ``X`` at fit are ignored).
        kind: ``churn`` or ``propensity`` (the wording of reason codes).
        C: inverse L2 regularisation strength.
        feature_descriptions: ``{feature: description}`` for reason codes.
        name: the baseline's name in reports (``logreg_rfm``, ``logreg_recency``).
    """

    def __init__(
        self,
        columns: Sequence[str] = DEFAULT_RFM_COLUMNS,
        kind: str = "propensity",
        C: float = 1.0,
        feature_descriptions: dict[str, str] | None = None,
        name: str = "logreg_rfm",
    ) -> None:
        self.columns = columns
        self.kind = kind
        self.C = C
        self.feature_descriptions = feature_descriptions
        self.name = name

    # the attributes the training run and the scorer read from a champion
    calibrator_: dict = {"method": "none"}  # noqa: RUF012
    best_iteration_: int = 0
    validation_auc_: float = float("nan")

    def _design(self, X: np.ndarray) -> np.ndarray:
        z = _signed_log1p(np.asarray(X, dtype=np.float64))
        miss = np.isnan(z)
        z = np.where(miss, self.median_, z)
        ind = miss[:, self.indicator_].astype(np.float64)
        d = np.hstack([z, ind])
        return (d - self.mean_) / self.scale_

    def _matrix(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names_ if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks the columns {missing}")
            return X[self.feature_names_].to_numpy(dtype=np.float64)
        return np.asarray(X, dtype=np.float64)

    def fit(self, X: pd.DataFrame, y: object, **_: object) -> LogisticBaselineModel:
        """Fit on the columns present in ``X`` (extra keyword arguments, e.g. ``snapshot``, ignored)."""
        cols = [c for c in self.columns if c in X.columns]
        if not cols:
            raise ValueError(f"none of the columns {list(self.columns)} are in X")
        self.feature_names_ = cols
        self.n_features_in_ = len(cols)
        self.feature_names_in_ = np.asarray(cols, dtype=object)
        z = _signed_log1p(X[cols].to_numpy(dtype=np.float64))
        with warnings.catch_warnings():  # an all-missing column has no median: 0
            warnings.simplefilter("ignore", RuntimeWarning)
            self.median_ = np.nan_to_num(np.nanmedian(z, axis=0))
        self.indicator_ = np.flatnonzero(np.isnan(z).any(axis=0))
        self.mean_ = np.zeros(len(cols) + len(self.indicator_))
        self.scale_ = np.ones_like(self.mean_)
        d = self._design(X[cols].to_numpy(dtype=np.float64))
        self.mean_ = d.mean(axis=0)
        sd = d.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        d = (d - self.mean_) / self.scale_
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(d, np.asarray(y))
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self.feature_importances_ = self._importance()
        self.feature_descriptions_ = {
            c: str((self.feature_descriptions or {}).get(c, c.replace("_", " "))) for c in cols
        }
        return self

    def _importance(self) -> np.ndarray:
        imp = np.abs(self.coef_[: len(self.feature_names_)]).copy()
        for k, j in enumerate(self.indicator_):
            imp[j] += abs(self.coef_[len(self.feature_names_) + k])
        return imp

    def _contrib(self, Xa: np.ndarray) -> np.ndarray:
        terms = self._design(Xa) * self.coef_
        f = len(self.feature_names_)
        out = terms[:, :f].copy()
        for k, j in enumerate(self.indicator_):
            out[:, j] += terms[:, f + k]
        return np.hstack([out, np.full((len(Xa), 1), self.intercept_)])

    def contributions(self, X, method: str = "exact") -> np.ndarray:
        """Per-feature contributions to the log-odds, shape (n, n_features + 1); the last is the bias."""
        return self._contrib(self._matrix(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        raw = self._contrib(self._matrix(X)).sum(axis=1)
        p = 1.0 / (1.0 + np.exp(-raw))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The class with probability >= 0.5."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def predict_explain(self, X, top: int = 3, method: str = "path"):
        """Positive-class probabilities and reason codes (exact linear contributions)."""
        from cip.models._reasons import reason_frame

        Xa = self._matrix(X)
        contrib = self._contrib(Xa)
        p = 1.0 / (1.0 + np.exp(-contrib.sum(axis=1)))
        out = reason_frame(
            Xa,
            contrib[:, :-1],
            self.feature_names_,
            self.feature_descriptions_,
            _EFFECTS.get(self.kind, ("raises the score", "lowers the score")),
            min(top, len(self.feature_names_)),
        )
        if isinstance(X, pd.DataFrame):
            out.index = X.index
        return p, out

    def explain(self, X, top: int = 3, method: str = "path") -> pd.DataFrame:
        """Per-row reason codes (see :meth:`predict_explain`)."""
        return self.predict_explain(X, top, method)[1]

    def to_meta(self) -> dict:
        """The fitted model as JSON-able data (``model.json``)."""
        check_is_fitted(self, "coef_")
        return {
            "class": type(self).__name__,
            "linear": {
                "columns": list(self.feature_names_),
                "median": self.median_.tolist(),
                "indicator": [int(i) for i in self.indicator_],
                "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(),
                "intercept": self.intercept_,
            },
            "params": {
                "columns": list(self.columns),
                "kind": self.kind,
                "C": self.C,
                "name": self.name,
                "feature_descriptions": None,
                "input_decimals": None,
            },
            "classes": [int(c) if isinstance(c, np.integer) else c for c in self.classes_],
            "feature_names": list(self.feature_names_),
            "feature_descriptions": self.feature_descriptions_,
            "calibrator": {"method": "none"},
            "best_iteration": 0,
        }

    def save(self, path) -> Path:
        """Write ``model.json`` (the model as data) into the folder ``path``."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.json").write_text(json.dumps(self.to_meta(), indent=1))
        return d

    @classmethod
    def from_meta(cls, meta: dict) -> LogisticBaselineModel:
        """Rebuild a fitted model from :meth:`to_meta`'s data."""
        p = dict(meta["params"])
        p.pop("input_decimals", None)
        m = cls(**p)
        lin = meta["linear"]
        m.feature_names_ = list(lin["columns"])
        m.n_features_in_ = len(m.feature_names_)
        m.feature_names_in_ = np.asarray(m.feature_names_, dtype=object)
        m.median_ = np.asarray(lin["median"], dtype=np.float64)
        m.indicator_ = np.asarray(lin["indicator"], dtype=np.int64)
        m.mean_ = np.asarray(lin["mean"], dtype=np.float64)
        m.scale_ = np.asarray(lin["scale"], dtype=np.float64)
        m.coef_ = np.asarray(lin["coef"], dtype=np.float64)
        m.intercept_ = float(lin["intercept"])
        m.classes_ = np.asarray(meta["classes"])
        m.feature_descriptions_ = dict(meta["feature_descriptions"])
        m.feature_importances_ = m._importance()
        return m
