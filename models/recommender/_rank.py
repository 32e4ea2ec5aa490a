"""Top-n selection with business rules and popularity backfill, vectorised over a batch.

A *candidate set* is the list of items a request may return: every item of the
model, or the ``items=`` allow-list (business rules such as in-stock or a
category are applied by passing the allowed ids). Allowed ids the model has
never seen ("cold" items) can only be backfilled, after every known item.

The personal model proposes up to ``k`` scored candidates per query; entries
scored at or below :data:`FLOOR` are "no candidate" (e.g. an item-kNN item with
no neighbour in the history). When a query has fewer than ``n`` personal
candidates, the rest is filled from the popularity order of the candidate set,
skipping excluded (seen) and already chosen items, and flagged ``backfilled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.profiles.errors import ConfigError

__all__ = [
    "FLOOR",
    "Candidates",
    "allow_list",
    "backfill",
    "check_n",
    "concat",
    "csr_rows",
    "dense_topk",
    "frame",
    "merge",
    "query_array",
]

#: Scores at or below this are "no candidate" (implicit's topk marks filtered items -FLT_MAX).
FLOOR = -1.0e38


@dataclass
class Candidates:
    """The items a request may return.

    Attributes:
        known: model item indices of the allowed known items (``None``: all items).
        ids: item ids per candidate position (known items first, then cold ones).
        n_known: number of known candidate positions.
        pop_order: candidate positions in backfill order (popular first, cold last).
        pop_score: backfill score per candidate position.
    """

    known: np.ndarray | None
    ids: np.ndarray
    n_known: int
    pop_order: np.ndarray
    pop_score: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)

    def restrict(self, seen: sp.csr_matrix | None) -> sp.csr_matrix | None:
        """``seen`` (rows x all model items) restricted to the known candidate columns."""
        if seen is None or self.known is None:
            return seen
        return seen[:, self.known].tocsr()


def allow_list(
    item_ids: np.ndarray, item_kind: str, pop: np.ndarray, wanted: np.ndarray, idx: np.ndarray
) -> Candidates:
    """Candidates of an ``items=`` allow-list (``idx``: model positions, -1 for cold ids)."""
    from cip.models.recommender._data import normalize_ids

    known = np.unique(idx[idx >= 0])
    ids = item_ids[known]
    cold = wanted[idx < 0]
    if len(cold):
        cold_ids, cold_kind = normalize_ids(cold)
        if cold_kind != item_kind:
            ids, cold_ids = ids.astype(object), cold_ids.astype(object)
        ids = np.concatenate([ids, cold_ids])
    order = np.concatenate(
        [np.argsort(-pop[known], kind="stable"), np.arange(len(known), len(ids))]
    )
    score = np.concatenate([pop[known], np.zeros(len(cold), dtype=np.float32)])
    return Candidates(known, ids, len(known), order.astype(np.int64), score)


def dense_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and scores of the ``k`` best entries per row, best first."""
    b, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.zeros((b, 0), dtype=np.int64), np.zeros((b, 0), dtype=np.float32)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (b, m))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def backfill(
    cand: Candidates,
    chosen: np.ndarray,
    valid: np.ndarray,
    seen: sp.csr_matrix | None,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Popular candidates completing each row to ``n`` items.

    Args:
        cand: the candidate set.
        chosen: (b, k) candidate positions already chosen by the personal model.
        valid: (b, k) which of ``chosen`` are real candidates.
        seen: (b, n_known) excluded items per row in candidate columns, or ``None``.
        n: wanted items per row.

    Returns:
        ``(rows, positions)`` of the backfilled entries, in row-major, popularity order.
    """
    b = chosen.shape[0]
    need = n - valid.sum(axis=1)
    rows_need = np.flatnonzero(need > 0)
    if len(rows_need) == 0 or cand.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    n_seen = np.zeros(b, dtype=np.int64) if seen is None else np.diff(seen.indptr)
    scan = int(min(cand.size, n + int(n_seen[rows_need].max()) + chosen.shape[1]))
    pos = cand.pop_order[:scan]  # (scan,) candidate positions, same for every row
    blocked = np.zeros((len(rows_need), scan), dtype=bool)
    if seen is not None and seen.nnz:
        known = pos < cand.n_known
        sub = seen[rows_need][:, pos[known]]
        blocked[:, known] = sub.toarray() != 0
    if chosen.shape[1]:
        ch = np.where(valid[rows_need], chosen[rows_need], -1)
        blocked |= (pos[None, :, None] == ch[:, None, :]).any(axis=2)
    ok = ~blocked
    take = ok & (np.cumsum(ok, axis=1) <= need[rows_need][:, None])
    r, c = np.nonzero(take)
    return rows_need[r], pos[c]


def merge(
    cand: Candidates,
    chosen: np.ndarray,
    scores: np.ndarray,
    valid: np.ndarray,
    fill_rows: np.ndarray,
    fill_pos: np.ndarray,
    personal_backfill: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten personal and backfilled entries to ``(row, item_id, score, rank, backfilled)``."""
    pr, pc = np.nonzero(valid)
    rows = np.concatenate([pr, fill_rows]).astype(np.int64)
    pos = np.concatenate([chosen[pr, pc], fill_pos]).astype(np.int64)
    score = np.concatenate(
        [scores[pr, pc].astype(np.float64), cand.pop_score[fill_pos].astype(np.float64)]
    )
    filled = np.concatenate(
        [np.zeros(len(pr), dtype=bool), np.full(len(fill_rows), not personal_backfill)]
    )
    order = np.argsort(rows, kind="stable")  # personal entries precede backfill per row
    rows, pos, score, filled = rows[order], pos[order], score[order], filled[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows), dtype=np.int64) - starts + 1
    return rows, cand.ids[pos], score, rank, filled


class Ranked(NamedTuple):
    """One query's ranked items as arrays: what the serving hot path reads."""

    item_ids: np.ndarray
    scores: np.ndarray
    backfilled: np.ndarray


def frame(names: tuple[str, ...], arrays: tuple[np.ndarray, ...]) -> pd.DataFrame:
    """A DataFrame from column arrays; skips pandas' per-call inference (~0.3 ms per request)."""
    arrays = tuple(pd.Series(a, copy=False).array if a.dtype == object else a for a in arrays)
    try:
        return pd.DataFrame._from_arrays(
            list(arrays), columns=_column_index(names), index=pd.RangeIndex(len(arrays[0]))
        )
    except AttributeError:  # pragma: no cover - a pandas without the private fast path
        return pd.DataFrame(dict(zip(names, arrays, strict=True)))


_COLUMN_INDEXES: dict[tuple[str, ...], pd.Index] = {}


def _column_index(names: tuple[str, ...]) -> pd.Index:
    if names not in _COLUMN_INDEXES:
        _COLUMN_INDEXES[names] = pd.Index(list(names))
    return _COLUMN_INDEXES[names]


def csr_rows(m: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``m[rows]``, with a cheap path for one row (a serving request)."""
    if len(rows) != 1:
        return m[rows]
    start, end = int(m.indptr[rows[0]]), int(m.indptr[rows[0] + 1])
    return sp.csr_matrix(
        (m.data[start:end], m.indices[start:end], np.array([0, end - start], dtype=m.indptr.dtype)),
        shape=(1, m.shape[1]),
    )


def check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, not {n!r}")
    return int(n)


def concat(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    if not parts:
        return (
            np.zeros(0, np.int64),
            np.zeros(0, object),
            np.zeros(0),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
        )
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(5))


def query_array(queries: Any) -> np.ndarray:
    """The query ids as an array that keeps their type (ints stay ints)."""
    return pd.Series(queries).to_numpy()
