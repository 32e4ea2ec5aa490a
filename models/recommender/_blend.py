"""A weighted blend of recommenders: per-query standardised scores, summed with weights.

Two model families that are each good for different reasons (EASE's item-item
regression, ALS's low-rank factors) can make different mistakes; their scores live
on different scales, so each member's row of scores is standardised (mean 0,
standard deviation 1 over the items it scores) before the weighted sum. The
tuner (``algorithm="auto"``) builds one from its two best algorithms and keeps it
only when it wins on the validation splits (see :mod:`models.recommender.tuning`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender import _persist
from cip.models.recommender._base import Recommender
from cip.models.recommender._data import transform
from cip.profiles.errors import ConfigError

__all__ = ["BlendRecommender", "standardised"]

#: The default members: EASE and ALS with their defaults, equally weighted.
DEFAULT_MEMBERS: tuple[tuple[str, dict[str, Any]], ...] = (("ease", {}), ("als", {}))


def standardised(s: np.ndarray) -> np.ndarray:
    """Each row of ``s`` as z-scores over its finite entries; the others stay ``-inf``.

    A row with one finite value (or all equal) gets zeros there.
    """
    s = np.asarray(s, dtype=np.float64)
    finite = np.isfinite(s)
    count = finite.sum(axis=1, keepdims=True)
    filled = np.where(finite, s, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / np.maximum(count, 1)
    dev = np.where(finite, s - mean, 0.0)
    std = np.sqrt((dev * dev).sum(axis=1, keepdims=True) / np.maximum(count, 1))
    z = dev / np.where(std > 0, std, 1.0)
    return np.where(finite, z, -np.inf)


class BlendRecommender(Recommender):
    """``sum_m weights[m] * z_m(u, i)``: a weighted sum of the members' standardised scores.

    Args:
        members: ``[[algorithm, params], ...]`` (JSON-able): each member is
            ``make_recommender(algorithm, **params)``, fitted on the same interactions
            with its own ``weighting``; ``None``: EASE and ALS with their defaults.
        weights: one non-negative weight per member (not all zero); ``None``: equal.
        random_state: seed given to members that do not set their own.

    An item a member cannot score (EASE beyond ``max_items``, an item-kNN item
    with no neighbour in the history) gets that member's lowest standardised
    score in the row, so the other members can still rank it; an item no member
    scores is no candidate (backfilled from popular items).
    """

    algorithm: ClassVar[str] = "blend"
    #: the blend's own matrix holds the raw summed weights (each member weights its copy)
    weighting = "raw"
    _limit_blas_threads: ClassVar[bool] = False  # members limit their own BLAS threads

    def __init__(
        self,
        members: Any = None,
        weights: Any = None,
        random_state: int | None = 0,
    ) -> None:
        self.members = members
        self.weights = weights
        self.random_state = random_state

    def _recipes(self) -> list[tuple[str, dict[str, Any]]]:
        from cip.models.recommender import ALGORITHMS

        recipes = []
        for m in DEFAULT_MEMBERS if self.members is None else self.members:
            try:
                alg, params = m
            except (TypeError, ValueError):
                raise ConfigError(
                    f"blend members are [algorithm, params] pairs, not {m!r}"
                ) from None
            if alg not in ALGORITHMS or alg == self.algorithm:
                raise ConfigError(f"blend member {alg!r} is not a recommender algorithm")
            recipes.append((str(alg), dict(params or {})))
        return recipes

    def _check_params(self) -> None:
        recipes = self._recipes()
        if len(recipes) < 2:
            raise ConfigError(f"a blend needs at least 2 members, not {len(recipes)}")
        w = self._weights(len(recipes))
        if w.shape != (len(recipes),) or not (
            np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0
        ):
            raise ConfigError(
                f"blend weights must be {len(recipes)} non-negative numbers, not all 0: "
                f"{self.weights!r}"
            )

    def _weights(self, members: int) -> np.ndarray:
        if self.weights is None:
            return np.full(members, 1.0 / members)
        return np.asarray(self.weights, dtype=np.float64)

    def fit(self, interactions: pd.DataFrame) -> Recommender:
        """Fit every member on ``interactions``, then the blend's own id maps."""
        from cip.models.recommender import make_recommender

        self._check_params()
        fitted = []
        for alg, params in self._recipes():
            params.setdefault("random_state", self.random_state)
            fitted.append(make_recommender(alg, **params).fit(interactions))
        super().fit(interactions)
        for m in fitted:  # the same interactions give the same id maps; checked, not assumed
            if not (
                np.array_equal(m.user_ids_, self.user_ids_)
                and np.array_equal(m.item_ids_, self.item_ids_)
            ):
                raise ConfigError(f"blend member {m.algorithm} indexes users or items differently")
        self.members_ = fitted
        return self

    def _fit(self, x: sp.csr_matrix) -> None:
        """Nothing: the members are fitted in :meth:`fit` (each with its own weighting)."""

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        w = self._weights(len(self.members_))
        total = None
        for weight, m in zip(w, self.members_, strict=True):
            if weight == 0:
                continue
            mq = q
            if kind == "history":  # the blend's raw counts, in this member's weighting
                mq = q.copy()
                mq.data = transform(q.data.astype(np.float64), m.weighting)
            z = standardised(m._dense_scores(kind, mq))
            low = np.min(np.where(np.isfinite(z), z, np.inf), axis=1, keepdims=True)
            scored = np.isfinite(z)
            z = np.where(scored, z, np.where(np.isfinite(low), low, 0.0))
            part = weight * z
            if total is None:
                total, any_scored = part, scored
            else:
                total, any_scored = total + part, any_scored | scored
        if total is None:  # refused by _check_params; kept for weights set after fit
            raise ConfigError("a blend needs a positive weight on some member")
        return np.where(any_scored, total, -np.inf)

    def drop_users(self, user_ids: Any) -> int:
        """Erase users from the blend and from every member."""
        for m in self.members_:
            m.drop_users(user_ids)
        return super().drop_users(user_ids)

    def save(self, path: Any) -> Any:
        """Save the blend and its members (as ``member<i>.<array>``) in one folder, no pickles."""
        self._check_fitted()
        return _persist.save(self, path, nested=self.members_)

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], data: Any) -> Recommender:
        from cip.models.recommender import ALGORITHMS

        model = _persist.restore(cls, meta, data)
        model.members_ = [
            ALGORITHMS[sub_meta["algorithm"]]._from_saved(sub_meta, sub_data)
            for sub_meta, sub_data in _persist.nested(meta, data)
        ]
        return model
