"""The block interface: fitted on a :class:`History`, scoring a batch of requests densely."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from cip.models.recommender.blocks._history import History
from cip.profiles.errors import ConfigError, NotFoundError

__all__ = ["Block", "Queries", "Request", "dense_rows", "positive", "row_topk", "sum_rows"]


@dataclass(eq=False)
class Queries:
    """A batch of requests in positions.

    Attributes:
        rows: history row per request (``-1``: nobody known).
        items: the request's context items (product page, cart, session), as a
            requests x items 0/1 CSR matrix (session order in ``item_order``).
        item_order: same structure as ``items``; 1 for the oldest context item, up to
            the number of items for the most recent one.
        at: days from ``as_of`` to the request time, per request (>= 0).
        category: category code per request (``-1``: none).
    """

    rows: np.ndarray
    items: sp.csr_matrix
    item_order: sp.csr_matrix
    at: np.ndarray
    category: np.ndarray

    @property
    def size(self) -> int:
        return len(self.rows)


@dataclass(eq=False)
class Request:
    """One request in positions (the single-request path; see :class:`Queries`).

    Attributes:
        row: history row (``-1``: nobody known).
        items: known context item positions, each once, oldest first (an item
            given twice sits at its latest place).
        order: per context item, its 1-based place in the request's item list.
        at: days from ``as_of`` to the request time (>= 0).
        category: category code (``-1``: none).
    """

    row: int
    items: np.ndarray
    order: np.ndarray
    at: float
    category: int

    def queries(self, n_items: int) -> Queries:
        """The same request as a batch of one."""
        srt = np.argsort(self.items, kind="stable")
        cols, order = self.items[srt], self.order[srt].astype(np.float64)
        indptr = np.array([0, len(cols)])
        return Queries(
            np.array([self.row], dtype=np.int64),
            sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(1, n_items)),
            sp.csr_matrix((order, cols, indptr), shape=(1, n_items)),
            np.array([self.at], dtype=np.float64),
            np.array([self.category], dtype=np.int64),
        )


def sum_rows(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns and sums of rows ``rows`` of ``m`` (float64, exactly as ``ones @ m[rows]``)."""
    rows = np.sort(rows)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if len(rows) == 1:
        a, b = m.indptr[rows[0]], m.indptr[rows[0] + 1]
        cols, sums = m.indices[a:b].astype(np.int64), m.data[a:b].astype(np.float64)
        nz = sums != 0
        return cols[nz], sums[nz]
    cols = np.concatenate([m.indices[m.indptr[r] : m.indptr[r + 1]] for r in rows])
    vals = np.concatenate([m.data[m.indptr[r] : m.indptr[r + 1]] for r in rows])
    uniq, inv = np.unique(cols, return_inverse=True)
    sums = np.bincount(inv, weights=vals.astype(np.float64), minlength=len(uniq))
    nz = sums != 0
    return uniq[nz].astype(np.int64), sums[nz]


class Block:
    """Base class: scikit-learn style parameters, ``fit(history)``, ``scores(queries)``.

    ``scores`` returns a dense ``(b, n_items)`` float array, ``>= 0`` for the
    block's own candidates and ``-inf`` elsewhere; ``fallbacks`` names the tiers
    that complete the list (see :mod:`models.recommender.blocks`).
    """

    name: ClassVar[str] = "block"
    fallbacks: ClassVar[tuple[str, ...]] = ("popular_category", "popular", "catalogue")
    #: The request's context items (the page's item, the cart) are never recommended.
    excludes_context: ClassVar[bool] = True

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> Block:
        """Set hyperparameters (used at the next ``fit``)."""
        for k, v in params.items():
            if k not in self._param_names():
                raise ConfigError(f"block {self.name} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def fit(self, history: History) -> Block:
        """Fit on ``history``; returns ``self``."""
        self.history_ = history
        self._fit(history)
        return self

    def _fit(self, history: History) -> None:
        """Hook for subclasses with fitted arrays."""

    def _check_fitted(self) -> History:
        if not hasattr(self, "history_"):
            raise NotFoundError(f"block {self.name} is not fitted yet; call fit() first")
        return self.history_

    def scores(self, q: Queries) -> np.ndarray:
        """Dense scores ``(q.size, n_items)``; ``-inf``: not a candidate."""
        raise NotImplementedError

    def request_mask(self, q: Queries) -> np.ndarray | None:
        """An extra per-request filter every tier obeys (e.g. ``upsell``: pricier), or None."""
        return None

    #: The block's scores are one request-independent array, restricted to the
    #: request's categories like the ``popular_category`` fallback (popular, trending).
    global_ranking: ClassVar[bool] = False

    def candidates(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """One request's candidates: item positions and scores (the row of :meth:`scores`).

        Blocks override this with a sparse computation; the default scores a batch of one.
        """
        h = self._check_fitted()
        row = self.scores(r.queries(h.catalog.size))[0]
        pos = np.flatnonzero(np.isfinite(row))
        return pos, row[pos]

    def candidates_many(self, q: Queries) -> Any:
        """Candidates of a batch of requests, each row exactly :meth:`candidates` of that request.

        Returns a :class:`~._many.Sparse` (CSR rows of positions and scores) or a
        :class:`~._many.Dense` (``(b, n_items)`` scores, non-finite: not a candidate).
        The default asks :meth:`candidates` row by row (or uses :meth:`scores` when
        the block has no sparse path); blocks override it with vectorised code.
        """
        from cip.models.recommender.blocks._many import Dense, Sparse

        if type(self).candidates is Block.candidates:
            return Dense(self.name, self.scores(q))
        ip, ix, order = q.items.indptr, q.items.indices, q.item_order.data
        parts_p, parts_s, lens = [], [], []
        for i in range(q.size):
            items, o = ix[ip[i] : ip[i + 1]], order[ip[i] : ip[i + 1]]
            srt = np.argsort(o, kind="stable")
            one = Request(int(q.rows[i]), items[srt], o[srt], float(q.at[i]), int(q.category[i]))
            p, s = self.candidates(one)
            parts_p.append(p)
            parts_s.append(s)
            lens.append(len(p))
        indptr = np.concatenate([[0], np.cumsum(lens, dtype=np.int64)])
        pos = np.concatenate(parts_p).astype(np.int64) if parts_p else np.zeros(0, np.int64)
        sc = np.concatenate(parts_s).astype(np.float64) if parts_s else np.zeros(0)
        return Sparse(self.name, indptr, pos, sc)

    def request_mask_one(self, r: Request) -> np.ndarray | None:
        """:meth:`request_mask` of one request (``(n_items,)`` or None)."""
        if type(self).request_mask is Block.request_mask:
            return None
        m = self.request_mask(r.queries(self._check_fitted().catalog.size))
        return None if m is None else m[0]


def positive(param: str, value: Any, allow_none: bool = False) -> None:
    """Raise a one-line ConfigError unless ``value`` is a finite number > 0."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{param} must be a number > 0, not {value!r}")


def dense_rows(m: sp.csr_matrix, fill: float = -np.inf) -> np.ndarray:
    """A sparse score matrix as dense, its structural zeros (non-candidates) set to ``fill``."""
    out = np.full(m.shape, fill, dtype=np.float64)
    coo = m.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def row_topk(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of ``m`` (vectorised over all rows)."""
    m = m.tocsr()
    m.eliminate_zeros()
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, rows))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    keep = rank < k
    return sp.csr_matrix(
        (m.data[keep], m.indices[keep], np.concatenate([[0], np.cumsum(np.minimum(counts, k))])),
        shape=m.shape,
    )
