"""``personal``: the CF champion (any :class:`models.recommender.Recommender`) as a block.

The model's scores for the person over every item it knows are shifted per
request to be ``>= 0`` (``s - min``; order unchanged) so that boosts multiply
them consistently, then the rules and fallbacks apply like for every block.
Without a model, the block fits ``algorithm`` on the history's purchases
(distinct orders per person and item as the weight).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from cip.models.recommender import Recommender, make_recommender
from cip.models.recommender._base import one_blas_thread
from cip.models.recommender._data import lookup
from cip.models.recommender.blocks._base import Block, Queries, Request
from cip.models.recommender.blocks._history import History
from cip.models.recommender.blocks._many import Dense

__all__ = ["PersonalBlock"]


class PersonalBlock(Block):
    """A collaborative-filtering recommender's personal scores, under the block rules."""

    name: ClassVar[str] = "personal"

    def __init__(
        self,
        model: Recommender | None = None,
        algorithm: str = "als",
        params: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.algorithm = algorithm
        self.params = params

    def _fit(self, history: History) -> None:
        model = self.model
        if model is None:
            c = history.counts.tocoo()
            inter = pd.DataFrame(
                {
                    "user_id": history.users.to_numpy()[c.row],
                    "item_id": history.catalog.ids[c.col],
                    "weight": c.data,
                }
            )
            model = make_recommender(self.algorithm, **(self.params or {})).fit(inter)
        self.model_ = model
        pos = history.catalog.positions(model.item_ids_.astype(str))
        self.model_cols_ = np.flatnonzero(pos >= 0)
        self.catalog_pos_ = pos[pos >= 0]

    def _user_scores(self, rows: np.ndarray) -> np.ndarray:
        m = self.model_
        if hasattr(m, "exact_scores"):
            return m.exact_scores(rows)
        with one_blas_thread():
            return np.asarray(m._dense_scores("users", rows), dtype=np.float64)

    def _model_rows(self) -> np.ndarray:
        """The model's row of every history row (``-1``: unknown to the model), once."""
        rows = self.__dict__.get("_model_rows_")
        if rows is None:
            h = self._check_fitted()
            users = h.users.to_numpy()
            rows = lookup(self.model_._user_index(), self.model_.user_kind_, users)
            rows = self._model_rows_ = np.asarray(rows, dtype=np.int64)
        return rows

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """The person's model scores over the items it knows (none for an unknown person)."""
        self._check_fitted()
        mrow = -1 if r.row < 0 else int(self._model_rows()[r.row])
        if mrow < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        s = self._user_scores(np.array([mrow]))[0]
        if len(self.model_cols_) != len(s):
            s = s[self.model_cols_]
        finite = np.isfinite(s)
        if finite.all():  # the usual case: no masks to apply (same values)
            return self.catalog_pos_, s - s.min()
        if not finite.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        s = s[finite] - s[finite].min()
        return self.catalog_pos_[finite], s

    def candidates_many(self, q: Queries) -> Dense:
        """:meth:`candidates` of every request as dense rows.

        A matrix-factorisation model is scored with one product for all the rows
        (:meth:`~cip.models.recommender._mf._MatrixFactorization.exact_scores`: exact,
        so the same bits as the one-row product of a single request); other models
        one person at a time through :meth:`candidates`.
        """
        if type(self).candidates is not PersonalBlock.candidates:  # a subclass ranks differently
            return super().candidates_many(q)
        h = self._check_fitted()
        mrows = self._model_rows()
        m = self.model_
        if hasattr(m, "exact_scores"):
            mr = np.where(q.rows >= 0, mrows[np.maximum(q.rows, 0)], -1)
            known = mr >= 0
            cols = None if len(self.model_cols_) == m.item_factors_.shape[0] else self.model_cols_
            with one_blas_thread():  # as in the service's workers; forked workers do not fight
                raw = m.exact_scores(mr[known] if not known.all() else mr)
            raw = raw if cols is None else raw[:, cols]
            if known.all():
                s = raw
            else:
                s = np.zeros((q.size, len(self.model_cols_)))
                s[known] = raw
            unknown = ~known  # (zero rows) set to -inf below: no candidate
            # the shift of candidates() for all rows at once (element-wise: same bits)
            if np.isfinite(s).all():
                s -= s.min(axis=1, keepdims=True)
            else:
                finite = np.isfinite(s)
                low = np.min(np.where(finite, s, np.inf), axis=1, keepdims=True)
                s = np.where(finite, s - low, -np.inf)
            s[unknown] = -np.inf
            return Dense(self.name, s, self.catalog_pos_)
        out = np.full((q.size, h.catalog.size), -np.inf)
        empty = np.zeros(0, dtype=np.int64)
        for i, row in enumerate(q.rows.tolist()):
            if row < 0 or mrows[row] < 0:
                continue
            pos, s = self.candidates(Request(row, empty, empty, float(q.at[i]), -1))
            out[i, pos] = s
        return Dense(self.name, out)

    def scores(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        out = np.full((q.size, h.catalog.size), -np.inf)
        users = h.users.to_numpy()[np.maximum(q.rows, 0)]
        mrow = lookup(self.model_._user_index(), self.model_.user_kind_, users)
        mrow[q.rows < 0] = -1
        known = np.flatnonzero(mrow >= 0)
        if len(known) == 0:
            return out
        s = self._user_scores(mrow[known])[:, self.model_cols_]
        s = np.where(np.isfinite(s), s, np.nan)
        low = np.nanmin(np.where(np.isnan(s), np.inf, s), axis=1, keepdims=True)
        s = np.where(np.isnan(s), -np.inf, s - low)
        out[np.ix_(known, self.catalog_pos_)] = s
        return out
