"""Top-k over tiers of scores, after the rules, vectorised over a batch of requests.

A block ranks its own candidates (tier 0: ``buy_again``, ``bought_together``...);
when the rules leave fewer than ``k`` of them, the next tiers (the block's
fallbacks, e.g. popular in the category, then popular) fill the list. Scores are
dense ``(b, n_items)`` arrays where ``-inf`` means "not a candidate of this tier".

Order of operations per request: the rules' mask removes items (before any
top-k), the boost multiplies the scores, each item belongs to the first tier that
scores it, tiers are taken in order and, within a tier, by score (ties by
catalogue position), and ``max_per_category`` caps how many items of one category
the final list holds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BlockResult", "select"]

#: How many candidates per tier are examined beyond ``k`` when a category cap is set.
_CAP_SLACK = 4


class BlockResult(NamedTuple):
    """One request's answer: items in rank order, their scores and which tier gave each.

    ``sources[i]`` is the block's name for its own picks, else the fallback's name
    (``popular_category``, ``popular``, ``catalogue``...); ``block`` is the block asked.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    block: str = ""

    @property
    def fallbacks(self) -> list[str]:
        """The fallbacks that filled part of the list, in rank order (empty: none)."""
        return list(dict.fromkeys(str(s) for s in self.sources if s != self.block))


def _topk(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the ``m`` best entries per row, best first (ties: lower position)."""
    b, n = scores.shape
    m = min(m, n)
    if m <= 0:
        return np.zeros((b, 0), np.int64), np.zeros((b, 0))
    part = (
        np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (b, 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _cap(pos: np.ndarray, valid: np.ndarray, category: np.ndarray, cap: int) -> np.ndarray:
    """``valid`` with entries beyond ``cap`` per (row, category) switched off, in rank order."""
    b, m = pos.shape
    cats = np.where(valid, category[pos], -2).astype(np.int64)
    key_row = np.repeat(np.arange(b), m)
    flat = cats.ravel()
    order = np.lexsort((np.arange(b * m), flat, key_row))  # by row, category, rank
    sr, sc = key_row[order], flat[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sr[1:] != sr[:-1]) | (sc[1:] != sc[:-1])
    starts = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    within = np.empty(len(order), dtype=np.int64)
    within[order] = np.arange(len(order)) - starts
    keep = (within.reshape(b, m) < cap) | (cats == -1)  # items without a category are not capped
    return valid & keep


def select(
    tiers: list[tuple[str, np.ndarray]],
    allowed: np.ndarray,
    k: int,
    category: np.ndarray,
    max_per_category: int | None = None,
    boost: np.ndarray | None = None,
    _wide: bool = False,
) -> list[BlockResult]:
    """The top ``k`` per row over ``tiers`` (name, (b, n) scores) among ``allowed`` (b, n) items.

    Returns one :class:`BlockResult` per row; a row gets fewer than ``k`` items only
    when its allowed candidates (under the category cap) are fewer.
    """
    b, n = allowed.shape
    taken = ~allowed  # an item is claimed by the first tier that scores it
    parts_pos, parts_val, parts_tier = [], [], []
    for t, (_, s) in enumerate(tiers):
        s = np.where(taken, -np.inf, s if boost is None else s * boost)
        ok = np.isfinite(s)
        m = k if max_per_category is None else (n if _wide else k * _CAP_SLACK + 8)
        pos, val = _topk(s, m)
        parts_pos.append(pos)
        parts_val.append(val)
        parts_tier.append(np.full(pos.shape, t, dtype=np.int64))
        taken = taken | ok
        if taken.all():
            break
    pos = np.concatenate(parts_pos, axis=1)
    val = np.concatenate(parts_val, axis=1)
    tier = np.concatenate(parts_tier, axis=1)
    valid = np.isfinite(val)
    if max_per_category is not None:
        valid = _cap(pos, valid, category, max_per_category)
    keep = valid & (np.cumsum(valid, axis=1) <= k)
    names = np.array([name for name, _ in tiers], dtype=object)
    out = []
    for r in range(b):  # one small slice per request row, not per item
        sel = keep[r]
        out.append(BlockResult(pos[r, sel], val[r, sel], names[tier[r, sel]]))
    short = np.flatnonzero(keep.sum(axis=1) < k)
    if max_per_category is not None and not _wide and len(short):
        # the cap discarded too many of the examined candidates: examine them all
        redo = select(
            [(name, s[short]) for name, s in tiers],
            allowed[short],
            k,
            category,
            max_per_category,
            None if boost is None else boost,
            _wide=True,
        )
        for r, res in zip(short, redo, strict=True):
            out[r] = res
    return out
