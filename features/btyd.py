"""The buy-till-you-die customer summary at ``as_of``: frequency, recency, T, monetary value.

The input of the BG/NBD and Gamma-Gamma models (:mod:`models.clv`), computed
point-in-time from the ``orders`` (only completed and returned orders with
``ts < as_of``; cancelled orders carry no revenue, as in :mod:`features.rfm`).
Times are in days; a *purchase* is a calendar day (UTC) with at least one
completed order (several orders on one day are one purchase, as in
``lifetimes``' summary).

* ``frequency``: repeat purchases = purchase days - 1.
* ``recency``: days from the first to the last purchase day (0 without repeats).
* ``T``: days from the first purchase day to ``as_of``.
* ``monetary_value``: mean gross completed revenue per *repeat* purchase day
  (the first day excluded, as the Gamma-Gamma model expects), times the
  person's net share ``max(0, (completed - returned) / completed)`` over all
  history before ``as_of``, so returns lower it in proportion (the
  ``future_spend`` label is net of returns too); 0 without repeats.
* ``last_period_spend`` (with ``horizon_days``): net revenue (completed -
  returned) in ``[as_of - horizon_days, as_of)``, the "same again" baseline.

One row per person with a completed order before ``as_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis
import pandas as pd
from cip.features._expr import (
    SECONDS_PER_DAY,
    days_before,
    epoch,
    from_micros,
    micros,
    money_sum,
    to_frame,
    ts_lit,
    window_start,
    zero,
)
from cip.features.inputs import load_inputs, restrict_persons
from cip.features.spec import to_as_of

__all__ = ["BTYD_COLUMNS", "compute_btyd_summary", "build_btyd_summary"]

#: Columns of the summary besides ``unified_id`` (and ``last_period_spend`` when asked for).
BTYD_COLUMNS: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")


def compute_btyd_summary(orders: Any, as_of: Any, horizon_days: int | None = None) -> Any:
    """The summary as an Ibis expression over the ``orders`` input (pure).

    Args:
        orders: the ``orders`` table of :class:`features.FeatureInputs`
            (``unified_id, ts, amount, status``).
        as_of: the as-of date; only orders before it are read.
        horizon_days: also compute ``last_period_spend`` over this many days.

    Returns:
        An Ibis table ``unified_id, frequency, recency, T, monetary_value
        [, last_period_spend]``.
    """
    ts = to_as_of(as_of)
    o = orders.filter(orders.ts < ts_lit(ts))
    done = o.filter(o.status == "completed")
    days = done.group_by(["unified_id", done.ts.truncate("D").name("day")]).aggregate(
        gross_u=micros(done.amount).sum()
    )
    w = ibis.window(group_by=days.unified_id)
    days = days.mutate(first_day=days.day.min().over(w))
    per = days.group_by("unified_id").aggregate(
        n_days=days.count(),
        first_day=days.first_day.min(),
        last_day=days.day.max(),
        gross=from_micros(days.gross_u.sum()),
        repeat_gross=from_micros(days.gross_u.sum(where=days.day > days.first_day)),
    )
    net = o.group_by("unified_id").aggregate(
        returned=money_sum(o.amount, o.status == "returned"),
        **(
            {
                "_c_h": money_sum(
                    o.amount, (o.status == "completed") & (o.ts >= window_start(ts, horizon_days))
                ),
                "_r_h": money_sum(
                    o.amount, (o.status == "returned") & (o.ts >= window_start(ts, horizon_days))
                ),
            }
            if horizon_days
            else {}
        ),
    )
    t = per.left_join(net, "unified_id").drop("unified_id_right")
    freq = (t.n_days - 1).cast("int64")
    gross = t.gross.cast("float64")
    share = ibis.greatest(
        ibis.ifelse(gross > 0, (gross - zero(t.returned)) / gross, ibis.literal(0.0)), 0.0
    )
    cols: dict[str, Any] = {
        "frequency": freq,
        "recency": (epoch(t.last_day) - epoch(t.first_day)) / SECONDS_PER_DAY,
        "T": days_before(ts, t.first_day),
        "monetary_value": ibis.ifelse(
            freq > 0, zero(t.repeat_gross).cast("float64") / freq.cast("float64") * share, 0.0
        ),
    }
    if horizon_days:
        cols["last_period_spend"] = (zero(t._c_h) - zero(t._r_h)).cast("float64")
    return t.select("unified_id", **cols)


def build_btyd_summary(
    store: Any,
    as_of: Any,
    horizon_days: int | None = None,
    *,
    persons: Callable[[Any], Any] | None = None,
) -> pd.DataFrame:
    """:func:`compute_btyd_summary` on a store, as pandas sorted by ``unified_id``.

    ``persons``: only those persons (an Ibis predicate on ``unified_id``, applied to
    the orders in the engine; :func:`features.inputs.restrict_persons`).
    """
    expr = compute_btyd_summary(
        restrict_persons(load_inputs(store), persons).orders, as_of, horizon_days
    )
    dtypes = {
        "unified_id": "str",
        "frequency": "int64",
        **dict.fromkeys(BTYD_COLUMNS[1:], "float64"),
    }
    if horizon_days:
        dtypes["last_period_spend"] = "float64"
    return to_frame(expr, dtypes)
