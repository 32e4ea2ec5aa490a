"""Named RFM segments from quintile scores.

The mapping is a 5 x 5 grid over the recency score ``R`` and the combined
frequency-monetary score ``FM = ceil((F + M) / 2)`` (the mean of F and M,
halves rounded up), in the spirit of the widely used 11-segment RFM scheme
(Putler; "RFM analysis for customer segmentation"). Every cell names exactly
one segment, so every scored customer gets exactly one name:

====  ==================  ==================  ==================  ==================  ==================
R/FM  1                   2                   3                   4                   5
====  ==================  ==================  ==================  ==================  ==================
5     New Customers       Potential Loyalist  Potential Loyalist  Champions           Champions
4     Promising           Potential Loyalist  Potential Loyalist  Loyal               Champions
3     Promising           About to Sleep      Need Attention      Loyal               Loyal
2     Hibernating         About to Sleep      Need Attention      At Risk             Cannot Lose Them
1     Lost                Hibernating         At Risk             At Risk             Cannot Lose Them
====  ==================  ==================  ==================  ==================  ==================

Scores are quintiles of the buyers (persons with at least one completed
purchase before ``as_of``): ``score = 1 + floor(5 * rank / n)`` where ``rank``
is the 0-based *minimum* rank (ties share the lower rank, so equal values
always share a score and the result does not depend on row order or engine)
and ``n`` the number of buyers. R ranks the last purchase time (most recent ->
5), F ranks ``frequency`` and M ranks ``monetary`` rounded to cents (highest -> 5).
Heavy ties (e.g. most customers with one order) leave some scores unused,
which is the honest outcome for tied values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SEGMENTS", "SEGMENT_GRID", "rfm_segment", "fm_score"]

#: Segment names, best to worst.
SEGMENTS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Cannot Lose Them",
    "Hibernating",
    "Lost",
)

#: ``SEGMENT_GRID[R][FM]`` for R, FM in 1..5 (see the module docstring).
SEGMENT_GRID: dict[int, dict[int, str]] = {
    5: dict(
        enumerate(
            [
                "New Customers",
                "Potential Loyalist",
                "Potential Loyalist",
                "Champions",
                "Champions",
            ],
            1,
        )
    ),
    4: dict(
        enumerate(
            ["Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Champions"], 1
        )
    ),
    3: dict(enumerate(["Promising", "About to Sleep", "Need Attention", "Loyal", "Loyal"], 1)),
    2: dict(
        enumerate(
            ["Hibernating", "About to Sleep", "Need Attention", "At Risk", "Cannot Lose Them"], 1
        )
    ),
    1: dict(enumerate(["Lost", "Hibernating", "At Risk", "At Risk", "Cannot Lose Them"], 1)),
}

_LOOKUP = np.full((6, 6), None, dtype=object)
for _r, _row in SEGMENT_GRID.items():
    for _fm, _name in _row.items():
        _LOOKUP[_r, _fm] = _name


def fm_score(f_score: Any, m_score: Any) -> Any:
    """Combined frequency-monetary score ``ceil((F + M) / 2)`` (ints, arrays or Ibis columns)."""
    return (f_score + m_score + 1) // 2


def rfm_segment(r_score: Any, f_score: Any, m_score: Any) -> Any:
    """The named RFM segment of quintile scores (see the grid in the module docstring).

    Works on plain ints (returns a ``str``), on numpy arrays / pandas Series
    (vectorised, returns an object array or a string Series; missing scores give
    missing names) and on Ibis integer columns (returns an Ibis string expression,
    so the mapping runs inside the database).

    Examples:
        >>> rfm_segment(5, 5, 4)
        'Champions'
        >>> rfm_segment(1, 1, 2)
        'Lost'
    """
    if _is_ibis(r_score):
        import ibis

        fm = fm_score(f_score, m_score)
        cases = [
            ((r_score == r) & (fm == f), name)
            for r, row in SEGMENT_GRID.items()
            for f, name in row.items()
        ]
        return ibis.cases(*cases, else_=ibis.null("string"))
    if np.isscalar(r_score) and np.isscalar(f_score) and np.isscalar(m_score):
        r, f, m = int(r_score), int(f_score), int(m_score)
        for s in (r, f, m):
            if not 1 <= s <= 5:
                raise ValueError(f"RFM scores must be in 1..5, got {(r, f, m)}")
        return SEGMENT_GRID[r][(f + m + 1) // 2]
    index = r_score.index if isinstance(r_score, pd.Series) else None
    r = pd.to_numeric(pd.Series(np.asarray(r_score, dtype=object)), errors="coerce")
    f = pd.to_numeric(pd.Series(np.asarray(f_score, dtype=object)), errors="coerce")
    m = pd.to_numeric(pd.Series(np.asarray(m_score, dtype=object)), errors="coerce")
    ok = (r.between(1, 5) & f.between(1, 5) & m.between(1, 5)).to_numpy()
    out = np.full(len(r), None, dtype=object)
    ri = r.to_numpy(dtype=float)[ok].astype(int)
    fmi = ((f.to_numpy(dtype=float)[ok] + m.to_numpy(dtype=float)[ok] + 1) // 2).astype(int)
    out[ok] = _LOOKUP[ri, fmi]
    if index is not None:
        return pd.Series(out, index=index, dtype="str", name="rfm_segment")
    return out


def _is_ibis(x: Any) -> bool:
    return type(x).__module__.startswith("ibis.")
