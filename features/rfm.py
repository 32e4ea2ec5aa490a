"""Order-based features: RFM, windowed orders and revenue, trends, rates, channel mix.

Definitions (``C`` = completed orders, ``R`` = returned, ``X`` = cancelled, all
with ``ts < as_of``; "lookback" is ``[as_of - lookback_days, as_of)``):

* ``recency_days``: days from the last ``C`` to ``as_of`` (NaN: never bought).
* ``frequency``: number of ``C`` in the lookback.
* ``monetary``: net revenue in the lookback = sum of ``C`` amounts - sum of ``R``
  amounts (cancelled orders carry no revenue).
* ``avg_order_value``: gross ``C`` revenue / ``frequency`` in the lookback (NaN if 0).
* ``days_since_first``: days from the first ``C`` (all history) to ``as_of``.
* ``ipi_mean_days`` / ``ipi_std_days``: mean and sample standard deviation of the
  gaps between consecutive ``C`` (all history); NaN with fewer than 2 (mean) or
  3 (std) completed orders. The mean telescopes to ``(last - first) / (n - 1)``.
* ``monetary_365d``: net revenue in ``[as_of - 365 d, as_of)``.
* ``orders_<w>d`` / ``revenue_<w>d``: number and gross revenue of ``C`` in each window.
* ``spend_trend_<w>d``: ``(S1 - S0) / (S1 + S0)`` with ``S1`` the gross ``C``
  revenue of the last ``w`` days and ``S0`` of the ``w`` days before; in [-1, 1],
  NaN when both are 0.
* ``cancel_rate``: ``X`` / all orders in the lookback; ``return_rate``: ``R`` / ``C``
  in the lookback (NaN when the denominator is 0).
* ``channel_share_<c>``: share of ``C`` in the lookback on channel ``c``, among
  those with a known channel (NaN when none is known).
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd

from features._expr import days_before, epoch, ratio, ts_lit, window_start, zero
from features.spec import FeatureParams, FeatureSpec

__all__ = ["order_specs", "order_features"]

_SRC = "orders"


def order_specs(p: FeatureParams) -> list[FeatureSpec]:
    """Catalog entries of the order-based features, in column order."""
    lb = p.lookback_days
    s = [
        FeatureSpec("recency_days", "Days since the last completed purchase (NaN: never bought).", "float64", None, _SRC, "rfm"),
        FeatureSpec("frequency", "Completed orders in the lookback window.", "int64", lb, _SRC, "rfm"),
        FeatureSpec("monetary", "Net revenue in the lookback window (completed - returned; cancelled excluded).", "float64", lb, _SRC, "rfm"),
        FeatureSpec("avg_order_value", "Gross completed revenue / completed orders in the lookback (NaN: no order).", "float64", lb, _SRC, "rfm"),
        FeatureSpec("tenure_days", "Days since the person's first order (any status) or event.", "float64", None, "orders+events", "rfm"),
        FeatureSpec("days_since_first", "Days since the first completed purchase (NaN: never bought).", "float64", None, _SRC, "rfm"),
        FeatureSpec("ipi_mean_days", "Mean days between consecutive completed purchases (NaN: < 2 purchases).", "float64", None, _SRC, "rfm"),
        FeatureSpec("ipi_std_days", "Sample std of days between consecutive completed purchases (NaN: < 3 purchases).", "float64", None, _SRC, "rfm"),
        FeatureSpec("monetary_365d", "Net revenue (completed - returned) in the last 365 days.", "float64", 365, _SRC, "rfm"),
    ]  # fmt: skip
    for w in p.windows:
        s.append(
            FeatureSpec(
                f"orders_{w}d",
                f"Completed orders in the last {w} days.",
                "int64",
                w,
                _SRC,
                "orders",
            )
        )
        s.append(
            FeatureSpec(
                f"revenue_{w}d",
                f"Gross completed revenue in the last {w} days.",
                "float64",
                w,
                _SRC,
                "orders",
            )
        )
    for w in p.trend_windows:
        s.append(
            FeatureSpec(
                f"spend_trend_{w}d",
                f"(last {w} d - prior {w} d) / (sum of both) of gross completed revenue; NaN when both are 0.",
                "float64",
                2 * w,
                _SRC,
                "orders",
            )
        )
    s += [
        FeatureSpec("cancel_rate", "Cancelled orders / all orders in the lookback (NaN: no order).", "float64", lb, _SRC, "orders"),
        FeatureSpec("return_rate", "Returned orders / completed orders in the lookback (NaN: no completed order).", "float64", lb, _SRC, "orders"),
    ]  # fmt: skip
    for c in p.channels:
        s.append(FeatureSpec(f"channel_share_{c}", f"Share of completed orders in the lookback on channel '{c}' (among orders with a known channel).", "float64", lb, _SRC, "orders"))  # fmt: skip
    return s


def order_features(orders: Any, as_of: pd.Timestamp, p: FeatureParams) -> Any:
    """One row per person with an order before ``as_of``: the order features.

    Also returns the helper column ``_first_ts`` (first order of any status),
    used with the events to compute ``tenure_days``.
    """
    o = orders.filter(orders.ts < ts_lit(as_of))
    done = o.status == "completed"
    ret = o.status == "returned"
    canc = o.status == "cancelled"
    in_lb = o.ts >= window_start(as_of, p.lookback_days)
    in_365 = o.ts >= window_start(as_of, 365)
    aggs: dict[str, Any] = {
        "_first_ts": o.ts.min(),
        "_last_c": o.ts.max(where=done),
        "_first_c": o.ts.min(where=done),
        "_n_c": o.count(where=done),
        "frequency": o.count(where=done & in_lb),
        "_gross_lb": o.amount.sum(where=done & in_lb),
        "_ret_lb": o.amount.sum(where=ret & in_lb),
        "_gross_365": o.amount.sum(where=done & in_365),
        "_ret_365": o.amount.sum(where=ret & in_365),
        "_n_lb": o.count(where=in_lb),
        "_n_canc_lb": o.count(where=canc & in_lb),
        "_n_ret_lb": o.count(where=ret & in_lb),
        "_n_chan_lb": o.count(where=done & in_lb & o.channel.notnull()),
    }
    for w in p.windows:
        in_w = o.ts >= window_start(as_of, w)
        aggs[f"orders_{w}d"] = o.count(where=done & in_w)
        aggs[f"revenue_{w}d"] = o.amount.sum(where=done & in_w)
    for w in p.trend_windows:
        last = o.ts >= window_start(as_of, w)
        prior = (o.ts >= window_start(as_of, 2 * w)) & ~last
        aggs[f"_s1_{w}"] = o.amount.sum(where=done & last)
        aggs[f"_s0_{w}"] = o.amount.sum(where=done & prior)
    for c in p.channels:
        aggs[f"_chan_{c}"] = o.count(where=done & in_lb & (o.channel == c))
    a = o.group_by("unified_id").aggregate(**aggs)

    ipi = _ipi_std(o.filter(done))
    a = a.left_join(ipi, "unified_id").drop("unified_id_right")

    cols: dict[str, Any] = {
        "recency_days": days_before(as_of, a._last_c),
        "frequency": a.frequency,
        "monetary": zero(a._gross_lb) - zero(a._ret_lb),
        "avg_order_value": ratio(a._gross_lb, a.frequency),
        "days_since_first": days_before(as_of, a._first_c),
        "ipi_mean_days": ratio(epoch(a._last_c) - epoch(a._first_c), a._n_c - 1) / 86400.0,
        "ipi_std_days": a._ipi_std,
        "monetary_365d": zero(a._gross_365) - zero(a._ret_365),
    }
    for w in p.windows:
        cols[f"orders_{w}d"] = a[f"orders_{w}d"]
        cols[f"revenue_{w}d"] = zero(a[f"revenue_{w}d"]).cast("float64")
    for w in p.trend_windows:
        s1, s0 = zero(a[f"_s1_{w}"]), zero(a[f"_s0_{w}"])
        cols[f"spend_trend_{w}d"] = ratio(s1 - s0, s1 + s0)
    cols["cancel_rate"] = ratio(a._n_canc_lb, a._n_lb)
    cols["return_rate"] = ratio(a._n_ret_lb, a.frequency)
    for c in p.channels:
        cols[f"channel_share_{c}"] = ratio(a[f"_chan_{c}"], a._n_chan_lb)
    return a.select("unified_id", "_first_ts", **cols)


def _ipi_std(c: Any) -> Any:
    """Sample std (days) of the gaps between consecutive completed orders, per person."""
    ep = epoch(c.ts)
    win = ibis.window(group_by=c.unified_id, order_by=c.ts)
    gaps = c.select("unified_id", gap=(ep - ep.lag().over(win)) / 86400.0)
    return gaps.group_by("unified_id").aggregate(_ipi_std=gaps.gap.std(how="sample"))


def rfm_scores(t: Any) -> dict[str, Any]:
    """Quintile scores 1-5 over the buyers (rows with a ``recency_days``), as columns of ``t``.

    ``score = 1 + floor(5 * rank / n)`` with the 0-based minimum rank among buyers,
    so ties share a score and the result does not depend on engine or row order
    (see :mod:`features.segments`); NULL for persons who never bought. Window
    functions partitioned by "is a buyer" keep it one pass (no self-join).
    """
    buyer = t.recency_days.notnull()
    n = t.count().over(ibis.window(group_by=buyer))

    def score(order_key: Any) -> Any:
        rank = ibis.rank().over(ibis.window(group_by=buyer, order_by=order_key))
        return ibis.ifelse(buyer, (1 + (5 * rank) // n).cast("int64"), ibis.null("int64"))

    return {
        "r_score": score(t.recency_days.desc()),
        "f_score": score(t.frequency),
        "m_score": score(t.monetary.round(2)),
    }
