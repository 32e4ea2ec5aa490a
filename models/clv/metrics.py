"""Evaluation of value predictions: normalized Gini, totals, rank correlation, deciles.

* Gini of a prediction (the Kaggle / insurance form): order customers by the
  prediction, highest first; ``G = sum_i (L_i - i/n) / n`` with ``L_i`` the share of
  the actual total captured by the first ``i``. **Normalized Gini** = ``G(pred) /
  G(actual)``: 1 is a perfect ranking, 0 is random (Frees, Meyers & Cummings
  2011; used for CLV in Wang, Liu & Miao 2019). Ties in the prediction are
  broken by the original row order (stable sort), so a constant prediction
  scores about 0.
* ``total_ratio`` = sum of predictions / sum of actuals (1 = unbiased in total).
* ``spearman``: Spearman rank correlation of prediction and actual.
* Deciles: customers cut into ten equal groups by the prediction (decile 1 =
  highest); ``decile_mae`` = mean over deciles of |mean predicted - mean actual|.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

__all__ = ["gini", "normalized_gini", "decile_table", "evaluate_values", "decile_figure"]


def _arrays(actual: object, predicted: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(
            f"actual and predicted must be 1-D of equal length, got {y.shape}, {p.shape}"
        )
    return y, p


def gini(actual: object, predicted: object) -> float:
    """Gini of ``predicted`` as a ranking of ``actual`` (see the module docstring)."""
    y, p = _arrays(actual, predicted)
    n = len(y)
    if n == 0 or y.sum() == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    captured = np.cumsum(y[order]) / y.sum()
    return float(np.sum(captured - np.arange(1, n + 1) / n) / n)


def normalized_gini(actual: object, predicted: object) -> float:
    """``gini(actual, predicted) / gini(actual, actual)`` (1: perfect, 0: random)."""
    best = gini(actual, actual)
    return float(gini(actual, predicted) / best) if best else float("nan")


def decile_table(actual: object, predicted: object, n_groups: int = 10) -> pd.DataFrame:
    """Mean predicted and actual value per prediction decile (1 = highest predictions)."""
    y, p = _arrays(actual, predicted)
    order = np.argsort(-p, kind="stable")
    group = np.empty(len(y), dtype=np.int64)
    group[order] = np.arange(len(y)) * n_groups // max(len(y), 1) + 1
    df = pd.DataFrame({"decile": group, "predicted": p, "actual": y})
    return (
        df.groupby("decile")
        .agg(
            n=("actual", "size"),
            mean_predicted=("predicted", "mean"),
            mean_actual=("actual", "mean"),
        )
        .reset_index()
    )


def evaluate_values(actual: object, predicted: object) -> dict[str, float]:
    """``normalized_gini, gini, total_ratio, total_predicted, total_actual, spearman, decile_mae, n``."""
    y, p = _arrays(actual, predicted)
    dec = decile_table(y, p)
    rho = spearmanr(y, p).statistic if len(y) > 1 and np.ptp(p) > 0 else float("nan")
    return {
        "normalized_gini": normalized_gini(y, p),
        "gini": gini(y, p),
        "total_ratio": float(p.sum() / y.sum()) if y.sum() else float("nan"),
        "total_predicted": float(p.sum()),
        "total_actual": float(y.sum()),
        "spearman": float(rho),
        "decile_mae": float((dec["mean_predicted"] - dec["mean_actual"]).abs().mean()),
        "n": float(len(y)),
    }


def decile_figure(actual: object, predictions: dict[str, np.ndarray], title: str = "") -> Figure:
    """Bars: mean actual vs mean predicted value per prediction decile, one panel per model."""
    fig = Figure(figsize=(4.5 * len(predictions), 4.0), dpi=100, layout="tight")
    axes = fig.subplots(1, len(predictions), squeeze=False)[0]
    for ax, (name, p) in zip(axes, predictions.items(), strict=True):
        t = decile_table(actual, p)
        x = t["decile"].to_numpy()
        ax.bar(x - 0.2, t["mean_predicted"], width=0.4, label="predicted")
        ax.bar(x + 0.2, t["mean_actual"], width=0.4, label="actual")
        ax.set_xticks(x)
        ax.set_xlabel("decile of predicted value (1 = highest)")
        ax.set_ylabel("mean value per customer")
        ax.set_title(f"{title} {name}: Gini {normalized_gini(actual, p):.3f}".strip())
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return fig
