"""Evaluation plots for a training run (matplotlib figures, no pyplot state).

Figures are built with :class:`matplotlib.figure.Figure` directly, so they work
headless (the Agg canvas) and never touch a notebook's or a server's global
pyplot state. Each function returns the figure; the caller logs or saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from cip.models.metrics import calibration_table, cumulative_gain
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

__all__ = [
    "roc_figure",
    "pr_figure",
    "calibration_figure",
    "gain_figure",
    "importance_figure",
    "evaluation_figures",
]


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(5.5, 4.5), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str = "ROC") -> Figure:
    """ROC curves of several scores on the same outcomes."""
    fig, ax = _axes(title, "false positive rate", "true positive rate")
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def pr_figure(
    y: np.ndarray, scores: Mapping[str, np.ndarray], title: str = "Precision-recall"
) -> Figure:
    """Precision-recall curves, with the positive rate as the no-skill line."""
    fig, ax = _axes(title, "recall", "precision")
    for name, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=name)
    ax.axhline(float(np.mean(y)), ls="--", c="grey", lw=0.8)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def calibration_figure(
    y: np.ndarray, probabilities: Mapping[str, np.ndarray], n_bins: int = 10
) -> Figure:
    """Reliability diagram: observed rate vs mean predicted probability per bin."""
    fig, ax = _axes("Calibration", "mean predicted probability", "observed rate")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    for name, p in probabilities.items():
        t = calibration_table(y, p, n_bins)
        ax.plot(t["mean_predicted"], t["observed_rate"], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def gain_figure(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Cumulative gain: share of positives captured vs share of customers contacted."""
    fig, ax = _axes("Cumulative gain", "share contacted", "share of positives captured")
    for name, s in scores.items():
        g = cumulative_gain(y, s)
        ax.plot(g["contacted"], g["captured"], label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.axvline(0.1, ls=":", c="grey", lw=0.8)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def importance_figure(
    names: Sequence[str], gain: np.ndarray, mean_abs_contrib: np.ndarray, top: int = 20
) -> Figure:
    """Side by side: split gain and mean |TreeSHAP contribution| per feature (top ``top``)."""
    order = np.argsort(-np.asarray(mean_abs_contrib))[:top][::-1]
    labels = [names[i] for i in order]
    fig = Figure(figsize=(10, 0.3 * len(labels) + 1.5), dpi=100, layout="tight")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(labels, np.asarray(gain)[order])
    ax1.set_title("split gain")
    ax2.barh(labels, np.asarray(mean_abs_contrib)[order], color="tab:orange")
    ax2.set_title("mean |contribution| (log-odds)")
    return fig


def evaluation_figures(
    y: np.ndarray,
    probability: np.ndarray,
    baseline_scores: Mapping[str, np.ndarray],
    baseline_probabilities: Mapping[str, np.ndarray],
    names: Sequence[str],
    gain: np.ndarray,
    mean_abs_contrib: np.ndarray,
) -> dict[str, Figure]:
    """All plots of a run, keyed by artifact file name."""
    scores = {"model": probability, **baseline_scores}
    if len(np.unique(y)) < 2:
        return {"feature_importance.png": importance_figure(names, gain, mean_abs_contrib)}
    return {
        "roc.png": roc_figure(y, scores),
        "pr.png": pr_figure(y, scores),
        "calibration.png": calibration_figure(y, {"model": probability, **baseline_probabilities}),
        "cumulative_gain.png": gain_figure(y, scores),
        "feature_importance.png": importance_figure(names, gain, mean_abs_contrib),
    }
