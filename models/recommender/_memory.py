"""Neighbourhood and closed-form recommenders: item-kNN, EASE and the popularity baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from cip.models.recommender._base import Recommender
from cip.models.recommender._mf import _positive
from cip.profiles.errors import ConfigError

__all__ = ["EASERecommender", "ItemKNNRecommender", "PopularRecommender"]


class ItemKNNRecommender(Recommender):
    """Item-item nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004).

    Similarities come from ``implicit``'s ``CosineRecommender`` or
    ``BM25Recommender`` (K nearest neighbours per item). Cosine similarities can
    be shrunk towards 0 for rarely co-occurring items:
    ``s_ij = cos_ij * |x_i||x_j| / (|x_i||x_j| + shrinkage)``. A user's score for
    item ``j`` is ``sum_i w_ui s_ij``; items with no neighbour in the history are
    no candidates (they are backfilled from popular items).
    """

    algorithm: ClassVar[str] = "itemknn"
    _arrays: ClassVar[tuple[str, ...]] = ("similarity_",)

    def __init__(
        self,
        similarity: str = "cosine",
        K: int = 100,  # noqa: N803  (implicit's name)
        shrinkage: float = 0.0,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        weighting: str = "binary",
        num_threads: int = 0,
        random_state: int | None = 0,
    ) -> None:
        self.similarity = similarity
        self.K = K
        self.shrinkage = shrinkage
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.weighting = weighting
        self.num_threads = num_threads
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if self.similarity not in ("cosine", "bm25"):
            raise ConfigError(f"similarity must be 'cosine' or 'bm25', not {self.similarity!r}")
        _positive(self, "K", integer=True)
        _positive(self, "bm25_k1")
        if not (self.shrinkage >= 0 and 0 <= self.bm25_b <= 1):
            raise ConfigError("shrinkage must be >= 0 and bm25_b within [0, 1]")

    def _fit(self, x: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        if self.similarity == "bm25":
            weighted = bm25_weight(x.T, float(self.bm25_k1), float(self.bm25_b)).T
        else:
            weighted = normalize(x.T).T  # unit-length item columns: dot product = cosine
        model = ItemItemRecommender(K=int(self.K), num_threads=int(self.num_threads))
        model.fit(sp.csr_matrix(weighted, dtype=np.float64), show_progress=False)
        s = sp.csr_matrix(model.similarity, dtype=np.float32)
        if self.similarity == "cosine" and self.shrinkage > 0:
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
            coo = s.tocoo()
            nn = norms[coo.row] * norms[coo.col]
            s = sp.csr_matrix(
                (coo.data * nn / (nn + float(self.shrinkage)), (coo.row, coo.col)), shape=s.shape
            )
        s.eliminate_zeros()
        s.sort_indices()
        self.similarity_ = s

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        if kind == "users":
            m = self.user_items_[q] @ self.similarity_
        elif kind == "history":
            m = q @ self.similarity_
        else:
            m = self.similarity_[q]
        d = m.toarray().astype(np.float32)
        d[d <= 0] = -np.inf
        return d


class EASERecommender(Recommender):
    """EASE, the closed-form shallow autoencoder (Steck 2019, "Embarrassingly Shallow Autoencoders").

    ``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1`` and a zero
    diagonal; scores ``x_u B``. The dense item x item solve limits it to the
    ``max_items`` most popular items (the others are only backfilled); with
    ~10,000 items the fit needs about 1 GB and under a minute on 2 cores.
    """

    algorithm: ClassVar[str] = "ease"
    _arrays: ClassVar[tuple[str, ...]] = ("ease_items_", "B_")
    _limit_blas_threads: ClassVar[bool] = False  # the dense inverse wants every core

    def __init__(
        self,
        l2: float = 500.0,
        max_items: int = 10_000,
        weighting: str = "binary",
        random_state: int | None = 0,
    ) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.weighting = weighting
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        _positive(self, "l2")
        _positive(self, "max_items", integer=True)

    def _fit(self, x: sp.csr_matrix) -> None:
        pop = np.diff(x.tocsc().indptr)
        keep = np.sort(np.argsort(-pop, kind="stable")[: int(self.max_items)])
        xs = x[:, keep].astype(np.float64)
        g = (xs.T @ xs).toarray()
        g[np.diag_indices_from(g)] += float(self.l2)
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.ease_items_ = keep.astype(np.int64)
        self.B_ = b.astype(np.float32)

    def _pos(self) -> np.ndarray:
        if "pos" not in self._cache:
            pos = np.full(self.n_items_, -1, dtype=np.int64)
            pos[self.ease_items_] = np.arange(len(self.ease_items_))
            self._cache["pos"] = pos
        return self._cache["pos"]

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        if kind == "items":
            p = self._pos()[q]
            part = np.where((p >= 0)[:, None], self.B_[np.maximum(p, 0)], -np.inf)
        else:
            xq = self.user_items_[q] if kind == "users" else q
            part = np.asarray(xq[:, self.ease_items_] @ self.B_, dtype=np.float32)
        out = np.full((part.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        out[:, self.ease_items_] = part
        return out


class PopularRecommender(Recommender):
    """The popularity baseline: the items most users interacted with, for everyone.

    ``score`` is the share of training users with the item. Every honest
    comparison in CIP reports this baseline on the same split.
    """

    algorithm: ClassVar[str] = "popular"
    _popularity_is_model: ClassVar[bool] = True

    def __init__(self, weighting: str = "binary", random_state: int | None = 0) -> None:
        self.weighting = weighting
        self.random_state = random_state

    def _fit(self, x: sp.csr_matrix) -> None:
        """Nothing beyond the item popularity the base class keeps."""

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        """The popularity share of every item, the same row for every query (a blend member)."""
        rows = q.shape[0] if sp.issparse(q) else len(q)
        share = self.item_popularity_.astype(np.float64) / max(1, self.n_users_)
        return np.tile(share, (rows, 1))
