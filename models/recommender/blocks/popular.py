"""``popular``, ``trending`` and ``recently_viewed``: blocks that need no personal model.

``popular``: buyers' orders per item, each weighted ``0.5 ** (age / half_life_days)``
(time-decayed popularity); restricted to the request's category (or the
categories of its context items) when it has one.

``trending``: items selling faster now than usual. ``S`` is the decayed count
with the short half-life, ``L`` with the long one; ``E = L * short / long`` is
what ``S`` would be at a steady rate, and the score is the smoothed growth
``(S + prior) / (E + prior)`` over items with ``S`` above ``min_recent``
(per category like ``popular``).

``recently_viewed``: the person's viewed items (events before ``as_of``) and the
request's context items, most recent first (score ``1 / (1 + days since the view)``;
context items count as viewed now, later ones first).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from cip.models.recommender.blocks._base import Block, Queries, Request, positive
from cip.models.recommender.blocks._history import History

__all__ = [
    "PopularBlock",
    "RecentlyViewedBlock",
    "TrendingBlock",
    "decayed_counts",
    "in_categories",
]


def decayed_counts(history: History, half_life_days: float | None) -> np.ndarray:
    """Orders per item, each weighted by ``0.5 ** (age / half_life_days)`` (``None``: 1)."""
    w = (
        np.ones(history.baskets.shape[0])
        if half_life_days is None
        else np.power(0.5, history.basket_age / half_life_days)
    )
    return np.asarray(history.baskets.T @ w).ravel()


def in_categories(history: History, q: Queries) -> np.ndarray | None:
    """(b, n) mask of items in each request's category or its context items' categories.

    ``None`` when no request has a category; a request without one allows every item.
    """
    item_cats = history.catalog.category_matrix
    ncat = item_cats.shape[1]
    wanted = (q.items @ item_cats).tocsr()
    has = q.category >= 0
    if has.any():
        extra = sp.csr_matrix(
            (np.ones(int(has.sum())), (np.flatnonzero(has), q.category[has])), shape=(q.size, ncat)
        )
        wanted = (wanted + extra).tocsr()
    if wanted.nnz == 0:
        return None
    allowed = np.asarray((wanted @ item_cats.T).todense()) > 0
    none = np.diff(wanted.indptr) == 0
    allowed[none] = True
    return allowed


class PopularBlock(Block):
    """Time-decayed best sellers, per category when the request has one."""

    name: ClassVar[str] = "popular"
    fallbacks: ClassVar[tuple[str, ...]] = ("popular", "catalogue")

    def __init__(self, half_life_days: float | None = 90.0) -> None:
        self.half_life_days = half_life_days

    def _fit(self, history: History) -> None:
        positive("half_life_days", self.half_life_days, allow_none=True)
        self.popularity_ = decayed_counts(history, self.half_life_days)
        self.__dict__.pop("_candidates", None)

    global_ranking: ClassVar[bool] = True

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """Every item sold, with its decayed count (the caller restricts the categories)."""
        self._check_fitted()
        got = self.__dict__.get("_candidates")  # request-independent: built once
        if got is None:
            pos = np.flatnonzero(self.popularity_ > 0)
            got = self._candidates = (pos, self.popularity_[pos])
        return got

    def scores(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        s = np.where(self.popularity_ > 0, self.popularity_, -np.inf)
        out = np.broadcast_to(s, (q.size, h.catalog.size)).copy()
        cats = in_categories(h, q)
        if cats is not None:
            out[~cats] = -np.inf
        return out


class TrendingBlock(Block):
    """Items whose recent sales outpace their usual rate (smoothed growth ratio)."""

    name: ClassVar[str] = "trending"

    def __init__(
        self,
        short_half_life_days: float = 7.0,
        long_half_life_days: float = 90.0,
        prior: float = 1.0,
        min_recent: float = 1.0,
    ) -> None:
        self.short_half_life_days = short_half_life_days
        self.long_half_life_days = long_half_life_days
        self.prior = prior
        self.min_recent = min_recent

    def _fit(self, history: History) -> None:
        for p in ("short_half_life_days", "long_half_life_days", "prior"):
            positive(p, getattr(self, p))
        short = decayed_counts(history, self.short_half_life_days)
        long = decayed_counts(history, self.long_half_life_days)
        expected = long * self.short_half_life_days / self.long_half_life_days
        growth = (short + self.prior) / (expected + self.prior)
        self.trend_ = np.where(short >= self.min_recent, growth, -np.inf)
        self.__dict__.pop("_candidates", None)

    global_ranking: ClassVar[bool] = True

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """Every trending item, with its growth (the caller restricts the categories)."""
        self._check_fitted()
        got = self.__dict__.get("_candidates")  # request-independent: built once
        if got is None:
            pos = np.flatnonzero(np.isfinite(self.trend_))
            got = self._candidates = (pos, self.trend_[pos])
        return got

    def scores(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        out = np.broadcast_to(self.trend_, (q.size, h.catalog.size)).copy()
        cats = in_categories(h, q)
        if cats is not None:
            out[~cats] = -np.inf
        return out


class RecentlyViewedBlock(Block):
    """The person's last viewed items and the request's session items, newest first."""

    name: ClassVar[str] = "recently_viewed"
    excludes_context: ClassVar[bool] = False

    def __init__(self, max_age_days: float | None = 90.0) -> None:
        self.max_age_days = max_age_days

    def _fit(self, history: History) -> None:
        positive("max_age_days", self.max_age_days, allow_none=True)

    def scores(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        out = np.full((q.size, h.catalog.size), -np.inf)
        known = np.flatnonzero(q.rows >= 0)
        if h.views is not None and len(known):
            v = h.views[q.rows[known]].tocoo()  # data: age in days + 1
            age = v.data - 1.0 + q.at[known][v.row]
            ok = np.ones(len(age), bool) if self.max_age_days is None else age <= self.max_age_days
            out[known[v.row[ok]], v.col[ok]] = 1.0 / (1.0 + age[ok])
        ctx = q.item_order.tocoo()  # session items: viewed "now", the latest highest
        if ctx.nnz:
            n_ctx = np.diff(q.item_order.indptr)[ctx.row]
            out[ctx.row, ctx.col] = 1.0 + ctx.data / (n_ctx + 1.0)
        return out
