"""``bought_together``: items that share baskets with the request's items, beyond chance.

From the orders x items 0/1 matrix ``B`` (baskets larger than ``max_basket``
skipped): co-counts ``C = B^T B``, item counts ``n_i`` and ``N`` baskets. The
expected co-count of ``i`` and ``j`` under independence is ``e = n_i n_j / N``.
``measure`` scores a pair with ``C_ij >= min_support``:

* ``lift``: shrunk lift ``(C_ij + shrinkage) / (e_ij + shrinkage)`` (additive
  smoothing: rare pairs are pulled towards 1, the no-association value);
* ``llr``: Dunning's log-likelihood ratio G^2 of the 2x2 table (Dunning 1993,
  as in Mahout's item similarity), kept only for positive association;
* ``jaccard``: ``C_ij / (n_i + n_j - C_ij)``;
* ``count``: raw co-count (the baseline the others must beat).

Each item keeps its ``neighbours`` best partners. A request's score for ``j``
is the sum over its context items ``i`` of ``S_ij``; context items are never
recommended.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from cip.models.recommender.blocks._base import (
    Block,
    Queries,
    Request,
    dense_rows,
    positive,
    row_topk,
    sum_rows,
)
from cip.models.recommender.blocks._history import History
from cip.profiles.errors import ConfigError

__all__ = ["MEASURES", "BoughtTogetherBlock", "pair_scores"]

MEASURES = ("lift", "llr", "jaccard", "count")


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.maximum(x, 1e-300)), 0.0)


def _llr(k11: np.ndarray, k12: np.ndarray, k21: np.ndarray, k22: np.ndarray) -> np.ndarray:
    """G^2 = 2 (H(rows) + H(cols) - H(matrix)) with H the unnormalised entropy (Mahout's form)."""

    def ent(*ks: np.ndarray) -> np.ndarray:
        return _xlogx(sum(ks)) - sum(_xlogx(k) for k in ks)

    row = ent(k11 + k12, k21 + k22)
    col = ent(k11 + k21, k12 + k22)
    mat = ent(k11, k12, k21, k22)
    return np.maximum(2.0 * (row + col - mat), 0.0)


def pair_scores(
    co: sp.coo_matrix, n_item: np.ndarray, n_baskets: float, measure: str, shrinkage: float
) -> np.ndarray:
    """The ``measure`` of each stored pair of ``co`` (co-counts, diagonal removed)."""
    c = co.data.astype(np.float64)
    ni, nj = n_item[co.row], n_item[co.col]
    if measure == "count":
        return c
    if measure == "jaccard":
        return c / np.maximum(ni + nj - c, 1.0)
    expected = ni * nj / n_baskets
    if measure == "lift":
        return (c + shrinkage) / (expected + shrinkage)
    g2 = _llr(c, ni - c, nj - c, n_baskets - ni - nj + c)
    return np.where(c > expected, g2, 0.0)


class BoughtTogetherBlock(Block):
    """Co-purchase neighbours scored by a significance-aware measure (see the module)."""

    name: ClassVar[str] = "bought_together"

    def __init__(
        self,
        measure: str = "lift",
        shrinkage: float = 5.0,
        min_support: int = 2,
        max_basket: int = 100,
        neighbours: int = 200,
    ) -> None:
        self.measure = measure
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.max_basket = max_basket
        self.neighbours = neighbours

    def _fit(self, history: History) -> None:
        if self.measure not in MEASURES:
            raise ConfigError(f"measure must be one of {', '.join(MEASURES)}, not {self.measure!r}")
        positive("shrinkage", self.shrinkage)
        for p in ("min_support", "max_basket", "neighbours"):
            v = getattr(self, p)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{p} must be an integer >= 1, not {v!r}")
        b = history.baskets
        size = np.diff(b.indptr)
        b = b[(size >= 1) & (size <= self.max_basket)]
        n_item = np.asarray(b.sum(axis=0)).ravel()
        co = (b.T @ b).tocoo()
        keep = (co.row != co.col) & (co.data >= self.min_support)
        co = sp.coo_matrix((co.data[keep], (co.row[keep], co.col[keep])), shape=co.shape)
        s = pair_scores(co, n_item, float(max(b.shape[0], 1)), self.measure, self.shrinkage)
        pos = s > 0
        sim = sp.csr_matrix((s[pos], (co.row[pos], co.col[pos])), shape=co.shape)
        self.similarity_ = row_topk(sim, self.neighbours)
        self.item_baskets_ = n_item

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """Summed neighbour scores of the context items (the context items excluded)."""
        self._check_fitted()
        pos, s = sum_rows(self.similarity_, r.items)
        keep = ~np.isin(pos, r.items)
        return pos[keep], s[keep]

    def scores(self, q: Queries) -> np.ndarray:
        self._check_fitted()
        out = dense_rows((q.items @ self.similarity_).tocsr())
        ctx = q.items.tocoo()
        out[ctx.row, ctx.col] = -np.inf
        return out
