"""Models: churn and purchase propensity (LightGBM), evaluation, tuning, MLflow, scoring.

Typical use::

    from models import ChurnModel, train_model, score
    result = train_model(store, "churn", date(2011, 9, 9), 90, tracking_uri, artifacts)
    score(store, date(2011, 12, 1), tracking_uri, out="scores.parquet")

Heavy imports (MLflow, Optuna, features) happen inside the functions that need them.
"""

from models.baselines import RecencyRule, RFMLogisticRegression
from models.calibration import apply_calibrator, fit_calibrator
from models.estimators import ChurnModel, PropensityModel, load_model
from models.metrics import (
    calibration_table,
    cumulative_gain,
    evaluate_probabilities,
    evaluate_scores,
    expected_calibration_error,
    lift_capture,
)
from models.scoring import ScoreResult, score, score_frame, write_scores
from models.training import SnapshotPlan, TrainResult, plan_snapshots, train_model, train_on_frame

__all__ = [
    "ChurnModel",
    "PropensityModel",
    "load_model",
    "RecencyRule",
    "RFMLogisticRegression",
    "fit_calibrator",
    "apply_calibrator",
    "evaluate_scores",
    "evaluate_probabilities",
    "lift_capture",
    "expected_calibration_error",
    "calibration_table",
    "cumulative_gain",
    "SnapshotPlan",
    "TrainResult",
    "plan_snapshots",
    "train_model",
    "train_on_frame",
    "ScoreResult",
    "score",
    "score_frame",
    "write_scores",
]
