"""``buy_again``: the person's own repeat purchases, due when the item's cycle comes round.

For a person ``u`` and an item ``i`` they bought (the only candidates):

* frequency ``f`` = their orders holding ``i``, each weighted
  ``0.5 ** (age / half_life_days)`` (``None``: plain counts, the P-TopFreq
  baseline of the next-basket literature: Li et al., "A Next Basket
  Recommendation Reality Check", TOIS 2023);
* repurchase interval ``I``: the item's median gap between one person's
  consecutive orders of it (gaps under one day ignored), shrunk in log space
  towards the median over all items with ``interval_prior`` pseudo-gaps, then
  towards the person's own mean gap for the item, weighted by their ``n - 1`` gaps;
* timing ``g = exp(-(ln(t / I))^2 / (2 sigma^2))`` with ``t`` the days from
  their last purchase of ``i`` to the request: 1 when the cycle is due (an item
  bought every 30 days peaks near day 30), smaller before and after;
* repurchase rate ``r``: share of the item's buyers who bought it twice or more,
  smoothed with ``rate_prior`` pseudo-buyers at the overall rate.

Score ``f * (1 + timing_weight * g) * r ** rate_weight``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender.blocks._base import Block, Queries, Request, positive
from cip.models.recommender.blocks._history import History
from cip.models.recommender.blocks._many import Sparse
from cip.profiles.errors import ConfigError

__all__ = ["BuyAgainBlock"]


class BuyAgainBlock(Block):
    """Repeat purchases ranked by decayed frequency, repurchase timing and repurchase rate."""

    name: ClassVar[str] = "buy_again"

    def __init__(
        self,
        half_life_days: float | None = 180.0,
        timing_weight: float = 1.0,
        sigma: float = 0.75,
        interval_prior: float = 5.0,
        rate_weight: float = 0.5,
        rate_prior: float = 10.0,
    ) -> None:
        self.half_life_days = half_life_days
        self.timing_weight = timing_weight
        self.sigma = sigma
        self.interval_prior = interval_prior
        self.rate_weight = rate_weight
        self.rate_prior = rate_prior

    def _fit(self, history: History) -> None:
        positive("half_life_days", self.half_life_days, allow_none=True)
        for p in ("sigma", "interval_prior", "rate_prior"):
            positive(p, getattr(self, p))
        for p in ("timing_weight", "rate_weight"):
            v = getattr(self, p)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"{p} must be a number >= 0, not {v!r}")
        p = history.purchases.sort_values(["u", "i", "age"], ascending=[True, True, False])
        u, i, age = p["u"].to_numpy(), p["i"].to_numpy(), p["age"].to_numpy()
        w = np.ones(len(age)) if self.half_life_days is None else 0.5 ** (age / self.half_life_days)
        same = np.zeros(len(u), bool)
        same[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1])
        gap = np.zeros(len(u))
        gap[1:] = age[:-1] - age[1:]
        is_gap = same & (gap >= 1.0)
        n_items = history.catalog.size
        gaps = pd.DataFrame({"i": i[is_gap], "g": np.log(gap[is_gap])})
        global_log = float(np.median(gaps["g"])) if len(gaps) else np.log(30.0)
        med = gaps.groupby("i")["g"].agg(["median", "size"])
        item_log = np.full(n_items, global_log)
        n_gaps = np.zeros(n_items)
        n_gaps[med.index.to_numpy()] = med["size"].to_numpy()
        a = self.interval_prior
        item_log[med.index.to_numpy()] = (
            med["size"].to_numpy() * med["median"].to_numpy() + a * global_log
        ) / (med["size"].to_numpy() + a)
        pair = pd.DataFrame({"u": u, "i": i, "age": age, "w": w}).groupby(["u", "i"], sort=True)
        agg = pair.agg(n=("age", "size"), first=("age", "max"), last=("age", "min"), f=("w", "sum"))
        pu = agg.index.get_level_values(0).to_numpy()
        pi = agg.index.get_level_values(1).to_numpy()
        n = agg["n"].to_numpy(np.float64)
        span = agg["first"].to_numpy() - agg["last"].to_numpy()
        own = np.log(np.maximum(span / np.maximum(n - 1, 1), 1.0))
        k = np.where(span >= 1.0, n - 1, 0.0)
        log_interval = (k * own + a * item_log[pi]) / (k + a)
        buyers = np.bincount(pi, minlength=n_items).astype(np.float64)
        repeaters = np.bincount(pi, weights=(n >= 2).astype(np.float64), minlength=n_items)
        overall = repeaters.sum() / max(buyers.sum(), 1.0)
        rate = (repeaters + self.rate_prior * overall) / (buyers + self.rate_prior)
        indptr = np.searchsorted(pu, np.arange(len(history.users) + 1)).astype(np.int64)
        shape = (len(history.users), n_items)
        self.freq_ = sp.csr_matrix((agg["f"].to_numpy(), pi, indptr), shape=shape)
        self.last_ = sp.csr_matrix((agg["last"].to_numpy(), pi, indptr), shape=shape)
        self.log_interval_ = sp.csr_matrix((log_interval, pi, indptr), shape=shape)
        self.item_interval_days_ = np.exp(item_log)
        self.repurchase_rate_ = rate

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """The person's bought items and their scores (none for an unknown person)."""
        self._check_fitted()
        if r.row < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        a, b = self.freq_.indptr[r.row], self.freq_.indptr[r.row + 1]
        col = self.freq_.indices[a:b].astype(np.int64)
        t = np.maximum(self.last_.data[a:b] + r.at, 0.5)
        g = np.exp(-0.5 * ((np.log(t) - self.log_interval_.data[a:b]) / self.sigma) ** 2)
        s = (
            self.freq_.data[a:b]
            * (1.0 + self.timing_weight * g)
            * self.repurchase_rate_[col] ** self.rate_weight
        )
        return col, s

    def candidates_many(self, q: Queries) -> Sparse:
        """:meth:`candidates` of every request at once (the same arithmetic, element-wise)."""
        if type(self).candidates is not BuyAgainBlock.candidates:  # a subclass ranks differently
            return super().candidates_many(q)
        self._check_fitted()
        ip = self.freq_.indptr
        rows = np.maximum(q.rows, 0)
        lens = np.where(q.rows >= 0, ip[rows + 1] - ip[rows], 0).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(lens)])
        idx = np.repeat(ip[rows] - indptr[:-1], lens) + np.arange(indptr[-1])
        col = self.freq_.indices[idx].astype(np.int64)
        t = np.maximum(self.last_.data[idx] + np.repeat(q.at, lens), 0.5)
        g = np.exp(-0.5 * ((np.log(t) - self.log_interval_.data[idx]) / self.sigma) ** 2)
        s = (
            self.freq_.data[idx]
            * (1.0 + self.timing_weight * g)
            * self.repurchase_rate_[col] ** self.rate_weight
        )
        return Sparse(self.name, indptr, col, s)

    def scores(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        out = np.full((q.size, h.catalog.size), -np.inf)
        known = np.flatnonzero(q.rows >= 0)
        if len(known) == 0:
            return out
        rows = q.rows[known]
        f = self.freq_[rows].tocoo()
        last = self.last_[rows].tocoo().data
        log_i = self.log_interval_[rows].tocoo().data
        t = np.maximum(last + q.at[known][f.row], 0.5)
        g = np.exp(-0.5 * ((np.log(t) - log_i) / self.sigma) ** 2)
        s = (
            f.data
            * (1.0 + self.timing_weight * g)
            * self.repurchase_rate_[f.col] ** self.rate_weight
        )
        out[known[f.row], f.col] = s
        return out
