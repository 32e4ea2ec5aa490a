"""Two-part LightGBM model of future spend: P(buy) x E[spend | buy].

A hurdle model (Cragg 1971; for CLV see Wang, Liu & Miao 2019, who fold the
same two parts into one zero-inflated lognormal loss): a binary LightGBM
classifier estimates the probability of a positive net spend in the horizon,
a LightGBM regressor with the Gamma deviance (log link) estimates the spend of
those who buy; the prediction is their product, the expected spend. Both parts
use early stopping on a **time-based** validation snapshot: the latest snapshot
of the training rows, with older snapshots purged when their label windows
overlap it (``purge_days``, as in :mod:`models.estimators`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from cip.profiles.errors import DataError
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["TwoPartLGBM"]


class TwoPartLGBM(BaseEstimator):
    """Expected spend = P(spend > 0) x E[spend | spend > 0], two LightGBM boosters.

    Args:
        n_estimators: maximum boosting rounds of each part (early stopping picks fewer).
        learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
        reg_lambda: LightGBM tree parameters, shared by both parts.
        early_stopping_rounds: rounds without validation improvement before stopping.
        purge_days: training rows must be this many days older than the validation
            snapshot (set it to the horizon).
        random_state: LightGBM seed. n_jobs: threads (0 or None: all cores).

    Attributes:
        classifier_, regressor_: the fitted ``lightgbm.Booster`` objects.
        feature_names_: the input columns. validation_gini_: normalized Gini of the
            product on the validation snapshot (NaN without one).
    """

    def __init__(
        self,
        *,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 50,
        purge_days: int = 0,
        random_state: int | None = 0,
        n_jobs: int | None = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.purge_days = purge_days
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _params(self, objective: str, metric: str) -> dict[str, Any]:
        return {
            "objective": objective,
            "metric": metric,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": int(self.random_state or 0),
            "num_threads": self.n_jobs or 0,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def _train(self, params, X_tr, y_tr, X_va, y_va) -> lgb.Booster:
        train = lgb.Dataset(X_tr, y_tr, feature_name=self.feature_names_, free_raw_data=True)
        valid, cbs = [], []
        if X_va is not None and len(y_va):
            valid = [lgb.Dataset(X_va, y_va, reference=train)]
            cbs = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        return lgb.train(params, train, self.n_estimators, valid_sets=valid, callbacks=cbs)

    def fit(self, X: pd.DataFrame, y: Any, *, snapshot: Sequence[Any]) -> TwoPartLGBM:
        """Fit both parts; ``snapshot`` is the per-row ``as_of`` (the latest validates).

        Returns:
            self
        """
        from cip.models.clv.metrics import normalized_gini

        self.feature_names_ = [str(c) for c in X.columns]
        Xa = X.to_numpy(dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
        snap = pd.to_datetime(pd.Series(np.asarray(snapshot))).to_numpy()
        if not len(ya) == len(Xa) == len(snap):
            raise DataError(
                f"X, y and snapshot differ in length ({len(Xa)}, {len(ya)}, {len(snap)})"
            )
        last = snap.max()
        is_va = snap == last
        is_tr = snap <= last - np.timedelta64(int(self.purge_days), "D")
        if not is_tr.any() and (snap < last).any():
            # a short history: no snapshot is purge_days older than the latest; early
            # stopping on the latest unpurged (its label window overlaps the training
            # rows', so it stops late) still beats running to n_estimators
            is_tr = snap < last
        if not is_tr.any():  # one snapshot only: fit on it, no early stopping
            is_tr, is_va = np.ones(len(ya), bool), np.zeros(len(ya), bool)
        buy = (ya > 0).astype(np.float64)
        if len(np.unique(buy[is_tr])) < 2:
            raise DataError("the two-part model needs buyers and non-buyers in its training rows")
        self.classifier_ = self._train(
            self._params("binary", "binary_logloss"),
            Xa[is_tr],
            buy[is_tr],
            Xa[is_va] if is_va.any() else None,
            buy[is_va],
        )
        pos_tr, pos_va = is_tr & (ya > 0), is_va & (ya > 0)
        self.regressor_ = self._train(
            self._params("gamma", "gamma"),
            Xa[pos_tr],
            ya[pos_tr],
            Xa[pos_va] if pos_va.any() else None,
            ya[pos_va],
        )
        self.validation_gini_ = (
            normalized_gini(ya[is_va], self._predict(Xa[is_va])) if is_va.any() else float("nan")
        )
        return self

    def _predict(self, Xa: np.ndarray) -> np.ndarray:
        t = self.n_jobs or 0
        p = self.classifier_.predict(
            Xa, num_iteration=self.classifier_.best_iteration or None, num_threads=t
        )
        m = self.regressor_.predict(
            Xa, num_iteration=self.regressor_.best_iteration or None, num_threads=t
        )
        return p * m

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected spend per row (columns by name, as in ``fit``)."""
        check_is_fitted(self, "classifier_")
        return self._predict(pd.DataFrame(X)[self.feature_names_].to_numpy(dtype=np.float64))

    def predict_parts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(P(buy), E[spend | buy])`` per row."""
        check_is_fitted(self, "classifier_")
        Xa = pd.DataFrame(X)[self.feature_names_].to_numpy(dtype=np.float64)
        t = self.n_jobs or 0
        return (
            self.classifier_.predict(
                Xa, num_iteration=self.classifier_.best_iteration or None, num_threads=t
            ),
            self.regressor_.predict(
                Xa, num_iteration=self.regressor_.best_iteration or None, num_threads=t
            ),
        )

    def save(self, path: str | Path) -> Path:
        """Both boosters as LightGBM text files in ``path``."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        self.classifier_.save_model(
            str(d / "classifier.txt"), num_iteration=self.classifier_.best_iteration or None
        )
        self.regressor_.save_model(
            str(d / "regressor.txt"), num_iteration=self.regressor_.best_iteration or None
        )
        return d

    @classmethod
    def load(
        cls, path: str | Path, params: dict[str, Any], feature_names: list[str]
    ) -> TwoPartLGBM:
        """Read boosters written by :meth:`save`."""
        m = cls(**params)
        d = Path(path)
        m.classifier_ = lgb.Booster(model_file=str(d / "classifier.txt"))
        m.regressor_ = lgb.Booster(model_file=str(d / "regressor.txt"))
        m.feature_names_ = list(feature_names)
        m.validation_gini_ = float("nan")
        return m
