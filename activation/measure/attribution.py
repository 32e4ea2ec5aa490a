"""Attribution: orders (web, app and store) credited to the messages that came before them.

An order is attributed when its person (``unified_id``, so a till receipt
joined by loyalty card counts like a web order) had a *touch* -- by default a
click; ``touch="send"`` credits every message sent -- within ``window_days``
before it. Each attributed order gets its **last touch** and **first touch**
(campaign, channel, time) and the **number of messages** sent to the person in
the window before it. Attribution is reported as facts (which messages came
before which orders), not as lift: for what the messages *caused*, see
:mod:`cip.activation.measure.lift`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from cip.profiles.store import Store

__all__ = [
    "ATTRIBUTION_DIMENSIONS",
    "Attribution",
    "person_orders",
    "attribute_orders",
    "summarise_attribution",
]

#: Dimensions an attribution summary can be split by.
ATTRIBUTION_DIMENSIONS = ("campaign", "channel", "day", "order_channel")
Touch = Literal["click", "open", "send"]
Model = Literal["last", "first"]


def person_orders(store: Store) -> pd.DataFrame:
    """Completed orders with their person: ``unified_id, order_id, ts, amount, order_channel``.

    Orders are joined to ``record_map`` (the identity graph) when it exists,
    else a person is the shop ``customer_id``.
    """
    cols = "o.order_id, o.ts, COALESCE(o.amount, 0) AS amount, o.channel AS order_channel"
    done = "COALESCE(o.status, 'completed') = 'completed'"
    if store.has_table("record_map"):
        sql = (
            f"SELECT m.unified_id, {cols} FROM orders o JOIN record_map m "
            f"ON m.source_table = 'orders' AND m.record_id = o.record_id WHERE {done}"
        )
    else:
        sql = f"SELECT o.customer_id AS unified_id, {cols} FROM orders o WHERE {done} AND o.customer_id IS NOT NULL"
    df = store.sql(sql)
    df["ts"] = pd.to_datetime(df["ts"])
    return df


def attribute_orders(
    facts: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    window_days: float = 7.0,
    touch: Touch = "click",
) -> pd.DataFrame:
    """One row per attributed order: its first and last touch and the messages before it.

    Args:
        facts: message events (:func:`cip.activation.measure.facts.message_facts`):
            ``unified_id, ts, event_type, channel, campaign, message_id`` (and ``machine``).
        orders: ``unified_id, order_id, ts, amount, order_channel`` (:func:`person_orders`).
        window_days: a touch counts for an order placed at most this long after it.
        touch: the event type that is a touch (machine opens never are).

    Returns:
        ``unified_id, order_id, ts, amount, order_channel, first_campaign,
        first_channel, first_ts, last_campaign, last_channel, last_ts, messages``.
    """
    out_cols = [
        "unified_id", "order_id", "ts", "amount", "order_channel",
        "first_campaign", "first_channel", "first_ts",
        "last_campaign", "last_channel", "last_ts", "messages",
    ]  # fmt: skip
    if facts.empty or orders.empty:
        return pd.DataFrame(columns=out_cols)
    window = pd.Timedelta(days=window_days)
    ev = facts
    if "machine" in ev:
        ev = ev[~ev["machine"].astype(bool)]
    touches = ev.loc[ev["event_type"].eq(touch), ["unified_id", "ts", "campaign", "channel"]]
    sends = ev.loc[ev["event_type"].eq("send"), ["unified_id", "ts"]]
    o = orders[["unified_id", "order_id", "ts", "amount", "order_channel"]]
    pairs = o.merge(touches.rename(columns={"ts": "touch_ts"}), on="unified_id")
    pairs = pairs[(pairs["touch_ts"] <= pairs["ts"]) & (pairs["touch_ts"] >= pairs["ts"] - window)]
    if pairs.empty:
        return pd.DataFrame(columns=out_cols)
    pairs = pairs.sort_values(["unified_id", "order_id", "touch_ts"], kind="stable")
    g = pairs.groupby(["unified_id", "order_id"], sort=False)
    first, last = (
        g.head(1).set_index(["unified_id", "order_id"]),
        g.tail(1).set_index(["unified_id", "order_id"]),
    )
    res = last[["ts", "amount", "order_channel"]].copy()
    for name, part in (("first", first), ("last", last)):
        res[f"{name}_campaign"] = part["campaign"]
        res[f"{name}_channel"] = part["channel"]
        res[f"{name}_ts"] = part["touch_ts"]
    sp = o.merge(sends.rename(columns={"ts": "send_ts"}), on="unified_id")
    sp = sp[(sp["send_ts"] <= sp["ts"]) & (sp["send_ts"] >= sp["ts"] - window)]
    counts = sp.groupby(["unified_id", "order_id"]).size()
    res["messages"] = counts.reindex(res.index).fillna(0).astype("int64")
    return res.reset_index()[out_cols]


@dataclass(frozen=True)
class Attribution:
    """Attributed orders summed per dimension (``cip measure attribution``)."""

    model: str
    touch: str
    window_days: float
    by: tuple[str, ...]
    orders: int  # completed orders considered
    attributed: int
    rows: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.model,
            "touch": self.touch,
            "window_days": self.window_days,
            "by": list(self.by),
            "orders": self.orders,
            "attributed_orders": self.attributed,
            "rows": self.rows,
        }


def summarise_attribution(
    attributed: pd.DataFrame,
    *,
    model: Model = "last",
    by: tuple[str, ...] = ("campaign", "channel"),
    orders: int | None = None,
    touch: str = "click",
    window_days: float = 7.0,
) -> Attribution:
    """Orders, revenue and mean messages before conversion per ``by`` under ``model``.

    ``campaign`` / ``channel`` are the credited touch's (first or last),
    ``day`` the order's date and ``order_channel`` where it was placed (web,
    app, store, ...).
    """
    bad = [b for b in by if b not in ATTRIBUTION_DIMENSIONS]
    if bad:
        raise ValueError(f"unknown attribution dimension(s) {bad}; use {ATTRIBUTION_DIMENSIONS}")
    if model not in ("last", "first"):
        raise ValueError(f"unknown attribution model {model!r}; use last or first")
    a = attributed
    frame = pd.DataFrame(
        {
            "campaign": a[f"{model}_campaign"],
            "channel": a[f"{model}_channel"],
            "day": pd.to_datetime(a["ts"]).dt.strftime("%Y-%m-%d"),
            "order_channel": a["order_channel"],
            "amount": a["amount"].astype(float),
            "messages": a["messages"].astype(float),
        }
    )
    rows: list[dict[str, Any]] = []
    if len(frame):
        keys = list(by)
        grp = frame.groupby(keys, dropna=False, sort=True) if keys else [((), frame)]
        for key, part in grp:
            key = key if isinstance(key, tuple) else (key,)
            row: dict[str, Any] = {
                k: (None if pd.isna(v) else v) for k, v in zip(keys, key, strict=True)
            }
            row.update(
                orders=len(part),
                revenue=round(float(part["amount"].sum()), 2),
                mean_messages_before=round(float(part["messages"].mean()), 3),
            )
            rows.append(row)
    return Attribution(
        model, touch, window_days, tuple(by), orders if orders is not None else len(a), len(a), rows
    )
