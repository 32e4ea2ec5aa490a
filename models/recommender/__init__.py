"""Collaborative-filtering recommenders with one small interface.

>>> rec = make_recommender("als", factors=64).fit(interactions)      # doctest: +SKIP
>>> rec.recommend(["u1", "u2"], n=10, items=in_stock_ids)             # doctest: +SKIP

Algorithms: ``als`` (default), ``bpr``, ``itemknn`` (cosine / BM25), ``ease``,
``spark_als`` (implicit ALS fitted by Spark MLlib; needs pyspark), ``blend``
(a weighted sum of other algorithms' standardised scores; ``auto`` tuning builds
one from its two best algorithms) and the ``popular`` baseline. Models save as
``.npz`` arrays plus JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from cip.models.recommender._base import Recommender
from cip.models.recommender._blend import BlendRecommender
from cip.models.recommender._data import normalize_ids
from cip.models.recommender._memory import EASERecommender, ItemKNNRecommender, PopularRecommender
from cip.models.recommender._mf import ALSRecommender, BPRRecommender
from cip.models.recommender._persist import FORMAT_VERSION
from cip.models.recommender._rank import Ranked
from cip.models.recommender._spark_als import SparkALSRecommender
from cip.profiles.errors import ConfigError, NotFoundError

__all__ = [
    "ALGORITHMS",
    "ALSRecommender",
    "BPRRecommender",
    "BlendRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
    "Ranked",
    "Recommender",
    "SparkALSRecommender",
    "load_recommender",
    "make_recommender",
    "normalize_ids",
]

#: Algorithm name -> class.
ALGORITHMS: dict[str, type[Recommender]] = {
    cls.algorithm: cls
    for cls in (
        ALSRecommender,
        BPRRecommender,
        ItemKNNRecommender,
        EASERecommender,
        PopularRecommender,
        SparkALSRecommender,
        BlendRecommender,
    )
}


def make_recommender(algorithm: str = "als", **params: Any) -> Recommender:
    """A new, unfitted recommender: ``als``, ``bpr``, ``itemknn``, ``ease``, ``spark_als``, ``blend``, ``popular``.

    ``params`` are the algorithm's hyperparameters (scikit-learn style), e.g.
    ``make_recommender("als", factors=128, random_state=0)``.
    """
    try:
        cls = ALGORITHMS[algorithm]
    except KeyError:
        raise ConfigError(
            f"unknown recommender algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
        ) from None
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise ConfigError(
            f"{algorithm} has no parameter(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(cls._param_names())}"
        )
    return cls(**params)


def load_recommender(path: str | Path) -> Recommender:
    """Load a recommender saved with :meth:`Recommender.save` (a folder; no pickles)."""
    d = Path(path)
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise NotFoundError(f"no saved recommender at {d} (missing model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "cip-recommender" or meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{meta_path} is not a CIP recommender of format {FORMAT_VERSION}")
    cls = ALGORITHMS.get(meta.get("algorithm"))
    if cls is None:
        raise ConfigError(f"{meta_path}: unknown algorithm {meta.get('algorithm')!r}")
    with np.load(d / "arrays.npz", allow_pickle=False) as data:
        return cls._from_saved(meta, {k: data[k] for k in data.files})
