"""Customer lifetime value: buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma), the CLV model and its training.

Typical use::

    from cip.models.clv import BetaGeoModel, GammaGammaModel, train_clv
    bg = BetaGeoModel().fit(summary.frequency, summary.recency, summary.T)
    p = bg.p_alive(summary.frequency, summary.recency, summary.T)
    result = train_clv(store, date(2011, 6, 9), 183, tracking_uri, artifacts)

Heavy imports (MLflow, Optuna, the feature layer) happen inside the functions that need them.
"""

from cip.models.clv._logging import REGISTRY_NAME, load_clv_champion
from cip.models.clv.btyd import BetaGeoModel, GammaGammaModel
from cip.models.clv.metrics import decile_table, evaluate_values, gini, normalized_gini
from cip.models.clv.model import OUTPUT_COLUMNS, CLVModel, btyd_features, load_clv_model
from cip.models.clv.pareto import ParetoNBDModel
from cip.models.clv.scoring import CLV_SCORE_COLUMNS, predict_clv, score_clv
from cip.models.clv.training import (
    CLVTrainResult,
    add_btyd_features,
    clv_frame,
    clv_score_frame,
    fit_btyd,
    fit_clv_candidates,
    train_clv,
    train_clv_on_frame,
)
from cip.models.clv.two_part import TwoPartLGBM

__all__ = [
    "CLV_SCORE_COLUMNS",
    "OUTPUT_COLUMNS",
    "REGISTRY_NAME",
    "BetaGeoModel",
    "CLVModel",
    "CLVTrainResult",
    "GammaGammaModel",
    "ParetoNBDModel",
    "TwoPartLGBM",
    "add_btyd_features",
    "btyd_features",
    "clv_frame",
    "clv_score_frame",
    "decile_table",
    "evaluate_values",
    "fit_btyd",
    "fit_clv_candidates",
    "gini",
    "load_clv_champion",
    "load_clv_model",
    "normalized_gini",
    "predict_clv",
    "score_clv",
    "train_clv",
    "train_clv_on_frame",
]
