"""Behavioural features from events (and product categories).

Present only when the inputs have events (resp. products with categories);
otherwise these columns are absent. Definitions (events with ``ts < as_of``;
"lookback" is ``[as_of - lookback_days, as_of)``):

* ``<type>_<w>d``: events of each type in ``FeatureParams.event_types`` in each
  window; ``events_<w>d``: all events in the window.
* ``sessions_<w>d``: sessions with a *visit* event in the window. A session is
  the event's ``session_id``; events without one count one session per person
  and calendar day (UTC). Visit events are every type except e-mail events
  (``email_send``, ``email_open``, ``email_click``) and ``consent``.
* ``view_to_cart_rate``: ``add_to_cart`` / ``product_view`` in the lookback;
  ``cart_to_purchase_rate``: ``purchase`` events / ``add_to_cart`` in the
  lookback (NaN when the denominator is 0; not capped at 1).
* ``days_since_last_view`` (``product_view``), ``days_since_last_cart``
  (``add_to_cart``), ``days_since_last_email_open``, ``days_since_last_visit``
  (any visit event): all history, NaN when never.
* ``email_open_rate`` / ``email_click_rate``: opens / sends and clicks / sends
  in the lookback (NaN without sends).
* ``reviews``, ``avg_review_score``, ``low_reviews``: review events in the
  lookback, their mean ``rating`` (NaN: no rated review) and how many have
  ``rating <= low_review_max``.
* ``categories_viewed``: distinct categories of products viewed in the lookback.
* ``distinct_categories`` / ``top_category_share`` (order lines + products):
  distinct categories bought in the lookback (completed lines) and the share of
  gross line revenue in the top category (NaN: no revenue).
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from cip.features._expr import days_before, micros, ratio, ts_lit, window_start, zero
from cip.features.spec import FeatureParams, FeatureSpec

__all__ = ["event_specs", "category_specs", "event_features", "category_features"]

NON_VISIT_TYPES: tuple[str, ...] = ("email_send", "email_open", "email_click", "consent")
_FUNNEL_TYPES = ("product_view", "add_to_cart", "purchase", "email_send", "email_open",
                 "email_click", "review")  # fmt: skip
_EV = "events"


def event_specs(p: FeatureParams, *, with_products: bool = True) -> list[FeatureSpec]:
    """Catalog entries of the event features, in column order."""
    lb = p.lookback_days
    s: list[FeatureSpec] = []
    for w in p.windows:
        s.append(
            FeatureSpec(
                f"events_{w}d", f"All events in the last {w} days.", "int64", w, _EV, "events"
            )
        )
        for et in p.event_types:
            s.append(
                FeatureSpec(
                    f"{et}_{w}d", f"'{et}' events in the last {w} days.", "int64", w, _EV, "events"
                )
            )
        s.append(
            FeatureSpec(
                f"sessions_{w}d",
                f"Sessions with a visit in the last {w} days (session_id, else one per calendar day).",
                "int64",
                w,
                _EV,
                "events",
            )
        )
    s += [
        FeatureSpec("view_to_cart_rate", "add_to_cart / product_view events in the lookback (NaN: no view).", "float64", lb, _EV, "events"),
        FeatureSpec("cart_to_purchase_rate", "purchase / add_to_cart events in the lookback (NaN: no cart).", "float64", lb, _EV, "events"),
        FeatureSpec("days_since_last_view", "Days since the last product_view (NaN: never).", "float64", None, _EV, "events"),
        FeatureSpec("days_since_last_cart", "Days since the last add_to_cart (NaN: never).", "float64", None, _EV, "events"),
        FeatureSpec("days_since_last_email_open", "Days since the last email_open (NaN: never).", "float64", None, _EV, "events"),
        FeatureSpec("days_since_last_visit", "Days since the last visit event, i.e. any non-e-mail event (NaN: never).", "float64", None, _EV, "events"),
        FeatureSpec("email_open_rate", "email_open / email_send events in the lookback (NaN: no send).", "float64", lb, _EV, "events"),
        FeatureSpec("email_click_rate", "email_click / email_send events in the lookback (NaN: no send).", "float64", lb, _EV, "events"),
        FeatureSpec("reviews", "Review events in the lookback.", "int64", lb, _EV, "events"),
        FeatureSpec("avg_review_score", "Mean rating of reviews in the lookback (NaN: no rated review).", "float64", lb, _EV, "events"),
        FeatureSpec("low_reviews", f"Reviews in the lookback with rating <= {p.low_review_max:g}.", "int64", lb, _EV, "events"),
    ]  # fmt: skip
    if with_products:
        s.append(FeatureSpec("categories_viewed", "Distinct product categories viewed in the lookback.", "int64", lb, "events+products", "categories"))  # fmt: skip
    return s


def category_specs(p: FeatureParams) -> list[FeatureSpec]:
    """Catalog entries of the purchase-category features."""
    lb, src = p.lookback_days, "order_lines+products"
    return [
        FeatureSpec("distinct_categories", "Distinct product categories bought (completed lines) in the lookback.", "int64", lb, src, "categories"),
        FeatureSpec("top_category_share", "Share of gross line revenue (products with a category) in the lookback spent in the top category (NaN: none).", "float64", lb, src, "categories"),
    ]  # fmt: skip


def event_features(events: Any, as_of: pd.Timestamp, p: FeatureParams, products: Any = None) -> Any:
    """One row per person with an event before ``as_of``: the event features.

    Also returns ``_first_ev_ts`` (first event) for ``tenure_days``.
    """
    e = events.filter(events.ts < ts_lit(as_of))
    et = e.event_type
    visit = et.notin(NON_VISIT_TYPES)
    # all history: first event and the "days since last ..." features (few aggregates)
    hist = e.group_by("unified_id").aggregate(
        _first_ev_ts=e.ts.min(),
        _last_view=e.ts.max(where=et == "product_view"),
        _last_cart=e.ts.max(where=et == "add_to_cart"),
        _last_open=e.ts.max(where=et == "email_open"),
        _last_visit=e.ts.max(where=visit),
    )
    # Windowed counts: one aggregation per window over that window's rows only (the
    # event type coded once as an integer). Cheaper than ~50 filtered counts over
    # every row: the short windows hold few rows (about 2x less CPU on DuckDB).
    spans = sorted({*p.windows, p.lookback_days})
    r = e.filter(e.ts >= window_start(as_of, spans[-1]))
    codes = {t: i for i, t in enumerate(dict.fromkeys([*p.event_types, *_FUNNEL_TYPES]))}
    lb = p.lookback_days
    a = hist
    for d in spans:
        rw = r.filter(r.ts >= window_start(as_of, d))
        rw = rw.mutate(
            _c=ibis.cases(*[(rw.event_type == t, i) for t, i in codes.items()], else_=-1)
        )
        types = [t for t in codes if (d in p.windows and t in p.event_types) or d == lb]
        aggs = {f"_n_all_{d}": rw.count()}
        aggs.update({f"_n_{t}_{d}": rw.count(where=rw._c == codes[t]) for t in types})
        if d == lb:
            review = rw._c == codes["review"]
            aggs["avg_review_score"] = rw.rating.mean(where=review)
            aggs["low_reviews"] = rw.count(where=review & (rw.rating <= p.low_review_max))
        a = a.left_join(rw.group_by("unified_id").aggregate(**aggs), "unified_id")
        a = a.drop("unified_id_right")
    windowed = {}
    for w in p.windows:
        windowed[f"events_{w}d"] = f"_n_all_{w}"
        for t in p.event_types:
            windowed[f"{t}_{w}d"] = f"_n_{t}_{w}"
    funnel = {t: f"_n_{t}_{lb}" for t in _FUNNEL_TYPES}
    a = a.left_join(_sessions(r.filter(visit), as_of, p), "unified_id").drop("unified_id_right")
    cols: dict[str, Any] = {}
    for w in p.windows:
        cols[f"events_{w}d"] = zero(a[windowed[f"events_{w}d"]])
        for t in p.event_types:
            cols[f"{t}_{w}d"] = zero(a[windowed[f"{t}_{w}d"]])
        cols[f"sessions_{w}d"] = zero(a[f"sessions_{w}d"])
    f = {t: zero(a[name]) for t, name in funnel.items()}
    cols.update(
        view_to_cart_rate=ratio(f["add_to_cart"], f["product_view"]),
        cart_to_purchase_rate=ratio(f["purchase"], f["add_to_cart"]),
        days_since_last_view=days_before(as_of, a._last_view),
        days_since_last_cart=days_before(as_of, a._last_cart),
        days_since_last_email_open=days_before(as_of, a._last_open),
        days_since_last_visit=days_before(as_of, a._last_visit),
        email_open_rate=ratio(f["email_open"], f["email_send"]),
        email_click_rate=ratio(f["email_click"], f["email_send"]),
        reviews=f["review"],
        avg_review_score=a.avg_review_score.cast("float64"),
        low_reviews=zero(a.low_reviews),
    )
    out = a.select("unified_id", "_first_ev_ts", **cols)
    if products is not None:
        out = out.left_join(_categories_viewed(r, as_of, p, products), "unified_id")
        out = out.drop("unified_id_right").mutate(categories_viewed=zero(ibis._.categories_viewed))
    return out


def _sessions(v: Any, as_of: pd.Timestamp, p: FeatureParams) -> Any:
    """Sessions per window: group visits by (person, session), count sessions seen in each window."""
    day = ibis.ifelse(v.session_id.isnull(), v.ts.date(), ibis.null("date"))
    s = v.group_by(["unified_id", v.session_id.name("sid"), day.name("sday")]).aggregate(
        last=v.ts.max()
    )
    return s.group_by("unified_id").aggregate(
        **{f"sessions_{w}d": s.count(where=s["last"] >= window_start(as_of, w)) for w in p.windows}
    )


def _categories_viewed(e: Any, as_of: pd.Timestamp, p: FeatureParams, products: Any) -> Any:
    v = e.filter((e.event_type == "product_view") & (e.ts >= window_start(as_of, p.lookback_days)))
    j = v.join(products, "item_id")
    return j.group_by("unified_id").aggregate(categories_viewed=j.category.nunique())


def category_features(lines: Any, as_of: pd.Timestamp, p: FeatureParams, products: Any) -> Any:
    """Purchase-category features from completed order lines in the lookback."""
    bought = lines.filter(
        (lines.ts < ts_lit(as_of))
        & (lines.ts >= window_start(as_of, p.lookback_days))
        & (lines.status == "completed")
    )
    j = bought.join(products, "item_id")
    rev = micros(j.quantity.fill_null(0.0) * j.unit_price.fill_null(0.0))
    # in whole micro-units: the sums are exact and the share the same on every engine
    per_cat = j.group_by(["unified_id", "category"]).aggregate(rev=rev.sum().cast("int64"))
    c = per_cat.group_by("unified_id").aggregate(
        distinct_categories=per_cat.count(), _top=per_cat.rev.max(), _total=per_cat.rev.sum()
    )
    return c.select("unified_id", "distinct_categories", top_category_share=ratio(c._top, c._total))
