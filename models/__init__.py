"""Models: recommenders, evaluation, tuning and MLflow tracking helpers.

Public API of the recommender (issue E): :func:`make_recommender`,
:func:`tune_recommender`, :func:`load_recommender`, the recommender classes,
:func:`interactions_from_store` and the :mod:`models.evaluation` module.
"""

from __future__ import annotations

from models import evaluation
from models.recommender import (
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
from models.recommender.interactions import interactions_from_store
from models.recommender.tuning import tune_recommender

__all__ = [
    "ALGORITHMS",
    "ALSRecommender",
    "BPRRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "Recommender",
    "evaluation",
    "interactions_from_store",
    "load_recommender",
    "make_recommender",
    "tune_recommender",
]
