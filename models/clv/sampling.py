"""A row budget for CLV training: a deterministic hash sample of persons.

On a large shop the CLV training set (one row per person per snapshot) is far
bigger than the models need: at 1 M customers and 10 snapshots it has ~5.5 M
rows, and building their features and fitting the LightGBM on them takes most of
half an hour. BG/NBD's four parameters and an early-stopped LightGBM are as good
on a few hundred thousand rows. So training keeps at most ``max_rows`` fitting
rows in all (``models.clv.max_rows``) and ``holdout_rows`` holdout rows
(``models.clv.holdout_rows``), by sampling *persons*:

* a person is in the sample when the first :data:`HASH_CHARS` hex digits of the
  MD5 of their ``unified_id`` are below ``fraction x 16**8``. A hash, not a random
  generator: the same person is in or out on every rerun, in every process, on
  every engine (DuckDB, PostgreSQL and Spark all have ``md5``), and -- with one
  fraction for all fitting snapshots -- in every snapshot, so a person's
  snapshots stay together. Samples are nested: a person in at a fraction is in at
  every larger fraction, so the holdout's sample (its own fraction) holds all
  the fitting persons or is held in them;
* the filter runs **in the engine** on the orders, order lines and events
  (:func:`features.inputs.restrict_persons`) before features, labels and the
  BTYD summary are computed, so nothing is computed for persons left out;
* below the budget the fraction is 1 and nothing is filtered: a small shop's
  training set, and so its models, are exactly what they are without a budget.

The fractions are chosen from the rows each snapshot would have
(:func:`count_rows`: persons with an order or event before the snapshot's
``as_of``, the population of :func:`features.compute_features`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import numpy as np
import pandas as pd

__all__ = [
    "HASH_CHARS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_HOLDOUT_ROWS",
    "SamplePlan",
    "hash_key",
    "in_sample",
    "person_filter",
    "count_rows",
    "plan_sample",
]

#: hex digits of the MD5 compared with the threshold (16**8 buckets)
HASH_CHARS = 8
_BUCKETS = 16**HASH_CHARS
#: default ``models.clv.max_rows``: fitting rows (all fitting snapshots together)
DEFAULT_MAX_ROWS = 400_000
#: default ``models.clv.holdout_rows``: rows of the holdout snapshot
DEFAULT_HOLDOUT_ROWS = 200_000


@ibis.udf.scalar.builtin
def md5(value: str) -> str:  # type: ignore[empty-body]
    """The engine's ``md5(text)``: 32 lowercase hex digits (DuckDB, PostgreSQL, Spark)."""


def _threshold(fraction: float) -> str:
    """The hex prefix a person's hash must be below, for ``0 < fraction < 1``."""
    return f"{int(fraction * _BUCKETS):0{HASH_CHARS}x}"


def hash_key(unified_id: Any) -> str:
    """The first :data:`HASH_CHARS` hex digits of the MD5 of ``str(unified_id)`` (UTF-8)."""
    return hashlib.md5(str(unified_id).encode("utf-8")).hexdigest()[:HASH_CHARS]


def in_sample(unified_ids: Iterable[Any], fraction: float) -> np.ndarray:
    """Whether each person is in the sample of ``fraction`` (the engine filter, in Python)."""
    ids = list(unified_ids)
    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    thr = _threshold(fraction)
    return np.fromiter((hash_key(u) < thr for u in ids), dtype=bool, count=len(ids))


def person_filter(fraction: float) -> Callable[[Any], Any] | None:
    """An Ibis predicate on ``unified_id`` keeping the sample of ``fraction`` (None: keep all).

    Same decision as :func:`in_sample`: hex digits compare like their numbers
    (fixed length, ``0-9`` before ``a-f`` in every collation an engine uses for them).
    """
    if fraction >= 1.0:
        return None
    if not fraction > 0.0:
        raise ValueError(f"a sample fraction must be in (0, 1]; got {fraction}")
    thr = _threshold(fraction)

    def keep(uid: Any) -> Any:
        return md5(uid.cast("string")).substr(0, HASH_CHARS) < ibis.literal(thr)

    return keep


def count_rows(store: Any, as_ofs: Sequence[Any]) -> dict[pd.Timestamp, int]:
    """Persons with an order or event before each ``as_of``: the rows a snapshot would have.

    One aggregation in the engine (first order or event per person), before any
    feature is computed.
    """
    from cip.features.inputs import load_inputs
    from cip.features.spec import to_as_of

    inputs = load_inputs(store)

    def when(t: Any) -> Any:
        return t.select(unified_id=t.unified_id.cast("string"), ts=t.ts.cast("timestamp"))

    seen = when(inputs.orders)
    if inputs.events is not None:
        seen = seen.union(when(inputs.events), distinct=False)
    first = seen.group_by("unified_id").aggregate(first_ts=seen.ts.min())
    stamps = [to_as_of(a) for a in as_ofs]
    expr = first.aggregate(
        **{
            f"n{i}": first.first_ts.count(
                where=first.first_ts < ibis.literal(ts.to_pydatetime(), type="timestamp")
            )
            for i, ts in enumerate(stamps)
        }
    )
    row = expr.to_pyarrow().to_pylist()[0]
    return {ts: int(row[f"n{i}"] or 0) for i, ts in enumerate(stamps)}


@dataclass(frozen=True)
class SamplePlan:
    """The fractions of persons kept: one for every fitting snapshot, one for the holdout.

    Attributes:
        fit_fraction: share of persons kept in the fitting snapshots (1: all).
        holdout_fraction: share kept in the holdout snapshot (1: all).
        fit_rows, holdout_rows: rows the snapshots have before sampling.
        max_rows, max_holdout_rows: the budgets.
    """

    fit_fraction: float
    holdout_fraction: float
    fit_rows: int
    holdout_rows: int
    max_rows: int | None
    max_holdout_rows: int | None

    @property
    def sampled(self) -> bool:
        """Whether any snapshot is sampled."""
        return self.fit_fraction < 1.0 or self.holdout_fraction < 1.0

    def fraction(self, as_of: Any, holdout_as_of: Any) -> float:
        """The fraction of the snapshot ``as_of``."""
        same = pd.Timestamp(as_of) == pd.Timestamp(holdout_as_of)
        return self.holdout_fraction if same else self.fit_fraction

    def as_params(self) -> dict[str, Any]:
        """What the MLflow run records (``sample.*`` parameters)."""
        return {
            "sample.max_rows": "none" if self.max_rows is None else self.max_rows,
            "sample.holdout_rows": "none"
            if self.max_holdout_rows is None
            else self.max_holdout_rows,
            "sample.fit_fraction": round(self.fit_fraction, 6),
            "sample.holdout_fraction": round(self.holdout_fraction, 6),
            "sample.fit_rows_before": self.fit_rows,
            "sample.holdout_rows_before": self.holdout_rows,
        }


def plan_sample(
    rows: Mapping[Any, int],
    holdout_as_of: Any,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    holdout_rows: int | None = DEFAULT_HOLDOUT_ROWS,
) -> SamplePlan:
    """The fractions that keep the fitting rows within ``max_rows`` and the holdout within ``holdout_rows``.

    Args:
        rows: rows per snapshot ``as_of`` (:func:`count_rows`), the holdout included.
        holdout_as_of: the holdout snapshot.
        max_rows: budget of all fitting snapshots together (None: no budget).
        holdout_rows: budget of the holdout snapshot (None: no budget).

    Below a budget the fraction is exactly 1 (no sampling).
    """
    for name, v in (("max_rows", max_rows), ("holdout_rows", holdout_rows)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1 (or None: no budget); got {v}")
    hold = pd.Timestamp(holdout_as_of)
    n_hold = sum(int(n) for a, n in rows.items() if pd.Timestamp(a) == hold)
    n_fit = sum(int(n) for a, n in rows.items() if pd.Timestamp(a) != hold)

    def frac(n: int, budget: int | None) -> float:
        return 1.0 if budget is None or n <= budget else budget / n

    return SamplePlan(
        fit_fraction=frac(n_fit, max_rows),
        holdout_fraction=frac(n_hold, holdout_rows),
        fit_rows=n_fit,
        holdout_rows=n_hold,
        max_rows=max_rows,
        max_holdout_rows=holdout_rows,
    )
