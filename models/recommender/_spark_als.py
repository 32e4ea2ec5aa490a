"""Implicit-feedback ALS fitted by Spark MLlib, served as an ordinary CIP recommender.

:class:`SparkALSRecommender` (``spark_als``) fits ``pyspark.ml.recommendation.ALS``
with ``implicitPrefs=True`` and copies the user and item factors into the
arrays of the matrix-factorisation recommenders (``user_factors_``,
``item_factors_``), so scoring, business rules, fold-in, erasure, ``.npz``
persistence, MLflow tracking (:func:`models.recommender.tracking.train_recommender_run`
with ``algorithm="spark_als"``) and serving are those of ``als``.

Where the work runs
-------------------
* **Executors** -- with a Spark DataFrame as input: the ``groupBy(user_id,
  item_id)`` that sums the raw weights (one shuffle on the pair); then the
  ALS solve: MLlib partitions users and items into blocks and, per
  iteration, ships each factor block to the blocks that rate it (two
  shuffles an iteration, items then users), solving the normal equations
  on the executors.
* **Driver** -- the summed (user, item) pairs are collected: the served
  model keeps the user x item matrix (seen-item exclusion, popularity
  backfill), as every CIP recommender does, so the pairs must fit the
  driver's memory (~12 bytes a pair). The id maps and the final factors
  (``(users + items) x factors`` floats) are collected too.

Spark's implicit ALS (Hu, Koren & Volinsky 2008) weights an interaction by
the confidence ``1 + alpha * w`` and scales the L2 penalty by the user's
(item's) number of interactions ("ALS-WR"), so its ``regularization`` is far
smaller than ``als``'s; :meth:`SparkALSRecommender._fold_in` solves the same
equation for an item list, so a known user's history folds in to (almost)
its fitted factor.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender._base import Recommender
from cip.models.recommender._mf import ALSRecommender, on_grid
from cip.profiles.errors import ConfigError, DataError

__all__ = ["SparkALSRecommender"]

log = logging.getLogger(__name__)


def _is_spark_frame(value: Any) -> bool:
    return hasattr(value, "sparkSession") and hasattr(value, "groupBy")


class SparkALSRecommender(ALSRecommender):
    """Implicit ALS fitted with Spark MLlib (``pyspark.ml.recommendation.ALS``).

    Args:
        factors: latent dimensions (MLlib's ``rank``).
        regularization: L2 penalty, scaled per user / item by its interaction
            count (MLlib's ``regParam``).
        alpha: confidence ``1 + alpha * w`` of an interaction of weight ``w``.
        iterations: ALS sweeps (MLlib's ``maxIter``).
        weighting: ``binary``, ``log`` (log 1 + w) or ``raw`` weights.
        blocks: user and item blocks of the solve (0: Spark's default
            parallelism); more blocks, more parallel tasks and more shuffle.
        num_threads: threads for batch scoring of the fitted model (0: all cores).
        random_state: seed of MLlib's factor initialisation.
    """

    algorithm: ClassVar[str] = "spark_als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 10,
        weighting: str = "log",
        blocks: int = 0,
        num_threads: int = 0,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.blocks = blocks
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, interactions: Any) -> Recommender:
        """Fit on ``user_id, item_id[, weight, ts]``: a Spark or a pandas DataFrame.

        A Spark DataFrame is summed per (user, item) on the executors first (see
        the module docstring); a pandas one is sent to the active Spark session
        (or a new local one) for the ALS solve.
        """
        if _is_spark_frame(interactions):
            self._spark = interactions.sparkSession
            interactions = _sum_pairs(interactions)
        return super().fit(interactions)

    def _session(self) -> Any:
        spark = getattr(self, "_spark", None)
        if spark is not None:
            return spark
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise ConfigError(
                "algorithm spark_als needs pyspark and Java 17: pip install 'cip[spark]'"
            ) from exc
        spark = SparkSession.getActiveSession()
        if spark is None:
            log.info("no active Spark session: starting a local one for spark_als")
            spark = SparkSession.builder.master("local[*]").appName("cip-spark-als").getOrCreate()
        return spark

    def _fit(self, x: sp.csr_matrix) -> None:
        from pyspark.ml.recommendation import ALS

        spark = self._session()
        coo = x.tocoo()
        ratings = spark.createDataFrame(
            pd.DataFrame(
                {
                    "user": coo.row.astype(np.int32),
                    "item": coo.col.astype(np.int32),
                    "rating": coo.data.astype(np.float32),
                }
            ),
            "user int, item int, rating float",
        )
        blocks = int(self.blocks) or spark.sparkContext.defaultParallelism
        als = ALS(
            rank=int(self.factors),
            maxIter=int(self.iterations),
            regParam=float(self.regularization),
            alpha=float(self.alpha),
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="rating",
            numUserBlocks=blocks,
            numItemBlocks=blocks,
        )
        if self.random_state is not None:
            als.setSeed(int(self.random_state))
        model = als.fit(ratings)
        self.user_factors_ = _factors(model.userFactors, x.shape[0], int(self.factors))
        self.item_factors_ = _factors(model.itemFactors, x.shape[1], int(self.factors))
        self._to_grid()  # exact scores in any row blocking, as for every MF model
        self._spark = None  # a session is not part of the fitted model

    def _fold_in(self, hist: sp.csr_matrix) -> np.ndarray:
        """MLlib's implicit normal equation for one history row.

        ``u = (Y^T Y + Y_h^T diag(alpha w_h) Y_h + lambda n_h I)^-1 Y_h^T (1 + alpha w_h)``
        with ``n_h`` the number of items in the history with ``w > 0``.
        """
        y = self.item_factors_[hist.indices].astype(np.float64)
        w = hist.data.astype(np.float64)
        c1 = float(self.alpha) * np.abs(w)
        a = self._gram() + y.T @ (c1[:, None] * y)
        a[np.diag_indices_from(a)] += float(self.regularization) * int(np.count_nonzero(w > 0))
        b = y.T @ np.where(w > 0, 1.0 + c1, 0.0)
        return on_grid(np.linalg.solve(a, b)[None, :])


def _sum_pairs(df: Any) -> pd.DataFrame:
    """Raw weights summed per (user, item) on Spark, collected (``ts``: the latest one)."""
    from pyspark.sql import functions as F

    missing = {"user_id", "item_id"} - set(df.columns)
    if missing:
        raise DataError(
            f"interactions lack column(s) {', '.join(sorted(missing))}; have {df.columns}"
        )
    weight = F.sum("weight") if "weight" in df.columns else F.count("*")
    aggs = [weight.cast("double").alias("weight")]
    if "ts" in df.columns:
        aggs.append(F.max("ts").alias("ts"))
    pairs = df.groupBy("user_id", "item_id").agg(*aggs).toPandas()
    # a fixed order (Spark returns groups in any order): the same fit for the same data
    return pairs.sort_values(["user_id", "item_id"], kind="stable", ignore_index=True)


def _factors(frame: Any, n: int, rank: int) -> np.ndarray:
    """MLlib's ``id, features`` factor DataFrame as an ``n x rank`` float32 array."""
    pdf = frame.toPandas()
    out = np.zeros((n, rank), np.float32)
    if len(pdf):
        out[pdf["id"].to_numpy(np.int64)] = np.stack(pdf["features"].to_numpy()).astype(np.float32)
    return out
