"""Probability calibration of a classifier's raw score, stored as plain data.

Two classic maps from a raw score (LightGBM's log-odds margin) to a probability:

* **Platt scaling** (Platt, 1999, "Probabilistic outputs for support vector
  machines"): ``p = 1 / (1 + exp(-(a * s + b)))``, fitted by logistic regression
  on a held-out set, with Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and
  ``1 / (N- + 2)`` to avoid over-confidence on small sets.
* **Isotonic regression** (Zadrozny & Elkan, 2002): a non-decreasing step
  function fitted by pool-adjacent-violators (scikit-learn's
  :class:`~sklearn.isotonic.IsotonicRegression`), linearly interpolated between
  thresholds; needs more data (a rule of thumb is >= 1,000 held-out rows). Its flat
  steps would give every score in a step the same probability (ties that lower ROC AUC),
  so :func:`apply_calibrator` adds a term below :data:`TIE_BREAK` that increases with the
  raw score: the probabilities rank as the raw scores and move by at most 5e-7.

A fitted calibrator is a small dict of numbers (JSON-serialisable), so a model
saved to disk or MLflow carries its calibration as data, not as a pickle.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = ["fit_calibrator", "apply_calibrator", "CALIBRATION_METHODS"]

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("auto", "isotonic", "sigmoid", "none")
#: Isotonic calibration is chosen by ``auto`` from this many held-out rows with
#: at least ``_MIN_CLASS_ROWS`` of each class; Platt scaling below it.
_ISOTONIC_MIN_ROWS = 1000
_MIN_CLASS_ROWS = 50
#: Calibrated probabilities are kept inside [EPS, 1 - EPS] so that log loss stays finite.
EPS = 1e-4
#: Isotonic calibration is a step function: every raw score in a flat step maps to one
#: probability (about 60 distinct values on Online Retail), and those ties cost ranking
#: (holdout ROC AUC -0.001 to -0.002). A term at most ``TIE_BREAK`` in size, increasing in
#: the raw score, keeps the booster's order inside a step and moves no probability by more.
TIE_BREAK = 5e-7


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto") -> dict[str, Any]:
    """Fit a calibration map from raw scores ``raw`` to the binary outcomes ``y``.

    Args:
        raw: raw classifier scores (log-odds), shape (n,).
        y: 0/1 outcomes, shape (n,).
        method: ``auto`` (isotonic with enough data, else sigmoid), ``isotonic``,
            ``sigmoid`` (Platt) or ``none`` (the identity on the logistic of ``raw``).

    Returns:
        A JSON-serialisable dict ``{"method": ..., ...parameters}``.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, not {method!r}")
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if method != "none" and min(n_pos, n_neg) == 0:
        log.warning("calibration set has a single class (%d rows); calibration skipped", len(y))
        method = "none"
    if method == "auto":
        big = len(y) >= _ISOTONIC_MIN_ROWS and min(n_pos, n_neg) >= _MIN_CLASS_ROWS
        method = "isotonic" if big else "sigmoid"
    if method == "none":
        return {"method": "none"}
    if method == "sigmoid":
        target = np.where(y > 0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        # Platt's smoothed targets as two weighted copies of every row (soft labels).
        xs = np.concatenate([raw, raw])[:, None]
        ys = np.concatenate([np.ones_like(raw), np.zeros_like(raw)])
        ws = np.concatenate([target, 1.0 - target])
        lr = LogisticRegression(C=np.inf, tol=1e-8, max_iter=1000).fit(xs, ys, sample_weight=ws)
        return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return {
        "method": "isotonic",
        "x": iso.X_thresholds_.astype(float).tolist(),
        "y": iso.y_thresholds_.astype(float).tolist(),
    }


def apply_calibrator(calibrator: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Map raw scores to calibrated probabilities in ``[EPS, 1 - EPS]``.

    Strictly increasing in ``raw`` for every method (isotonic steps are tie-broken by the
    raw score, :data:`TIE_BREAK`), so the calibrated probabilities rank as the raw scores.
    """
    raw = np.asarray(raw, dtype=np.float64)
    method = calibrator["method"]
    if method == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-(calibrator["a"] * raw + calibrator["b"])))
    elif method == "isotonic":
        # IsotonicRegression.predict with out_of_bounds="clip", ties broken by the raw score
        p = np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
        p = np.clip(p, EPS + TIE_BREAK, 1.0 - EPS - TIE_BREAK)
        return p + TIE_BREAK * np.tanh(raw / 4.0)
    elif method == "none":
        p = 1.0 / (1.0 + np.exp(-raw))
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    return np.clip(p, EPS, 1.0 - EPS)
