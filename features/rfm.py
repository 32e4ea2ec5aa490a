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
from cip.features._expr import (
    days_before,
    epoch,
    money_sum,
    ratio,
    ts_lit,
    window_start,
    zero,
)
from cip.features.spec import FeatureParams, FeatureSpec

__all__ = ["order_specs", "order_features"]

_SRC = "orders"
_STATUSES = ("completed", "returned", "cancelled")


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


def order_features(
    orders: Any, as_of: pd.Timestamp, p: FeatureParams, *, rfm_only: bool = False
) -> Any:
    """One row per person with an order before ``as_of``: the order features.

    Also returns the helper column ``_first_ts`` (first order of any status),
    used with the events to compute ``tenure_days``. With ``rfm_only`` only the
    RFM core (:data:`features.RFM_COLUMNS` but tenure) and the scores are
    computed: one aggregation pass, no sort of the orders.
    """
    o = orders.filter(orders.ts < ts_lit(as_of))
    spans = {p.lookback_days, 365}
    if not rfm_only:
        spans |= {*p.windows, *p.trend_windows, *(2 * w for w in p.trend_windows)}
    spans_sorted = sorted(spans)
    # status and "smallest window holding the order" as integers, computed once per row
    o = o.mutate(
        _s=ibis.cases(*[(o.status == st, i) for i, st in enumerate(_STATUSES)], else_=-1),
        _age=ibis.cases(
            *[(o.ts >= window_start(as_of, d), d) for d in spans_sorted],
            else_=spans_sorted[-1] + 1,
        ),
    )
    done, ret, canc = (o._s == i for i in range(3))
    lb = p.lookback_days
    aggs: dict[str, Any] = {
        "_first_ts": o.ts.min(),
        "_last_c": o.ts.max(where=done),
        "_first_c": o.ts.min(where=done),
    }

    def agg(kind: str, cond: Any, key: str) -> str:
        """Memoised count / amount sum under a condition (one aggregate per distinct key)."""
        name = f"_{kind}_{key}"
        if name not in aggs:
            aggs[name] = o.count(where=cond) if kind == "n" else money_sum(o.amount, cond)
        return name

    def in_(days: int) -> Any:
        return o._age <= days

    freq = agg("n", done & in_(lb), f"c{lb}")
    gross_lb, ret_lb = agg("a", done & in_(lb), f"c{lb}"), agg("a", ret & in_(lb), f"r{lb}")
    gross_365, ret_365 = agg("a", done & in_(365), "c365"), agg("a", ret & in_(365), "r365")
    if not rfm_only:
        n_c = agg("n", done, "c_all")
        n_lb = agg("n", in_(lb), f"all{lb}")
        n_canc, n_ret = agg("n", canc & in_(lb), f"x{lb}"), agg("n", ret & in_(lb), f"r{lb}")
        n_chan = agg("n", done & in_(lb) & o.channel.notnull(), "chan")
        chans = {c: agg("n", done & in_(lb) & (o.channel == c), f"chan_{c}") for c in p.channels}
        win = {
            w: (agg("n", done & in_(w), f"c{w}"), agg("a", done & in_(w), f"c{w}"))
            for w in p.windows
        }
        trend = {
            w: (agg("a", done & in_(w), f"c{w}"), agg("a", done & in_(2 * w) & ~in_(w), f"p{w}"))
            for w in p.trend_windows
        }
    a = o.group_by("unified_id").aggregate(**aggs)
    a = a.mutate(
        recency_days=days_before(as_of, a._last_c),
        frequency=a[freq],
        monetary=zero(a[gross_lb]) - zero(a[ret_lb]),
    )
    # Scores on a narrow projection joined back (window operators carry every column
    # of their input); the aggregate is shared, so it is computed once (a CTE).
    narrow = a.select("unified_id", "recency_days", "frequency", "monetary")
    a = a.left_join(narrow.select("unified_id", **rfm_scores(narrow)), "unified_id")
    a = a.drop("unified_id_right")
    cols: dict[str, Any] = {
        "recency_days": a.recency_days,
        "frequency": a.frequency,
        "monetary": a.monetary,
        "avg_order_value": ratio(a[gross_lb], a[freq]),
        "days_since_first": days_before(as_of, a._first_c),
        "monetary_365d": zero(a[gross_365]) - zero(a[ret_365]),
    }
    scores = ("r_score", "f_score", "m_score")
    if rfm_only:
        return a.select("unified_id", "_first_ts", *scores, **cols)

    # a separate scan of the orders (not the coded relation above): sharing it would make
    # the engine materialise every order row (DuckDB turns a shared subquery into a CTE)
    completed = orders.filter((orders.status == "completed") & (orders.ts < ts_lit(as_of)))
    a = a.left_join(_ipi_std(completed), "unified_id").drop("unified_id_right")
    cols["ipi_mean_days"] = ratio(epoch(a._last_c) - epoch(a._first_c), a[n_c] - 1) / 86400.0
    cols["ipi_std_days"] = a._ipi_std
    for w, (n_w, rev_w) in win.items():
        cols[f"orders_{w}d"] = a[n_w]
        cols[f"revenue_{w}d"] = zero(a[rev_w]).cast("float64")
    for w, (last, prior) in trend.items():
        s1, s0 = zero(a[last]), zero(a[prior])
        cols[f"spend_trend_{w}d"] = ratio(s1 - s0, s1 + s0)
    cols["cancel_rate"] = ratio(a[n_canc], a[n_lb])
    cols["return_rate"] = ratio(a[n_ret], a[freq])
    for c, name in chans.items():
        cols[f"channel_share_{c}"] = ratio(a[name], a[n_chan])
    return a.select("unified_id", "_first_ts", *scores, **cols)


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
    (see :mod:`features.segments`); NULL for persons who never bought. The
    windows are partitioned by "is a buyer", so non-buyers never shift a rank.
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
