"""``similar`` (content blended with collaborative filtering) and ``upsell`` (similar, pricier).

Content vector of an item: TF-IDF of its title and description (word 1-2 grams,
sublinear tf; scikit-learn), plus one-hot category, brand and price band
(quantile bands of the catalogue's prices) columns weighted by
``category_weight``, ``brand_weight`` and ``price_weight``; rows are L2
normalised and the content similarity is their cosine. CF similarity is the
cosine of item columns of the person x item purchase matrix.

Blend per anchor item ``i`` with ``b_i`` buyers:
``S_ij = w_i * CF_ij + (1 - w_i) * content_ij`` with
``w_i = cf_weight * b_i / (b_i + cf_shrinkage)``: an item nobody bought yet
(``b_i = 0``) gets pure content neighbours, so new items have real
neighbours from day one, and well-sold items lean on behaviour. Each item keeps
its ``neighbours`` best, after an optional popularity prior: neighbour ``j``'s
score is multiplied by ``(1 + b_j) ** popularity_weight``. A request is scored from its context items (product
page, cart); without any, from the person's purchases.

``upsell``: the ``similar`` scores restricted (for every tier, fallbacks
included) to items priced at least ``1 + min_premium`` times the dearest
context item and at most ``max_ratio`` times it.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import numpy as np
import pandas as pd
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
from cip.models.recommender.blocks._catalog import Catalog
from cip.models.recommender.blocks._history import History
from cip.profiles.errors import ConfigError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

__all__ = ["SimilarBlock", "UpsellBlock", "content_matrix", "cosine_topk"]

#: Dense cells per chunk when multiplying similarity blocks.
_CHUNK_CELLS = 1 << 22


def _onehot(codes: np.ndarray, width: int) -> sp.csr_matrix:
    ok = codes >= 0
    return sp.csr_matrix(
        (np.ones(int(ok.sum())), (np.flatnonzero(ok), codes[ok])), shape=(len(codes), max(width, 1))
    )


def content_matrix(
    catalog: Catalog,
    category_weight: float = 0.5,
    brand_weight: float = 0.5,
    price_weight: float = 0.25,
    price_bands: int = 5,
) -> sp.csr_matrix:
    """Items x features: L2-normalised TF-IDF text, weighted category / brand / price band."""
    parts = []
    text = catalog.text
    if pd.Series(text, dtype=object).str.len().gt(0).any():
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, dtype=np.float32)
        with contextlib.suppress(ValueError):  # no token at all: no text part
            parts.append(vec.fit_transform(text))
    parts.append(category_weight * _onehot(catalog.category, len(catalog.categories)))
    parts.append(brand_weight * _onehot(catalog.brand, len(catalog.brands)))
    price = catalog.price
    band = np.full(len(price), -1, dtype=np.int64)
    known = np.isfinite(price)
    if known.sum() > 1:
        edges = np.unique(np.quantile(price[known], np.linspace(0, 1, price_bands + 1)[1:-1]))
        band[known] = np.searchsorted(edges, price[known], side="right")
    parts.append(price_weight * _onehot(band, price_bands))
    return normalize(sp.hstack(parts).tocsr().astype(np.float32))


def cosine_topk(x: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Items x items cosine of the L2-normalised rows of ``x``, top ``k`` per row, no diagonal."""
    n = x.shape[0]
    xt = x.T.tocsc()
    step = max(1, _CHUNK_CELLS // max(n, 1))
    blocks = []
    for start in range(0, n, step):  # chunks of rows, each a sparse product
        s = (x[start : start + step] @ xt).tocoo()
        off = s.row + start != s.col
        s = sp.csr_matrix((s.data[off], (s.row[off], s.col[off])), shape=s.shape)
        blocks.append(row_topk(s, k))
    return sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0))


class SimilarBlock(Block):
    """Items like the context items: CF and content cosine, blended by the anchor's sales."""

    name: ClassVar[str] = "similar"

    def __init__(
        self,
        cf_weight: float = 0.7,
        cf_shrinkage: float = 10.0,
        category_weight: float = 0.5,
        brand_weight: float = 0.5,
        price_weight: float = 0.25,
        neighbours: int = 200,
        popularity_weight: float = 0.0,
    ) -> None:
        self.cf_weight = cf_weight
        self.cf_shrinkage = cf_shrinkage
        self.category_weight = category_weight
        self.brand_weight = brand_weight
        self.price_weight = price_weight
        self.neighbours = neighbours
        self.popularity_weight = popularity_weight

    def _fit(self, history: History) -> None:
        if not 0 <= self.cf_weight <= 1:
            raise ConfigError(f"cf_weight must be within [0, 1], not {self.cf_weight!r}")
        positive("cf_shrinkage", self.cf_shrinkage)
        for p in ("category_weight", "brand_weight", "price_weight", "popularity_weight"):
            if not getattr(self, p) >= 0:
                raise ConfigError(f"{p} must be >= 0, not {getattr(self, p)!r}")
        cat = history.catalog
        content = cosine_topk(
            content_matrix(cat, self.category_weight, self.brand_weight, self.price_weight),
            self.neighbours,
        )
        bought = (history.counts > 0).astype(np.float32)
        buyers = np.asarray(bought.sum(axis=0)).ravel()
        cf = cosine_topk(normalize(bought.T.tocsr()), self.neighbours)
        w = self.cf_weight * buyers / (buyers + self.cf_shrinkage)
        blend = sp.diags(w) @ cf + sp.diags(1.0 - w) @ content
        if self.popularity_weight:
            blend = blend @ sp.diags((1.0 + buyers) ** self.popularity_weight)
        self.similarity_ = row_topk(blend.tocsr(), self.neighbours)
        self.cf_share_ = w

    def _context(self, q: Queries) -> sp.csr_matrix:
        """Context items; a request without any uses the person's purchases."""
        h = self.history_
        ctx = q.items.tocsr()
        empty = (np.diff(ctx.indptr) == 0) & (q.rows >= 0)
        if empty.any():
            rows = np.flatnonzero(empty)
            pick = sp.csr_matrix(
                (np.ones(len(rows)), (rows, q.rows[rows])), shape=(q.size, h.counts.shape[0])
            )
            ctx = (ctx + pick @ (h.counts > 0).astype(np.float64)).tocsr()
        return ctx

    def _context_one(self, r: Request) -> np.ndarray:
        """:meth:`_context` of one request: its items, else the person's purchases."""
        if len(r.items) or r.row < 0:
            return r.items
        return self.history_.purchased(r.row)

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """Summed neighbour scores of the context (the context items excluded)."""
        self._check_fitted()
        ctx = self._context_one(r)
        pos, s = sum_rows(self.similarity_, ctx)
        # a page's few items: one comparison each is cheaper than isin's sort
        few = len(ctx) <= 16
        keep = (pos[:, None] != ctx[None, :]).all(axis=1) if few else ~np.isin(pos, ctx)
        return pos[keep], s[keep]

    def scores(self, q: Queries) -> np.ndarray:
        self._check_fitted()
        ctx = self._context(q)
        out = dense_rows((ctx @ self.similarity_).tocsr())
        c = ctx.tocoo()
        out[c.row, c.col] = -np.inf
        return out


class UpsellBlock(SimilarBlock):
    """Similar items that cost more than the context items (see the module)."""

    name: ClassVar[str] = "upsell"

    def __init__(
        self,
        cf_weight: float = 0.7,
        cf_shrinkage: float = 10.0,
        category_weight: float = 0.5,
        brand_weight: float = 0.5,
        price_weight: float = 0.0,
        neighbours: int = 200,
        min_premium: float = 0.1,
        max_ratio: float | None = 5.0,
    ) -> None:
        super().__init__(
            cf_weight, cf_shrinkage, category_weight, brand_weight, price_weight, neighbours
        )
        self.min_premium = min_premium
        self.max_ratio = max_ratio

    def request_mask_one(self, r: Request) -> np.ndarray:
        """:meth:`request_mask` of one request."""
        h = self._check_fitted()
        price = h.catalog.price
        p = price[self._context_one(r)]
        p = p[np.isfinite(p)]
        anchor = float(p.max()) if len(p) else -np.inf
        lo = anchor * (1.0 + self.min_premium) if np.isfinite(anchor) else 0.0
        mask = np.isfinite(price) & (price > lo)
        if self.max_ratio is not None:
            hi = anchor * self.max_ratio if np.isfinite(anchor) else np.inf
            mask &= price <= hi
        return mask

    def request_mask(self, q: Queries) -> np.ndarray:
        h = self._check_fitted()
        ctx = self._context(q).tocoo()
        price = h.catalog.price
        anchor = np.full(q.size, -np.inf)
        p = np.where(np.isfinite(price[ctx.col]), price[ctx.col], -np.inf)
        np.maximum.at(anchor, ctx.row, p)
        lo = np.where(np.isfinite(anchor), anchor * (1.0 + self.min_premium), 0.0)[:, None]
        known = np.isfinite(price)[None, :]
        mask = known & (price[None, :] > lo)
        if self.max_ratio is not None:
            hi = np.where(np.isfinite(anchor), anchor * self.max_ratio, np.inf)[:, None]
            mask &= price[None, :] <= hi
        return mask
