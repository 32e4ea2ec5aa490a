"""T- and X-learners with LightGBM, evaluated with scikit-uplift's metrics."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from cip.models.registry import PromotionDecision, decide_promotion
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.model_selection import train_test_split

__all__ = [
    "LEARNERS",
    "TLearner",
    "XLearner",
    "UpliftEvaluation",
    "UpliftResult",
    "evaluate_uplift",
    "fit_uplift",
]

_LGBM = {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 20,
         "subsample": 0.9, "subsample_freq": 1, "colsample_bytree": 0.9, "verbose": -1,
         "n_jobs": 1}  # fmt: skip


def _clf(seed: int) -> LGBMClassifier:
    return LGBMClassifier(**_LGBM, random_state=seed)


def _reg(seed: int) -> LGBMRegressor:
    return LGBMRegressor(**_LGBM, random_state=seed)


def _p1(model: LGBMClassifier, X: pd.DataFrame) -> np.ndarray:
    if len(model.classes_) == 1:  # a group where nobody (or everybody) bought
        return np.full(len(X), float(model.classes_[0]))
    return model.predict_proba(X)[:, 1]


@dataclass
class TLearner:
    """Two classifiers: P(buy | sent) and P(buy | held out)."""

    seed: int = 0
    features: list[str] = field(default_factory=list)

    def fit(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray) -> TLearner:
        """Fit on features ``X``, treatment flags ``t`` and outcomes ``y``."""
        self.features = list(X.columns)
        t = np.asarray(t, bool)
        self.m1 = _clf(self.seed).fit(X[t], y[t])
        self.m0 = _clf(self.seed).fit(X[~t], y[~t])
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Uplift: the change in purchase probability a message makes."""
        X = X[self.features]
        return _p1(self.m1, X) - _p1(self.m0, X)


@dataclass
class XLearner:
    """X-learner: imputed individual effects learned per group, blended by the share treated."""

    seed: int = 0
    features: list[str] = field(default_factory=list)

    def fit(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray) -> XLearner:
        """Fit on features ``X``, treatment flags ``t`` and outcomes ``y``."""
        self.features = list(X.columns)
        t = np.asarray(t, bool)
        y = np.asarray(y, float)
        base = TLearner(self.seed).fit(X, t, y)
        d1 = y[t] - _p1(base.m0, X[t])  # what the treated did beyond their no-message chance
        d0 = _p1(base.m1, X[~t]) - y[~t]
        self.tau1 = _reg(self.seed).fit(X[t], d1)
        self.tau0 = _reg(self.seed).fit(X[~t], d0)
        self.g = float(t.mean())
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Uplift: the change in purchase probability a message makes."""
        X = X[self.features]
        return self.g * self.tau0.predict(X) + (1 - self.g) * self.tau1.predict(X)


#: Learner name -> class.
LEARNERS: dict[str, type] = {"t_learner": TLearner, "x_learner": XLearner}


@dataclass(frozen=True)
class UpliftEvaluation:
    """scikit-uplift metrics of one targeting score on the holdout."""

    qini: float  # Qini coefficient (qini_auc_score: area over random, normalised)
    auuc: float  # uplift_auc_score
    uplift_at_30: float  # uplift_at_k(k=0.3, strategy="overall")

    def as_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"qini": self.qini, "auuc": self.auuc, "uplift_at_30": self.uplift_at_30}


def evaluate_uplift(y: np.ndarray, t: np.ndarray, score: np.ndarray) -> UpliftEvaluation:
    """Qini coefficient, AUUC and uplift at 30 % of ``score`` (scikit-uplift)."""
    from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score

    y, t, score = np.asarray(y, int), np.asarray(t, int), np.asarray(score, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklift calls sklearn's stable_cumsum
        return UpliftEvaluation(
            float(qini_auc_score(y, score, t)),
            float(uplift_auc_score(y, score, t)),
            float(uplift_at_k(y, score, t, strategy="overall", k=0.3)),
        )


@dataclass
class UpliftResult:
    """What :func:`fit_uplift` fitted and measured."""

    champion: str  # best learner by holdout Qini
    model: Any  # the champion, refit on every row
    metrics: dict[str, UpliftEvaluation]  # learner and baselines -> holdout metrics
    decision: PromotionDecision
    n_train: int
    n_test: int
    qini_curve: pd.DataFrame  # the champion's Qini curve on the holdout (x, y)
    purchase_model: Any  # the "highest purchase probability" baseline, refit on every row

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "champion": self.champion,
            "metrics": {k: v.as_dict() for k, v in self.metrics.items()},
            "promoted": self.decision.promote,
            "reason": self.decision.reason,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def fit_uplift(
    X: pd.DataFrame,
    treated: np.ndarray,
    converted: np.ndarray,
    *,
    seed: int = 0,
    test_size: float = 0.3,
    learners: tuple[str, ...] = ("t_learner", "x_learner"),
) -> UpliftResult:
    """Fit the learners on randomised history, compare them and the baselines on a holdout.

    The holdout is stratified by treatment and outcome. The champion is the
    learner with the best holdout Qini coefficient; it is promoted only if it
    beats random targeting (Qini 0) and the purchase-probability baseline.
    The champion and the baseline are then refit on every row.
    """
    from sklift.metrics import qini_curve

    t = np.asarray(treated, bool)
    y = np.asarray(converted, int)
    if t.all() or not t.any():
        raise ValueError("uplift needs a treatment and a control group")
    strata = t.astype(int) * 2 + y
    idx = np.arange(len(X))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strata)
    Xtr, Xte = X.iloc[tr], X.iloc[te]
    metrics: dict[str, UpliftEvaluation] = {}
    for name in learners:
        m = LEARNERS[name](seed).fit(Xtr, t[tr], y[tr])
        metrics[name] = evaluate_uplift(y[te], t[te], m.predict(Xte))
    buy = _clf(seed).fit(Xtr, y[tr])
    metrics["purchase_probability"] = evaluate_uplift(y[te], t[te], _p1(buy, Xte))
    rng = np.random.default_rng(seed)
    metrics["random"] = evaluate_uplift(y[te], t[te], rng.random(len(te)))
    champion = max(learners, key=lambda k: metrics[k].qini)
    decision = decide_promotion(
        metrics[champion].qini,
        None,
        {"random": 0.0, "purchase_probability": metrics["purchase_probability"].qini},
    )
    best = LEARNERS[champion](seed).fit(Xtr, t[tr], y[tr])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cx, cy = qini_curve(y[te], best.predict(Xte), t[te].astype(int))
    model = LEARNERS[champion](seed).fit(X, t, y)
    return UpliftResult(
        champion,
        model,
        metrics,
        decision,
        len(tr),
        len(te),
        pd.DataFrame({"x": cx, "y": cy}),
        _clf(seed).fit(X, y),
    )
