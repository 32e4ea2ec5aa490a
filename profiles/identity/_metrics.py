"""Pairwise precision, recall and F1 of a clustering against true labels.

A pair of records is predicted to match when both get the same predicted
cluster, and truly matches when both share the true label. The counts come
from the contingency table (n_ij records in true cluster i and predicted
cluster j): true-positive pairs = sum C(n_ij, 2), predicted pairs =
sum_j C(n_.j, 2), true pairs = sum_i C(n_i., 2); no pair is enumerated, so
millions of records are fine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["pairwise_scores"]


def _pairs(counts: np.ndarray) -> float:
    c = counts.astype(np.float64)
    return float((c * (c - 1) / 2).sum())


def pairwise_scores(
    truth: Sequence | pd.Series, predicted: Sequence | pd.Series
) -> dict[str, float]:
    """``precision, recall, f1`` and the pair counts behind them.

    Records with a missing predicted cluster count as singletons (matched to
    nobody); records with a missing true label are skipped.
    """
    df = pd.DataFrame({"t": pd.Series(truth).to_numpy(), "p": pd.Series(predicted).to_numpy()})
    df = df[df["t"].notna()].reset_index(drop=True)
    solo = df["p"].isna()
    solo_ids = "__solo__" + pd.Series(df.index.astype(str), index=df.index)
    df["p"] = df["p"].astype(object).where(~solo, solo_ids)
    joint = df.groupby(["t", "p"], sort=False).size().to_numpy()
    pred = df.groupby("p", sort=False).size().to_numpy()
    true = df.groupby("t", sort=False).size().to_numpy()
    tp, pp, tt = _pairs(joint), _pairs(pred), _pairs(true)
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_pairs": tt,
        "predicted_pairs": pp,
        "correct_pairs": tp,
        "records": float(len(df)),
    }
