"""Labels for churn, purchase propensity and future spend.

For a snapshot ``as_of`` and a horizon of ``h`` days (see :mod:`features.spec`
for the time convention), over the feature population (every person with at
least one order or event before ``as_of``):

* ``active`` (0/1): at least one completed purchase in the lookback
  ``[as_of - lookback_days, as_of)``.
* ``churn`` (1.0 / 0.0 / NaN): for active persons, 1 when they make no completed
  purchase in the horizon ``[as_of, as_of + h)``, else 0; NaN for non-active
  persons (churn is only defined for customers who were active).
* ``purchase`` (0/1): any completed purchase in the horizon (defined for everyone).
* ``future_spend``: net revenue (completed - returned) in the horizon.

A label needs the whole horizon to be observed: an ``as_of`` whose horizon end
``as_of + h`` lies after :func:`data_end` raises :class:`~profiles.errors.DataError`.
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from cip.features._expr import money_sum, to_frame, ts_lit, window_start, zero
from cip.features.inputs import FeatureInputs, load_inputs
from cip.features.spec import to_as_of
from cip.profiles.errors import DataError

__all__ = ["LABEL_COLUMNS", "data_end", "compute_labels", "build_labels", "check_horizon"]

LABEL_COLUMNS: tuple[str, ...] = ("churn", "purchase", "future_spend", "active")


def data_end(store: Any) -> pd.Timestamp:
    """The last timestamp in ``orders`` and ``events`` of the store.

    Raises:
        DataError: when the store holds no orders and no events.
    """
    names = set(store.table_names())
    con = store.ibis()
    ends = []
    for table in ("orders", "events"):
        if table in names:
            value = con.table(table).ts.max().to_pandas()
            if value is not None and not pd.isna(value):
                ends.append(pd.Timestamp(value))
    if not ends:
        raise DataError("the store has no orders or events: there is no data to label")
    return max(ends)


def check_horizon(as_of: Any, horizon_days: int, end: pd.Timestamp) -> pd.Timestamp:
    """Validate that the horizon of ``as_of`` is observed; returns the normalised ``as_of``."""
    ts = to_as_of(as_of)
    if not isinstance(horizon_days, int) or horizon_days <= 0:
        raise DataError(f"horizon_days must be a positive number of days, got {horizon_days!r}")
    horizon_end = ts + pd.Timedelta(days=horizon_days)
    if horizon_end > end:
        latest = (end - pd.Timedelta(days=horizon_days)).floor("D")
        raise DataError(
            f"cannot label as_of {ts:%Y-%m-%d %H:%M:%S} with a {horizon_days}-day horizon: "
            f"the horizon ends {horizon_end:%Y-%m-%d %H:%M:%S}, after the end of the data "
            f"({end:%Y-%m-%d %H:%M:%S}); the latest labelable as_of is {latest:%Y-%m-%d}"
        )
    return ts


def population(inputs: FeatureInputs, as_of: pd.Timestamp) -> Any:
    """Every person with at least one order or event before ``as_of`` (``unified_id``)."""
    o = inputs.orders
    people = o.filter(o.ts < ts_lit(as_of)).select("unified_id")
    if inputs.events is not None:
        e = inputs.events
        people = people.union(e.filter(e.ts < ts_lit(as_of)).select("unified_id"))
    return people.distinct()


def compute_labels(
    inputs: FeatureInputs, as_of: Any, horizon_days: int, lookback_days: int = 365
) -> Any:
    """The label expression (pure; no check of the data end, see :func:`build_labels`).

    Returns an Ibis table ``unified_id, as_of, churn, purchase, future_spend, active``.
    """
    ts = to_as_of(as_of)
    end = ts + pd.Timedelta(days=horizon_days)
    o = inputs.orders
    done = o.status == "completed"
    hist = o.filter(done & (o.ts < ts_lit(ts)) & (o.ts >= window_start(ts, lookback_days)))
    hist = hist.group_by("unified_id").aggregate(_n_hist=hist.count())
    fut = o.filter((o.ts >= ts_lit(ts)) & (o.ts < ts_lit(end)))
    fut = fut.group_by("unified_id").aggregate(
        _n_fut=fut.count(where=fut.status == "completed"),
        _gross=money_sum(fut.amount, fut.status == "completed"),
        _ret=money_sum(fut.amount, fut.status == "returned"),
    )
    t = population(inputs, ts)
    t = t.left_join(hist, "unified_id").drop("unified_id_right")
    t = t.left_join(fut, "unified_id").drop("unified_id_right")
    active = zero(t._n_hist) > 0
    bought = zero(t._n_fut) > 0
    return t.select(
        "unified_id",
        as_of=ts_lit(ts),
        churn=ibis.ifelse(active, ibis.ifelse(bought, 0.0, 1.0), ibis.null("float64")),
        purchase=ibis.ifelse(bought, 1, 0).cast("int64"),
        future_spend=(zero(t._gross) - zero(t._ret)).cast("float64"),
        active=ibis.ifelse(active, 1, 0).cast("int64"),
    )


def build_labels(
    store: Any, as_of: Any, horizon_days: int, lookback_days: int = 365
) -> pd.DataFrame:
    """Labels of one snapshot as a DataFrame (one row per person of the population).

    Columns ``unified_id, as_of, churn, purchase, future_spend, active``; rows
    sorted by ``unified_id``.

    Raises:
        DataError: when ``as_of + horizon_days`` is after :func:`data_end`.
    """
    ts = check_horizon(as_of, horizon_days, data_end(store))
    return labels_to_pandas(compute_labels(load_inputs(store), ts, horizon_days, lookback_days))


def labels_to_pandas(expr: Any) -> pd.DataFrame:
    """Execute a label expression and give it stable dtypes."""
    return to_frame(
        expr,
        {
            "unified_id": "str",
            "as_of": "datetime64[us]",
            "churn": "float64",
            "purchase": "int64",
            "future_spend": "float64",
            "active": "int64",
        },
    )
