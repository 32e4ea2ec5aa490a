"""Churn and purchase-propensity classifiers: LightGBM, time-based early stopping, calibration.

Both estimators follow the scikit-learn contract (hyperparameters stored
unchanged in ``__init__``, validation in ``fit``, fitted attributes ending in
``_``, ``fit`` returns ``self``). Inside:

1. a LightGBM gradient-boosted tree model (Ke et al., 2017) trained with early
   stopping on a **time-based** validation set: the latest snapshot of the
   training rows when ``fit(..., snapshot=...)`` is given, with older snapshots
   purged when their label windows overlap it (``purge_days``; else an explicit
   ``eval_set``, else a stratified ``validation_fraction`` of the rows);
2. a probability calibration fitted on that same held-out snapshot
   (:mod:`models.calibration`: Platt scaling or isotonic regression), so that a
   predicted 0.7 means about 70%;
3. per-customer reason codes from LightGBM's exact TreeSHAP feature
   contributions (``pred_contrib=True``; Lundberg et al., 2020) or, for batch
   scoring, fast decision-path contributions (:mod:`models._contrib`), mapped
   to the readable descriptions of the feature catalog (:meth:`explain`).

A fitted model saves as data (:meth:`save` / :meth:`load`): LightGBM's text
model plus a JSON file with the calibration, the feature list and descriptions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from cip.models._contrib import path_contributions, path_tables
from cip.models._reasons import reason_frame
from cip.models.calibration import CALIBRATION_METHODS, apply_calibrator, fit_calibrator
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["ChurnModel", "PropensityModel", "load_model"]

log = logging.getLogger(__name__)

_MODEL_FILE = "booster.txt"
_META_FILE = "model.json"


class _CalibratedLGBMClassifier(ClassifierMixin, BaseEstimator):
    """Binary LightGBM classifier with time-based early stopping and calibration.

    Args:
        n_estimators: maximum boosting rounds (early stopping picks fewer).
        learning_rate, num_leaves, max_depth, min_child_samples, subsample,
        subsample_freq, colsample_bytree, reg_alpha, reg_lambda, min_split_gain:
            LightGBM's tree parameters (same meaning as ``lightgbm.LGBMClassifier``).
        early_stopping_rounds: stop when validation AUC has not improved for this
            many rounds (``None``: no early stopping).
        validation_fraction: share of rows held out for early stopping and
            calibration when neither ``snapshot`` nor ``eval_set`` is given to ``fit``.
        purge_days: with ``snapshot``, training rows must be at least this many days
            older than the validation snapshot. Set it to the label horizon: a
            snapshot whose label window overlaps the validation's leaks it (the
            same customer, near-identical features, the same future purchase),
            which inflates validation AUC and defeats early stopping ("purging",
            López de Prado, 2018).
        calibration: ``auto``, ``isotonic``, ``sigmoid`` or ``none``.
        input_decimals: inputs are rounded to this many decimals (``None``: not
            rounded). Aggregates a database sums in parallel differ in their last
            bits from run to run; without rounding, such noise changes LightGBM's
            bins and the same data would not reproduce the same model.
        feature_descriptions: ``{feature: description}`` for reason codes (the training
            pipeline passes :func:`features.catalog`'s); others read as their name.
        monotone: ``{feature: +1 or -1}``, monotone constraints (the score may only
            rise, +1, or only fall, -1, with the feature, all else equal); features
            absent from ``X`` are ignored (``None``: unconstrained). LightGBM's
            ``intermediate`` method enforces them.
        refit: after early stopping on the validation rows, train the final booster
            again on **every** row of ``X`` (the validation snapshot and the purged
            snapshots included) for the early-stopped number of rounds. The most
            recent snapshot is the most informative about the next horizon; without
            the refit the booster never learns from it (the logistic baselines do).
            The calibration and ``validation_auc_`` stay those measured on the
            validation rows with the early-stopped booster (the only out-of-sample
            scores there are), so they describe the early-stopped booster, not the
            refitted one: on Online Retail churn the refit raised holdout ROC AUC by
            0.004 but worsened ECE (0.146 -> 0.165), so ``cip train`` leaves it off.
            Ignored with an explicit ``eval_set`` or without a validation set.
        random_state: seed of LightGBM and of the random validation split.
        n_jobs: LightGBM threads for fitting and prediction (``None`` or 0: all cores;
            one thread is fastest on small data and on a busy machine).
    """

    #: Phrases for positive and negative contributions in reason codes.
    _effects: ClassVar[tuple[str, str]] = ("raises the score", "lowers the score")

    def __init__(
        self,
        *,
        n_estimators: int = 2000,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        max_depth: int = -1,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        subsample_freq: int = 1,
        colsample_bytree: float = 0.8,
        reg_alpha: float = 0.0,
        reg_lambda: float = 1.0,
        min_split_gain: float = 0.0,
        early_stopping_rounds: int | None = 100,
        validation_fraction: float = 0.2,
        purge_days: int = 0,
        calibration: str = "auto",
        input_decimals: int | None = 6,
        feature_descriptions: Mapping[str, str] | None = None,
        monotone: Mapping[str, int] | None = None,
        refit: bool = False,
        random_state: int | None = None,
        n_jobs: int | None = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.min_split_gain = min_split_gain
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.purge_days = purge_days
        self.calibration = calibration
        self.input_decimals = input_decimals
        self.feature_descriptions = feature_descriptions
        self.monotone = monotone
        self.refit = refit
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = True
        return tags

    # -- fitting -----------------------------------------------------------------
    def _lgb_params(self, names: Sequence[str] = ()) -> dict[str, Any]:
        mono = dict(self.monotone or {})
        constraints = (
            {
                "monotone_constraints": [int(np.sign(mono.get(n, 0))) for n in names],
                "monotone_constraints_method": "intermediate",
            }
            if any(n in mono for n in names)
            else {}
        )
        return constraints | {
            "objective": "binary",
            "metric": ["auc", "binary_logloss"],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": self.subsample_freq if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l1": self.reg_alpha,
            "lambda_l2": self.reg_lambda,
            "min_gain_to_split": self.min_split_gain,
            "seed": 0 if self.random_state is None else int(self.random_state),
            "num_threads": self.n_jobs or 0,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        snapshot: Sequence[Any] | None = None,
        eval_set: tuple[Any, Any] | None = None,
        callbacks: Sequence[Callable[..., Any]] | None = None,
        groups: Sequence[Any] | None = None,
    ) -> _CalibratedLGBMClassifier:
        """Fit the booster with early stopping, then the calibration.

        Args:
            X: features (DataFrame with string column names, or a 2-D array); NaN allowed.
            y: binary target.
            snapshot: per-row snapshot date (``as_of``); the latest snapshot becomes the
                validation set (early stopping and calibration), earlier ones train.
            eval_set: an explicit ``(X_val, y_val)`` validation set instead.
            callbacks: extra LightGBM callbacks (e.g. an Optuna pruning callback).
            groups: per-row person id. When no snapshot is ``purge_days`` older than
                the latest (a short history), the validation rows are a random
                ``validation_fraction`` of the *persons* (all their snapshots), not of
                the rows: the same person in both sets would leak the label.

        Returns:
            self
        """
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        X = self._round(X)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}); a binary classifier needs both classes"
            )
        X_tr, y_tr, X_va, y_va = self._split(X, y_idx, snapshot, eval_set, groups)
        names = self._feature_names()
        train = lgb.Dataset(X_tr, y_tr, feature_name=names, free_raw_data=False)
        cbs = list(callbacks or [])
        valid_sets = []
        if X_va is not None and len(np.unique(y_va)) == 2:
            valid_sets = [lgb.Dataset(X_va, y_va, reference=train)]
            if self.early_stopping_rounds:
                cbs.append(
                    lgb.early_stopping(
                        self.early_stopping_rounds, first_metric_only=True, verbose=False
                    )
                )
        self.booster_ = lgb.train(
            self._lgb_params(names),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            valid_names=["valid"][: len(valid_sets)],
            callbacks=cbs,
        )
        best = self.booster_.best_iteration
        self.best_iteration_ = int(best) if best and best > 0 else self.booster_.current_iteration()
        raw_va = self._raw(X_va) if X_va is not None else None
        self.validation_auc_ = float(roc_auc_score(y_va, raw_va)) if valid_sets else float("nan")
        self.calibrator_ = (
            fit_calibrator(raw_va, y_va, self.calibration)
            if raw_va is not None
            else {"method": "none"}
        )
        self.refitted_ = bool(self.refit and valid_sets and eval_set is None)
        if self.refitted_:
            # the same rounds on every row: the validation snapshot is the latest data
            self.booster_ = lgb.train(
                self._lgb_params(names),
                lgb.Dataset(X, y_idx, feature_name=names, free_raw_data=False),
                num_boost_round=self.best_iteration_,
            )
        self.feature_names_ = names
        self.feature_importances_ = self.booster_.feature_importance(
            "gain", iteration=self.best_iteration_
        )
        self.feature_descriptions_ = _resolve_descriptions(names, self.feature_descriptions)
        return self

    def _split(self, X, y, snapshot, eval_set, groups=None):
        if eval_set is not None:
            X_va, y_va = eval_set
            X_va = self._round(
                validate_data(
                    self, X_va, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
                )
            )
            y_va = np.searchsorted(self.classes_, np.asarray(y_va))
            return X, y, X_va, y_va
        if snapshot is not None:
            snap = pd.to_datetime(pd.Series(np.asarray(snapshot))).to_numpy()
            if len(snap) != len(y):
                raise ValueError(f"snapshot has {len(snap)} values for {len(y)} rows")
            last = snap.max()
            is_val = snap == last
            is_tr = (snap < last) & (snap <= last - np.timedelta64(int(self.purge_days), "D"))
            if is_tr.any():
                return X[is_tr], y[is_tr], X[is_val], y[is_val]
            log.warning(
                "no snapshot is %d+ days before the latest: random validation split "
                "(of persons, when groups are given) instead",
                self.purge_days,
            )
        if not self.validation_fraction or len(y) < 10:
            return X, y, None, None
        if groups is not None:
            g = pd.util.hash_pandas_object(pd.Series(np.asarray(groups)).astype(str), index=False)
            seed = np.uint64(0 if self.random_state is None else int(self.random_state))
            u = ((g.to_numpy() ^ seed) % np.uint64(1_000_003)) / 1_000_003.0
            is_va = u < self.validation_fraction
            if len(np.unique(y[is_va])) == 2 and len(np.unique(y[~is_va])) == 2:
                return X[~is_va], y[~is_va], X[is_va], y[is_va]
        stratify = y if np.bincount(y).min() >= 2 else None
        X_tr, X_va, y_tr, y_va = train_test_split(
            X,
            y,
            test_size=self.validation_fraction,
            random_state=self.random_state,
            stratify=stratify,
        )
        return X_tr, y_tr, X_va, y_va

    def _feature_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return [f"x{i}" for i in range(self.n_features_in_)]
        return [str(n) for n in names]

    # -- prediction --------------------------------------------------------------
    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "booster_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        return self._round(X)

    def _round(self, X: np.ndarray) -> np.ndarray:
        if self.input_decimals is None:
            return X
        return np.round(X, int(self.input_decimals))

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(
            X, raw_score=True, num_iteration=self.best_iteration_, num_threads=self.n_jobs or 0
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, shape (n, 2)."""
        Xa = self._check_X(X)
        p = apply_calibrator(self.calibrator_, self._raw(Xa))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The class with calibrated probability >= 0.5."""
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] >= 0.5).astype(int)]

    def contributions(self, X: Any, method: str = "shap") -> np.ndarray:
        """Per-feature contributions to the raw score (log-odds), shape (n, n_features + 1).

        Args:
            X: features.
            method: ``shap`` (exact TreeSHAP, LightGBM's ``pred_contrib``) or ``path``
                (Saabas decision-path attribution, :mod:`models._contrib`; ~100x faster).

        The last column is the bias; each row sums to the raw score.
        """
        return self._contrib(self._check_X(X), method)

    def _contrib(self, X: np.ndarray, method: str) -> np.ndarray:
        threads = self.n_jobs or 0
        if method == "shap":
            return self.booster_.predict(
                X, pred_contrib=True, num_iteration=self.best_iteration_, num_threads=threads
            )
        if method == "path":
            tables = getattr(self, "_path_tables", None)
            if tables is None:
                tables = self._path_tables = path_tables(self.booster_, self.best_iteration_)
            return path_contributions(
                self.booster_, X, tables, num_iteration=self.best_iteration_, num_threads=threads
            )
        raise ValueError(f"method must be 'shap' or 'path', not {method!r}")

    def explain(self, X: Any, top: int = 3, method: str = "shap") -> pd.DataFrame:
        """Per-row reason codes: the ``top`` features pushing the score up the most.

        Args:
            X: features, as for :meth:`predict_proba`.
            top: number of reasons per row.
            method: contributions by ``shap`` (exact TreeSHAP) or ``path`` (fast
                Saabas attribution, for batch scoring of millions of rows).

        Returns:
            DataFrame (index of ``X`` when it is a DataFrame) with, for k = 1..top,
            ``feature_k``, ``value_k``, ``contribution_k`` (log-odds) and
            ``reason_k``, e.g. "recency_days = 120 (days since last purchase)
            raises churn risk".
        """
        Xa = self._check_X(X)
        contrib = self._contrib(Xa, method)[:, :-1]
        out = reason_frame(
            Xa, contrib, self.feature_names_, self.feature_descriptions_, self._effects, top
        )
        if isinstance(X, pd.DataFrame):
            out.index = X.index
        return out

    def predict_explain(
        self, X: Any, top: int = 3, method: str = "path"
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Positive-class probabilities and reason codes from one pass over the trees.

        The raw score is the row sum of the contributions (both methods are exact
        decompositions), so batch scoring walks the trees once per model.

        Returns:
            ``(probability of the positive class, explain-style DataFrame)``.
        """
        Xa = self._check_X(X)
        contrib = self._contrib(Xa, method)
        p = apply_calibrator(self.calibrator_, contrib.sum(axis=1))
        out = reason_frame(
            Xa, contrib[:, :-1], self.feature_names_, self.feature_descriptions_, self._effects, top
        )
        if isinstance(X, pd.DataFrame):
            out.index = X.index
        return p, out

    # -- persistence as data -----------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model as data: ``booster.txt`` (LightGBM text) and ``model.json``."""
        check_is_fitted(self, "booster_")
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(d / _MODEL_FILE), num_iteration=self.best_iteration_)
        params = self.get_params()
        params["feature_descriptions"] = (
            dict(params["feature_descriptions"]) if params["feature_descriptions"] else None
        )
        params["monotone"] = dict(params["monotone"]) if params["monotone"] else None
        meta = {
            "class": type(self).__name__,
            "params": params,
            "classes": self.classes_.tolist(),
            "feature_names": self.feature_names_,
            "has_feature_names_in": hasattr(self, "feature_names_in_"),
            "best_iteration": self.best_iteration_,
            "validation_auc": self.validation_auc_,
            "refitted": self.refitted_,
            "calibrator": self.calibrator_,
            "feature_descriptions": self.feature_descriptions_,
            "lightgbm_version": lgb.__version__,
        }
        (d / _META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        return d

    @classmethod
    def load(cls, path: str | Path) -> _CalibratedLGBMClassifier:
        """Read a model written by :meth:`save`."""
        return load_model(path, expected=cls)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _resolve_descriptions(names: Sequence[str], given: Mapping[str, str] | None) -> dict[str, str]:
    """Short descriptions for ``names`` from ``given``, else the name with spaces."""
    known = dict(given or {})
    return {n: _short(str(known.get(n, n.replace("_", " ")))) for n in names}


def _short(text: str) -> str:
    """A catalog description as a reason fragment: first clause, no notes in brackets.

    "Days since the last completed purchase (NaN: never bought)." becomes
    "days since the last completed purchase".
    """
    t = re.sub(r"\s*\([^()]*\)", "", text).strip()
    t = re.split(r",\s*i\.e\.|;|\.\s", t)[0].strip().rstrip(".").strip()
    if len(t) > 1 and t[0].isupper() and t[1].islower():
        t = t[0].lower() + t[1:]
    return t or text


class ChurnModel(_CalibratedLGBMClassifier):
    """Probability that an active customer makes no purchase within the horizon.

    Train on the ``active == 1`` rows of :func:`features.build_training_set` with
    target ``churn``. See :class:`_CalibratedLGBMClassifier` for the parameters.
    """

    _effects = ("raises churn risk", "lowers churn risk")


class PropensityModel(_CalibratedLGBMClassifier):
    """Probability that a customer purchases within the horizon.

    Train on all rows of :func:`features.build_training_set` with target
    ``purchase``. See :class:`_CalibratedLGBMClassifier` for the parameters.
    """

    _effects = ("raises purchase likelihood", "lowers purchase likelihood")


_CLASSES: dict[str, type[_CalibratedLGBMClassifier]] = {
    "ChurnModel": ChurnModel,
    "PropensityModel": PropensityModel,
}


def load_model(path: str | Path, expected: type[_CalibratedLGBMClassifier] | None = None) -> Any:
    """Load a :class:`ChurnModel` or :class:`PropensityModel` saved with ``save``.

    A :class:`~cip.models.baselines.LogisticBaselineModel` (a baseline registered as
    the champion) loads too, whatever ``expected``: it has the same interface.
    """
    from cip.models.baselines import LogisticBaselineModel

    d = Path(path)
    meta = json.loads((d / _META_FILE).read_text())
    if meta["class"] == LogisticBaselineModel.__name__:
        return LogisticBaselineModel.from_meta(meta)  # a baseline registered as the champion
    cls = _CLASSES[meta["class"]]
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"{d} holds a {meta['class']}, not a {expected.__name__}")
    model = cls(**meta["params"])
    model.booster_ = lgb.Booster(model_file=str(d / _MODEL_FILE))
    model.classes_ = np.asarray(meta["classes"])
    model.feature_names_ = list(meta["feature_names"])
    model.n_features_in_ = len(model.feature_names_)
    if meta["has_feature_names_in"]:
        model.feature_names_in_ = np.asarray(model.feature_names_, dtype=object)
    model.best_iteration_ = int(meta["best_iteration"])
    model.validation_auc_ = float(meta["validation_auc"])
    model.refitted_ = bool(meta.get("refitted", False))
    model.calibrator_ = meta["calibrator"]
    model.feature_descriptions_ = dict(meta["feature_descriptions"])
    model.feature_importances_ = model.booster_.feature_importance(
        "gain", iteration=model.best_iteration_
    )
    return model
