"""Models: churn and purchase propensity (LightGBM), recommenders (implicit, EASE), evaluation,
tuning, MLflow tracking and registry, scoring.

Typical use::

    from cip.models import ChurnModel, train_model, score, make_recommender
    result = train_model(store, "churn", date(2011, 9, 9), 90, tracking_uri, artifacts)
    score(store, date(2011, 12, 1), tracking_uri, out="scores.parquet")
    rec = make_recommender("als", factors=64).fit(interactions)

Heavy imports (MLflow, Optuna, features) happen inside the functions that need them.
"""

from __future__ import annotations

from cip.models import evaluation
from cip.models.baselines import RecencyRule, RFMLogisticRegression
from cip.models.calibration import apply_calibrator, fit_calibrator
from cip.models.estimators import ChurnModel, PropensityModel, load_model
from cip.models.metrics import (
    calibration_table,
    cumulative_gain,
    evaluate_probabilities,
    evaluate_scores,
    expected_calibration_error,
    lift_capture,
)
from cip.models.recommender import (
    ALGORITHMS,
    ALSRecommender,
    BPRRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularRecommender,
    Recommender,
    load_recommender,
    make_recommender,
)
from cip.models.recommender.interactions import interactions_from_store
from cip.models.recommender.tuning import tune_recommender
from cip.models.scoring import ScoreResult, score, score_frame, write_scores
from cip.models.training import (
    SnapshotPlan,
    TrainResult,
    plan_snapshots,
    train_model,
    train_on_frame,
)

__all__ = [
    "ALGORITHMS",
    "ALSRecommender",
    "BPRRecommender",
    "ChurnModel",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "PropensityModel",
    "RFMLogisticRegression",
    "RecencyRule",
    "Recommender",
    "ScoreResult",
    "SnapshotPlan",
    "TrainResult",
    "apply_calibrator",
    "calibration_table",
    "cumulative_gain",
    "evaluate_probabilities",
    "evaluate_scores",
    "evaluation",
    "expected_calibration_error",
    "fit_calibrator",
    "interactions_from_store",
    "lift_capture",
    "load_model",
    "load_recommender",
    "make_recommender",
    "plan_snapshots",
    "score",
    "score_frame",
    "train_model",
    "train_on_frame",
    "tune_recommender",
    "write_scores",
]
