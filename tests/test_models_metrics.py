"""Metrics, baselines and reason JSON on hand-computed examples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cip.models import RecencyRule, RFMLogisticRegression
from cip.models._reasons import join_reasons_json
from cip.models.metrics import (
    calibration_table,
    cumulative_gain,
    evaluate_probabilities,
    evaluate_scores,
    expected_calibration_error,
    lift_capture,
)


def test_lift_and_capture_at_top_decile() -> None:
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0] * 2)
    score = np.arange(20, 0, -1, dtype=float)  # rows in order, first is best
    # top 10% = 2 rows (y = 1, 0): rate 0.5 vs base 0.2 -> lift 2.5, capture 1/4
    assert lift_capture(y, score, 0.1) == pytest.approx((2.5, 0.25))
    assert np.isnan(lift_capture(np.zeros(5), np.arange(5.0))).all()  # no positives


def test_ece_and_calibration_table_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.05, 0.05, 0.95, 0.95, 0.95])
    t = calibration_table(y, p, n_bins=10)
    assert t["bin"].tolist() == [0, 9]
    assert t["observed_rate"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert t["lower"].tolist() == pytest.approx([0.0, 0.9])
    # ECE = 0.5 * |1/3 - 0.05| + 0.5 * |2/3 - 0.95|
    assert expected_calibration_error(y, p) == pytest.approx(
        0.5 * (1 / 3 - 0.05) + 0.5 * (0.95 - 2 / 3)
    )


def test_evaluate_scores_and_probabilities() -> None:
    y = np.array([0, 0, 1, 1])
    m = evaluate_probabilities(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["positive_rate"] == 0.5 and m["n"] == 4
    s = evaluate_scores(y, np.array([3.0, 2.0, 1.0, 0.0]))
    assert s["roc_auc"] == 0.0 and "brier" not in s
    g = cumulative_gain(y, np.array([0.1, 0.4, 0.35, 0.8]), points=5)
    assert g["captured"].tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0, 1.0])


def test_recency_rule_ranks_lapsed_customers_first() -> None:
    X = pd.DataFrame({"recency_days": [10.0, np.nan, 200.0]})
    assert RecencyRule().score(X).tolist() == [10.0, 201.0, 200.0]
    assert RecencyRule(direction=-1).score(X).tolist() == [-10.0, -201.0, -200.0]
    with pytest.raises(ValueError):
        RecencyRule(direction=0)


def test_rfm_logistic_regression_uses_present_columns() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"recency_days": rng.integers(0, 300, 500).astype(float), "frequency": rng.poisson(3, 500)}
    )
    X.loc[::7, "frequency"] = np.nan
    y = (X.recency_days < 100).astype(int)
    lr = RFMLogisticRegression().fit(X, y)
    assert lr.columns_ == ["recency_days", "frequency"]
    assert evaluate_scores(y, lr.predict_proba(X)[:, 1])["roc_auc"] > 0.95
    with pytest.raises(ValueError, match="RFM"):
        RFMLogisticRegression().fit(pd.DataFrame({"x": [1.0, 2.0]}), [0, 1])


def test_reasons_json_escapes_and_keeps_order() -> None:
    cols = [pd.Series(['a "quoted" \\ reason', "b"]), pd.Series(["c", "d"])]
    rows = [json.loads(s) for s in join_reasons_json(cols, 2).to_pylist()]
    assert rows == [['a "quoted" \\ reason', "c"], ["b", "d"]]
    assert join_reasons_json([], 2).to_pylist() == ["[]", "[]"]
