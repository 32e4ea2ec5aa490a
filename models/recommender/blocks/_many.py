"""The campaign batch path: many requests at once, each answered exactly as :func:`._one.select_one`.

A campaign asks one block for many persons with neither context items nor a
category, so every request has the same fallback tiers (global rankings) and
differs only in its own candidates and its allowed items. :func:`select_many`
runs the tiers of :func:`~._one.select_one` over a whole chunk of requests with
numpy: a ranked tier gathers the allowed-and-unclaimed flags of a prefix of the
ranking for every row at once, an unranked tier takes each row's best ``m``
with one partial sort (dense scores) or one sort of all rows' candidates
(sparse scores), and the category cap is applied to the concatenated tiers as
one grouped count. The candidates examined per tier, the tie-breaking (score,
then lower catalogue position) and the stopping rule are those of
``select_one``, so the answers are the same items, scores and sources.

The rare row whose category cap discards too many examined candidates (the
"wide retry" of ``select_one``) is flagged in ``retry`` for the caller to
answer with ``select_one`` itself.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from cip.models.recommender.blocks._select import _CAP_SLACK, _cap

__all__ = ["Dense", "Many", "Ranked", "Sparse", "select_many"]


class Ranked(NamedTuple):
    """One ranking for every row (best first): item positions and their scores."""

    name: str
    pos: np.ndarray
    scores: np.ndarray


class Sparse(NamedTuple):
    """Per-row unranked candidates in CSR form (row ``i``: ``indptr[i]:indptr[i + 1]``)."""

    name: str
    indptr: np.ndarray
    pos: np.ndarray
    scores: np.ndarray


class Dense(NamedTuple):
    """Per-row scores ``(b, len(cols))`` of the items at positions ``cols`` (``None``: every
    item, in catalogue order); a non-finite score is not a candidate."""

    name: str
    scores: np.ndarray
    cols: np.ndarray | None = None

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i``'s candidates: positions and scores."""
        fin = np.flatnonzero(np.isfinite(self.scores[i]))
        return (fin if self.cols is None else self.cols[fin]), self.scores[i, fin]


class Many(NamedTuple):
    """Answers of a batch, flat: row ``i`` owns ``counts[i]`` consecutive entries.

    ``tier`` indexes the tiers given to :func:`select_many`; ``retry`` flags the
    rows to answer with :func:`~._one.select_one` instead (their entries are empty).
    """

    counts: np.ndarray
    pos: np.ndarray
    scores: np.ndarray
    tier: np.ndarray
    retry: np.ndarray


def _place(b: int, m: int, r: np.ndarray, slot: np.ndarray, p: np.ndarray, v: np.ndarray):
    """``(b, m)`` position / score arrays (``-1`` / ``-inf`` where empty) with the given cells."""
    out_p = np.full((b, m), -1, dtype=np.int64)
    out_v = np.full((b, m), -np.inf)
    out_p[r, slot] = p
    out_v[r, slot] = v
    return out_p, out_v


def _first_free(free: np.ndarray, tier: Ranked, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``m`` free finite candidates of a ranking, in its order."""
    b = free.shape[0]
    fin = np.isfinite(tier.scores)
    pos, sc = tier.pos[fin], tier.scores[fin]
    out_p = np.full((b, m), -1, dtype=np.int64)
    out_v = np.full((b, m), -np.inf)
    todo = np.flatnonzero(free.any(axis=1))
    width = min(len(pos), 4 * m + 64)
    while len(todo) and width:
        g = free[todo][:, pos[:width]]
        c = np.cumsum(g, axis=1, dtype=np.int64)
        r, j = np.nonzero(g & (c <= m))
        slot = c[r, j] - 1
        out_p[todo[r], slot] = pos[j]
        out_v[todo[r], slot] = sc[j]
        if width >= len(pos):
            break
        todo = todo[c[:, -1] < m]  # these rows scan a longer prefix (from the start again)
        width = min(len(pos), width * 4)
    return out_p, out_v


def _rank_rows(
    b: int, m: int, r: np.ndarray, p: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``m`` of each row's (position, score) entries: by score, then lower position."""
    o = np.lexsort((p, -v, r))
    r, p, v = r[o], p[o], v[o]
    start = np.searchsorted(r, np.arange(b))
    rank = np.arange(len(r)) - start[r]
    keep = rank < m
    return _place(b, m, r[keep], rank[keep], p[keep], v[keep])


def _top_sparse(free: np.ndarray, tier: Sparse, m: int) -> tuple[np.ndarray, np.ndarray]:
    b = free.shape[0]
    r = np.repeat(np.arange(b), np.diff(tier.indptr))
    ok = free[r, tier.pos] & np.isfinite(tier.scores)
    return _rank_rows(b, m, r[ok], tier.pos[ok], tier.scores[ok])


def _top_dense(free: np.ndarray, tier: Dense, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``m`` candidates. The cut is found on a float32 copy (half the
    memory traffic of the partition): rounding to float32 never reverses an order, so
    the row's ``m``-th largest rounded score is the rounding of its exact ``m``-th
    largest, and every score rounding to at least it is a superset of the exact best
    ``m`` (ties included), which :func:`_rank_rows` then ranks on the exact scores."""
    b, n = tier.scores.shape
    ok = free if tier.cols is None else free[:, tier.cols]
    cand = ok & np.isfinite(tier.scores)
    if m < n:
        with np.errstate(over="ignore"):  # beyond float32: +-inf, the order still holds
            t = tier.scores.astype(np.float32)
        np.putmask(t, ~cand, np.float32(-np.inf))
        cut = np.partition(t, n - m, axis=1)[:, n - m]  # each row's m-th largest (rounded)
        sel = t >= cut[:, None]
        few = np.flatnonzero(cut == -np.inf)  # rows with under m candidates: all of them
        if len(few):
            sel[few] = cand[few]
    else:
        sel = cand
    r, c = np.nonzero(sel)
    return _rank_rows(b, m, r, c if tier.cols is None else tier.cols[c], tier.scores[r, c])


def _claim(free: np.ndarray, tier: Ranked | Sparse | Dense) -> None:
    """Every finite candidate of ``tier`` is claimed (no later tier may give it)."""
    if isinstance(tier, Ranked):
        free[:, tier.pos[np.isfinite(tier.scores)]] = False
    elif isinstance(tier, Sparse):
        r = np.repeat(np.arange(free.shape[0]), np.diff(tier.indptr))
        fin = np.isfinite(tier.scores)
        free[r[fin], tier.pos[fin]] = False
    elif tier.cols is None:
        free &= ~np.isfinite(tier.scores)
    else:
        free[:, tier.cols] &= ~np.isfinite(tier.scores)


def select_many(
    tiers: list[Ranked | Sparse | Dense],
    allowed: np.ndarray,
    k: int,
    category: np.ndarray,
    max_per_category: int | None = None,
) -> Many:
    """The top ``k`` of every row of ``allowed`` ``(b, n)`` over ``tiers`` (see the module).

    Tier scores are final (boost applied). Same answer per row as
    :func:`~._one.select_one` with the same tiers, except rows flagged ``retry``.
    """
    b = allowed.shape[0]
    cap = max_per_category
    m = k if cap is None else k * _CAP_SLACK + 8
    free = allowed.copy()
    acc_p = np.zeros((b, 0), dtype=np.int64)
    acc_v = np.zeros((b, 0))
    acc_t = np.zeros((b, 0), dtype=np.int64)
    keep = np.zeros((b, 0), dtype=bool)
    for t, tier in enumerate(tiers):
        if isinstance(tier, Ranked):
            p, v = _first_free(free, tier, m)
        elif isinstance(tier, Sparse):
            p, v = _top_sparse(free, tier, m)
        else:
            p, v = _top_dense(free, tier, m)
        acc_p = np.concatenate([acc_p, p], axis=1)
        acc_v = np.concatenate([acc_v, v], axis=1)
        acc_t = np.concatenate([acc_t, np.full(p.shape, t, dtype=np.int64)], axis=1)
        keep = p >= 0 if t == 0 else np.concatenate([keep, p >= 0], axis=1)
        if cap is not None:
            keep = _cap(acc_p, acc_p >= 0, category, cap)
        done = keep.sum(axis=1) >= k
        if done.all() or t == len(tiers) - 1:
            break
        _claim(free, tier)
        free[done] = False  # a row with k items takes nothing from later tiers
        if not free.any():
            break
    have = keep.sum(axis=1)
    retry = (have < k) if cap is not None else np.zeros(b, dtype=bool)
    keep &= (np.cumsum(keep, axis=1) <= k) & ~retry[:, None]
    r, j = np.nonzero(keep)
    return Many(
        np.bincount(r, minlength=b).astype(np.int64),
        acc_p[r, j],
        acc_v[r, j],
        acc_t[r, j],
        retry,
    )
