"""Evaluation metrics for binary scores: ranking, calibration and campaign lift.

* ROC AUC and PR AUC (average precision) measure ranking quality.
* Brier score (Brier, 1950) and log loss measure probability quality.
* Expected calibration error (ECE; Naeini et al., 2015): the sample-weighted mean
  of |observed rate - mean predicted probability| over equal-width bins.
* Lift at top k% = (positive rate among the k% highest scores) / (overall positive
  rate); capture at top k% = share of all positives found in those k%.
  Ties at the cut-off are broken by a stable sort on the score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

__all__ = [
    "evaluate_scores",
    "evaluate_probabilities",
    "lift_capture",
    "expected_calibration_error",
    "calibration_table",
    "cumulative_gain",
]


def _arrays(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=np.float64)
    pa = np.asarray(p, dtype=np.float64)
    if ya.shape != pa.shape or ya.ndim != 1:
        raise ValueError(f"y and scores must be 1-D of equal length, got {ya.shape}, {pa.shape}")
    return ya, pa


def lift_capture(y: object, score: object, top: float = 0.1) -> tuple[float, float]:
    """Lift and capture rate of the ``top`` share of rows ranked by ``score``.

    Returns:
        ``(lift, capture)``; NaN when there are no positives.
    """
    ya, sa = _arrays(y, score)
    n = len(ya)
    k = max(1, int(np.ceil(top * n)))
    order = np.argsort(-sa, kind="stable")
    hits = ya[order[:k]].sum()
    total = ya.sum()
    if n == 0 or total == 0:
        return float("nan"), float("nan")
    return float((hits / k) / (total / n)), float(hits / total)


def calibration_table(y: object, p: object, n_bins: int = 10) -> pd.DataFrame:
    """Observed rate vs mean predicted probability per equal-width probability bin.

    Returns:
        DataFrame with ``bin``, ``lower``, ``upper``, ``n``, ``mean_predicted``,
        ``observed_rate`` (empty bins left out).
    """
    ya, pa = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.digitize(pa, edges[1:-1], right=True), 0, n_bins - 1)
    df = pd.DataFrame({"bin": b, "y": ya, "p": pa})
    g = df.groupby("bin").agg(
        n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")
    )
    g = g.reset_index()
    g.insert(1, "lower", edges[g["bin"].to_numpy()])
    g.insert(2, "upper", edges[g["bin"].to_numpy() + 1])
    return g


def expected_calibration_error(y: object, p: object, n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / n) * |observed_b - predicted_b| over equal-width bins."""
    t = calibration_table(y, p, n_bins)
    if t.empty:
        return float("nan")
    w = t["n"] / t["n"].sum()
    return float((w * (t["observed_rate"] - t["mean_predicted"]).abs()).sum())


def cumulative_gain(y: object, score: object, points: int = 101) -> pd.DataFrame:
    """Share of positives captured vs share of rows contacted, best scores first."""
    ya, sa = _arrays(y, score)
    order = np.argsort(-sa, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(ya[order])])
    frac = np.linspace(0.0, 1.0, points)
    idx = np.round(frac * len(ya)).astype(int)
    total = cum[-1] if cum[-1] > 0 else np.nan
    return pd.DataFrame({"contacted": frac, "captured": cum[idx] / total})


def evaluate_scores(y: object, score: object, top: float = 0.1) -> dict[str, float]:
    """Ranking metrics for any score: ``roc_auc``, ``pr_auc``, ``lift_top10``, ``capture_top10``.

    The ``top10`` names refer to the default ``top=0.1``.
    """
    ya, sa = _arrays(y, score)
    both = len(np.unique(ya)) == 2
    lift, capture = lift_capture(ya, sa, top)
    return {
        "roc_auc": float(roc_auc_score(ya, sa)) if both else float("nan"),
        "pr_auc": float(average_precision_score(ya, sa)) if both else float("nan"),
        "lift_top10": lift,
        "capture_top10": capture,
        "positive_rate": float(ya.mean()) if len(ya) else float("nan"),
        "n": float(len(ya)),
    }


def evaluate_probabilities(y: object, p: object, top: float = 0.1) -> dict[str, float]:
    """:func:`evaluate_scores` plus ``brier``, ``log_loss`` and ``ece`` for probabilities."""
    ya, pa = _arrays(y, p)
    out = evaluate_scores(ya, pa, top)
    out["brier"] = float(brier_score_loss(ya, pa)) if len(ya) else float("nan")
    out["log_loss"] = float(log_loss(ya, pa, labels=[0, 1])) if len(ya) else float("nan")
    out["ece"] = expected_calibration_error(ya, pa)
    return out
