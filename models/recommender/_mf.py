"""Matrix-factorisation recommenders on top of ``implicit`` (CPU): ALS and BPR.

Scoring uses ``implicit.cpu.topk`` (a threaded dot-product + heap top-k with
per-query exclusion), which measured faster than numpy ``argpartition`` for one
user and for batches alike (see ``benchmarks/recommender_speed.py``).

The fitted factors are rounded once (at fit and at load) to a power-of-two grid,
see :func:`on_grid`: every float64 dot product of a user and an item factor row is
then an exact multiple of one power of two, computed without any rounding, so a
one-row product (``/recommend``) and a many-row product (a campaign chunk) give
the same bits whatever order the BLAS kernel sums in (:meth:`exact_scores`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from cip.models.recommender import _rank
from cip.models.recommender._base import Recommender
from cip.profiles.errors import ConfigError
from implicit.cpu.topk import topk

__all__ = ["GRID_BITS", "ALSRecommender", "BPRRecommender", "on_grid"]

GRID_BITS = 21
"""Largest integer grid step count of a factor: ``|f| * 2^s <= 2^21`` (and exact in float32)."""


def on_grid(a: np.ndarray, dim: int | None = None) -> np.ndarray:
    """``a`` rounded to ``q * 2^-s`` with integer ``|q| <= 2^b`` and one ``s`` for the array.

    ``b`` is :data:`GRID_BITS` (fewer for very wide factors: ``dim * 2^(2b) < 2^53``
    with ``dim`` the factor count, by default ``a``'s last axis), so that the product
    of two grid arrays and every partial sum of a dot product are integers times
    ``2^-(s_u + s_i)`` below ``2^53`` in magnitude: exact in float64 in any summation
    order. Returned as float32 (every grid value fits its 24-bit mantissa); the
    rounding moves a value by at most ``2^-b`` of the array's largest magnitude.
    Idempotent; non-finite values stay as they are; an all-zero array stays zero.
    """
    a = np.atleast_1d(np.asarray(a))
    dim = int(a.shape[-1]) if dim is None else int(dim)
    bits = min(GRID_BITS, (52 - int(np.ceil(np.log2(max(dim, 1))))) // 2)
    if bits < 1:
        raise ValueError(f"{dim} factors are too many for exact float64 scores")
    fin = np.isfinite(a)
    top = float(np.max(np.abs(a), where=fin, initial=0.0))
    if top == 0.0:
        return np.asarray(a, dtype=np.float32)
    _, e = np.frexp(top)  # top < 2^e
    scale = bits - int(e)
    out = np.empty(a.shape, dtype=np.float32)
    flat, dst = a.reshape(-1, a.shape[-1]), out.reshape(-1, a.shape[-1])
    step = 1 << 16  # rows per float64 temporary (bounded memory for millions of users)
    for i in range(0, flat.shape[0], step):
        q = np.rint(np.ldexp(flat[i : i + step].astype(np.float64), scale))
        dst[i : i + step] = np.ldexp(q, -scale)
    return out


class _MatrixFactorization(Recommender):
    """Shared scoring for models with ``user_factors_`` and ``item_factors_``."""

    _arrays: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_")
    _user_arrays: ClassVar[tuple[str, ...]] = ("user_factors_",)
    num_threads: int

    def _threads(self, batch: int) -> int:
        return 1 if batch < 32 else int(self.num_threads)

    def _normed_items(self) -> np.ndarray:
        if "normed" not in self._cache:
            y = self.item_factors_
            norm = np.linalg.norm(y, axis=1)
            norm[norm == 0] = 1.0
            self._cache["normed"] = np.ascontiguousarray(y / norm[:, None], dtype=np.float32)
        return self._cache["normed"]

    def _gram(self) -> np.ndarray:
        """Y^T Y of the item factors (cached), the shared part of every fold-in."""
        if "gram" not in self._cache:
            y = self.item_factors_.astype(np.float64)
            self._cache["gram"] = y.T @ y
        return self._cache["gram"]

    def _fold_in(self, hist: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _to_grid(self) -> None:
        """Round the fitted factors to the grid of :func:`on_grid` (fit and load)."""
        dim = int(self.item_factors_.shape[1])
        self.user_factors_ = on_grid(self.user_factors_, dim)
        self.item_factors_ = on_grid(self.item_factors_, dim)
        self._cache.pop("normed", None)
        self._cache.pop("gram", None)
        self._cache.pop("items64", None)

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], data: Any) -> Recommender:
        model = super()._from_saved(meta, data)
        model._to_grid()  # a model saved before the grid existed is rounded now (idempotent)
        return model

    def exact_scores(self, rows: np.ndarray) -> np.ndarray:
        """Float64 scores ``user_factors_[rows] @ item_factors_.T``, computed exactly.

        The factors are on the grid of :func:`on_grid`, so every product and partial
        sum is exact: the result does not depend on how many rows are scored at once.
        """
        items = self._cache.get("items64")
        if items is None:
            items = self._cache["items64"] = np.ascontiguousarray(
                self.item_factors_.T, dtype=np.float64
            )
        return np.asarray(self.user_factors_[rows], dtype=np.float64) @ items

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        """Every item's score (float64), for a caller that needs all of them (a blend).

        The same scores :meth:`_personal_topk` ranks by: user factors (``users``),
        the folded-in history (``history``), cosine of the item factors (``items``).
        """
        if kind == "users":
            return self.exact_scores(np.asarray(q))
        if kind == "items":
            normed = self._normed_items().astype(np.float64)
            return normed[np.asarray(q)] @ normed.T
        return self._fold_in(q).astype(np.float64) @ self.item_factors_.T.astype(np.float64)

    def _personal_topk(
        self, kind: str, q: Any, k: int, seen: sp.csr_matrix | None, cand: _rank.Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        if kind == "items":
            targets = self._normed_items()
            queries = targets[q]
        else:
            targets = self.item_factors_
            queries = self.user_factors_[q] if kind == "users" else self._fold_in(q)
        if cand.known is not None:
            targets = targets[cand.known]
        targets = np.ascontiguousarray(targets, dtype=np.float32)
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, targets.shape[0])
        if len(queries) == 1 and seen is not None and 0 < seen.nnz <= 512:
            # one request: asking for k + |seen| and dropping the seen ones in numpy is
            # cheaper than implicit's per-query filter (measured 1.56 vs 1.83 ms, 100 k items)
            ids, scores = topk(targets, queries, min(k + seen.nnz, targets.shape[0]), num_threads=1)
            keep = ~np.isin(ids[0], seen.indices)
            ids, scores = ids[0][keep][:k], scores[0][keep][:k]
            pad = k - len(ids)
            ids = np.concatenate([ids, np.zeros(pad, ids.dtype)])[None, :]
            scores = np.concatenate([scores, np.full(pad, -np.inf, np.float32)])[None, :]
            return ids.astype(np.int64), scores
        ids, scores = topk(
            targets,
            queries,
            k,
            filter_query_items=seen if seen is not None and seen.nnz else None,
            num_threads=self._threads(len(queries)),
        )
        return ids.astype(np.int64), scores


class ALSRecommender(_MatrixFactorization):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008; conjugate-gradient solver, Takacs 2011).

    Confidence ``c_ui = alpha * w_ui`` on the weighted interactions; unobserved
    pairs have preference 0 and confidence 1 (``implicit``'s convention).

    Args:
        factors: latent dimensions.
        regularization: L2 penalty lambda.
        alpha: confidence scaling of the interaction weights.
        iterations: ALS sweeps.
        weighting: ``binary``, ``log`` (log 1 + w) or ``raw`` weights.
        use_cg: conjugate-gradient solver (faster) instead of Cholesky.
        num_threads: threads for fitting and batch scoring (0: all cores).
        random_state: seed of the factor initialisation.
    """

    algorithm: ClassVar[str] = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 20.0,
        alpha: float = 5.0,
        iterations: int = 15,
        weighting: str = "log",
        use_cg: bool = True,
        num_threads: int = 0,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        _positive(self, "factors", "iterations", integer=True)
        _positive(self, "alpha")
        if not self.regularization >= 0:
            raise ConfigError(f"regularization must be >= 0, not {self.regularization!r}")

    def _fit(self, x: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            use_cg=bool(self.use_cg),
            num_threads=int(self.num_threads),
            random_state=self.random_state,
        )
        model.fit(x, show_progress=False)
        self.user_factors_ = model.user_factors
        self.item_factors_ = model.item_factors
        self._to_grid()

    def _fold_in(self, hist: sp.csr_matrix) -> np.ndarray:
        """Exact least-squares user factor for one history row (``recalculate_user``).

        ``u = (Y^T Y + Y_h^T (C_h - I) Y_h + lambda I)^-1 Y_h^T c_h`` with
        ``c_h = alpha * w_h`` over the items ``h`` of the history.
        """
        y = self.item_factors_[hist.indices].astype(np.float64)
        c = float(self.alpha) * hist.data.astype(np.float64)
        a = self._gram() + y.T @ ((c - 1.0)[:, None] * y)
        a[np.diag_indices_from(a)] += float(self.regularization)
        return on_grid(np.linalg.solve(a, y.T @ c)[None, :])


class BPRRecommender(_MatrixFactorization):
    """Bayesian Personalised Ranking (Rendle et al. 2009) with ``implicit``'s SGD.

    ``implicit`` appends an item-bias column to the factors (users carry a
    constant 1 there). Fold-in for an item list is a ridge projection of the
    history indicator onto the item factors: ``u = (Y^T Y + lambda I)^-1 Y_h^T w_h``
    with ``lambda = fold_in_regularization * trace(Y^T Y) / dim``.
    """

    algorithm: ClassVar[str] = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        weighting: str = "binary",
        fold_in_regularization: float = 0.1,
        num_threads: int = 0,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.weighting = weighting
        self.fold_in_regularization = fold_in_regularization
        self.num_threads = num_threads
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        _positive(self, "factors", "iterations", integer=True)
        _positive(self, "learning_rate", "fold_in_regularization")
        if not self.regularization >= 0:
            raise ConfigError(f"regularization must be >= 0, not {self.regularization!r}")

    def _fit(self, x: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            num_threads=int(self.num_threads),
            random_state=self.random_state,
        )
        model.fit(x, show_progress=False)
        self.user_factors_ = model.user_factors
        self.item_factors_ = model.item_factors
        self._to_grid()

    def _fold_in(self, hist: sp.csr_matrix) -> np.ndarray:
        g = self._gram().copy()
        lam = float(self.fold_in_regularization) * np.trace(g) / g.shape[0]
        g[np.diag_indices_from(g)] += lam
        y = self.item_factors_[hist.indices].astype(np.float64)
        return on_grid(np.linalg.solve(g, y.T @ hist.data.astype(np.float64))[None, :])


def _positive(model: Any, *names: str, integer: bool = False) -> None:
    for name in names:
        v = getattr(model, name)
        ok = isinstance(v, (int, np.integer) if integer else (int, float, np.integer, np.floating))
        if isinstance(v, bool) or not ok or not v > 0:
            kind = "a positive integer" if integer else "a positive number"
            raise ConfigError(f"{name} must be {kind}, not {v!r}")
