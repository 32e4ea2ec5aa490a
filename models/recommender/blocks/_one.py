"""The single-request path: one person / context, sparse candidates, no dense ``(b, n)`` work.

:func:`select_one` gives exactly what :func:`~._select.select` gives for a batch
of one row (same tiers, same rule mask, same boost, same category cap, same
``k * 4 + 8`` candidates examined per tier before the wide retry), but each tier
is a short candidate list (item positions and scores) instead of a dense row:
a block's own candidates are a few hundred items at most, and the popularity
fallbacks are a ranking precomputed once (per boost) and filtered by masks.
"""

from __future__ import annotations

import numpy as np
from cip.models.recommender.blocks._select import _CAP_SLACK, BlockResult

__all__ = ["ranked", "select_one"]


def ranked(pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pos`` and ``scores`` sorted best first (ties: lower position first)."""
    order = np.lexsort((pos, -scores))
    return pos[order], scores[order]


def _top(pos: np.ndarray, scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` best of unsorted candidates, best first (ties: lower position)."""
    if len(pos) > 4 * m + 64:
        cut = np.partition(scores, len(scores) - m)[len(scores) - m]  # the m-th largest
        keep = scores >= cut
        pos, scores = pos[keep], scores[keep]
    p, s = ranked(pos, scores)
    return p[:m], s[:m]


def _cap_many(cats: np.ndarray, cap: int, counts: np.ndarray) -> np.ndarray:
    """Mask of category codes ``cats`` (rank order) kept under ``cap`` per category, given
    ``counts`` already kept per category (updated in place; code -1: never capped)."""
    order = np.argsort(cats, kind="stable")
    sc = cats[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = sc[1:] != sc[:-1]
    starts = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    within = np.empty(len(order), dtype=np.int64)
    within[order] = np.arange(len(order)) - starts
    keep = (within + counts[cats] < cap) | (cats < 0)
    kept = cats[keep & (cats >= 0)]
    np.add.at(counts, kept, 1)
    return keep


def _cap_keep(pos: np.ndarray, category: np.ndarray, cap: int) -> np.ndarray:
    """Mask of ``pos`` (rank order) kept under at most ``cap`` items per category."""
    if len(pos) > 64:
        return _cap_many(
            category[pos].astype(np.int64),
            cap,
            np.zeros(int(category.max(initial=0)) + 2, np.int64),
        )
    seen: dict[int, int] = {}
    keep = []
    for c in category[pos].tolist():  # a few dozen candidates: a loop beats sorting
        if c < 0:
            keep.append(True)  # items without a category are not capped
            continue
        n = seen.get(c, 0)
        seen[c] = n + 1
        keep.append(n < cap)
    return np.array(keep, dtype=bool)


def _first_free(
    cand: np.ndarray, sc: np.ndarray, free: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The first ``m`` free finite candidates of a ranked tier, and where the scan stopped."""
    n = len(cand)
    start, step = 0, 4 * m + 64
    got_p, got_s = [], []
    have = 0
    while start < n and have < m:
        stop = min(n, start + step)
        c, s = cand[start:stop], sc[start:stop]
        ok = np.flatnonzero(free[c] & np.isfinite(s))[: m - have]
        got_p.append(c[ok])
        got_s.append(s[ok])
        have += len(ok)
        end = start + (int(ok[-1]) + 1 if have >= m else stop - start)
        start = stop
        step *= 4
    if not got_p:
        return np.zeros(0, dtype=np.int64), np.zeros(0), 0
    return np.concatenate(got_p), np.concatenate(got_s), end


def _claims_all(tier: Tier, allowed: np.ndarray) -> bool:
    """Whether ``tier``'s finite candidates cover every allowed item."""
    cand, sc = tier[1], tier[2]
    if len(cand) < np.count_nonzero(allowed):
        return False
    rest = allowed.copy()
    rest[cand[np.isfinite(sc)]] = False
    return not rest.any()


#: Candidates of an unranked tier ranked first by the wide retry (all of them if they run out).
_HEAD = 256

#: A tier: name, candidate positions, their (boosted) scores, and whether already ranked.
Tier = tuple[str, np.ndarray, np.ndarray, bool]


def select_one(
    tiers: list[Tier],
    allowed: np.ndarray,
    k: int,
    category: np.ndarray,
    max_per_category: int | None = None,
    _wide: bool = False,
) -> BlockResult:
    """The top ``k`` over ``tiers`` among ``allowed`` items (one request; see the module).

    Candidates with a non-finite score are not candidates of their tier.
    """
    if _wide:
        return _select_wide(tiers, allowed, k, category, max_per_category)
    if (
        max_per_category is not None
        and tiers
        and not tiers[0][3]
        and _claims_all(tiers[0], allowed)
    ):
        # an unranked first tier that claims every allowed item (a model scoring the whole
        # catalogue) leaves later tiers nothing: the first pass either fills k from its head,
        # which the wide scan gives too (same ranking, same cap, in order), or falls back
        # to the wide scan; going wide at once skips the first pass (the same answer)
        return _select_wide(tiers, allowed, k, category, max_per_category)
    n = len(allowed)
    free = allowed.copy()  # allowed and not yet claimed by an earlier tier
    m = k if max_per_category is None else (n if _wide else k * _CAP_SLACK + 8)
    ps, vs, ts = [], [], []
    pos = np.zeros(0, dtype=np.int64)
    val = np.zeros(0)
    tier = np.zeros(0, dtype=np.int64)
    for t, (_, cand, sc, is_ranked) in enumerate(tiers):
        if is_ranked:  # scan a prefix only: the first m free candidates
            p, s, end = _first_free(cand, sc, free, m)
        else:
            ok = free[cand] & np.isfinite(sc)
            p, s = _top(cand[ok], sc[ok], m)
            end = len(cand)
        ps.append(p)
        vs.append(s)
        ts.append(np.full(len(p), t, dtype=np.int64))
        pos, val, tier = np.concatenate(ps), np.concatenate(vs), np.concatenate(ts)
        if max_per_category is not None:
            keep = _cap_keep(pos, category, max_per_category)
            pos, val, tier = pos[keep], val[keep], tier[keep]
        if len(pos) >= k or t == len(tiers) - 1:
            break  # later tiers cannot change the first k
        # every candidate of this tier is claimed, examined or not
        if is_ranked:
            rest = cand[end:]
            free[rest[np.isfinite(sc[end:])]] = False
            free[p] = False
        else:
            free[cand[np.isfinite(sc)]] = False
        if not free.any():
            break
    if len(pos) < k and max_per_category is not None and not _wide:
        return select_one(tiers, allowed, k, category, max_per_category, _wide=True)
    names = np.array([name for name, *_ in tiers], dtype=object)
    return BlockResult(pos[:k], val[:k], names[tier[:k]])


def _select_wide(
    tiers: list[Tier], allowed: np.ndarray, k: int, category: np.ndarray, cap: int
) -> BlockResult:
    """Every candidate of every tier examined, in order, under the category cap (the retry
    when the first ``k * 4 + 8`` per tier were too concentrated): a scan in chunks."""
    free = allowed.copy()
    counts = np.zeros(int(category.max(initial=0)) + 2, dtype=np.int64)
    ps, vs, ts = [], [], []
    have = 0
    for t, (_, cand, sc, is_ranked) in enumerate(tiers):
        ok = free[cand] & np.isfinite(sc)
        p, s = cand[ok], sc[ok]
        free[p] = False
        full = p, s
        if not is_ranked:  # rank a head first; the whole tier only if the head runs out
            p, s = _top(p, s, min(len(p), _HEAD))
        start, step = 0, 4 * k + 8
        while have < k:
            if start >= len(p):
                if len(p) == len(full[0]):
                    break
                start = len(p)  # the head was scanned: go on after it
                p, s = ranked(*full)
                continue
            cp, cs = p[start : start + step], s[start : start + step]
            keep = _cap_many(category[cp].astype(np.int64), cap, counts)
            cp, cs = cp[keep][: k - have], cs[keep][: k - have]
            ps.append(cp)
            vs.append(cs)
            ts.append(np.full(len(cp), t, dtype=np.int64))
            have += len(cp)
            start += step
            step *= 4
        if have >= k or not free.any():
            break
    names = np.array([name for name, *_ in tiers], dtype=object)
    if not ps:
        return BlockResult(np.zeros(0, dtype=np.int64), np.zeros(0), names[:0])
    tier = np.concatenate(ts)
    return BlockResult(np.concatenate(ps), np.concatenate(vs), names[tier])
