"""Orders with their fate (cancellation, delivery, return), reviews and e-mail campaigns.

All vectorised over orders / recipients; times in seconds from the window start.
"""

from __future__ import annotations

import numpy as np
from cip.pipelines.simulator._activity import Activity
from cip.pipelines.simulator._people import People
from cip.pipelines.simulator._sessions import merge_lines

_RATING_P = {  # P(rating = 1..5)
    "late": np.array([0.45, 0.3, 0.15, 0.07, 0.03]),
    "returned": np.array([0.2, 0.3, 0.3, 0.15, 0.05]),
    "ok": np.array([0.02, 0.03, 0.1, 0.35, 0.5]),
}


def online_orders(
    rng: np.random.Generator,
    people: People,
    act: Activity,
    web_lines: dict[str, np.ndarray],
    app_lines: dict[str, np.ndarray],
    web_login_at_order: np.ndarray,
    end_sec: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Orders (one row each) and their lines, joining the day loop's fates to the sessions.

    ``web_login_at_order`` says per web order whether the buyer was logged in
    (else a guest checkout with an e-mail only). Returns ``(orders, lines)``;
    ``lines['order']`` indexes ``orders``.
    """
    is_app = act.order_app
    n = len(is_app)
    # the k-th web (app) order of the day loop is the k-th buying web (app) session
    src_idx = np.empty(n, dtype=np.int64)
    src_idx[~is_app] = np.arange(int((~is_app).sum()))
    src_idx[is_app] = np.arange(int(is_app.sum()))
    ts = np.zeros(n, dtype=np.int64)
    ts[~is_app] = web_lines["order_ts"]
    ts[is_app] = app_lines["order_ts"]
    guest = np.zeros(n, dtype=bool)
    guest[~is_app] = ~web_login_at_order
    cancelled = act.order_cancelled
    delivered = np.where(
        cancelled, -1, ts + act.order_delay * 86400 + rng.integers(2 * 3600, 10 * 3600, n)
    )
    delivered = np.where(delivered > end_sec, -1, delivered)
    ret_ts = delivered + (2 + rng.poisson(5.0, n)) * 86400 + rng.integers(0, 86400, n)
    returned = act.order_returned & (delivered >= 0) & (ret_ts <= end_sec)
    orders = {
        "person": act.order_person,
        "ts": ts,
        "app": is_app,
        "guest": guest,
        "cancelled": cancelled,
        "late": act.order_late,
        "delay": act.order_delay,
        "delivered": delivered,
        "returned": returned,
        "return_ts": np.where(returned, ret_ts, -1),
    }
    # lines: web lines then app lines, mapped to the combined order numbering
    web_orders = np.flatnonzero(~is_app)
    app_orders = np.flatnonzero(is_app)
    order = np.concatenate([web_orders[web_lines["order"]], app_orders[app_lines["order"]]])
    item = np.concatenate([web_lines["item"], app_lines["item"]])
    qty = np.concatenate([web_lines["qty"], app_lines["qty"]])
    order, item, qty = merge_lines(order, item, qty)
    lines = {"order": order, "item": item, "qty": qty}
    return orders, lines


def reviews(
    rng: np.random.Generator, orders: dict[str, np.ndarray], first_item: np.ndarray, end_sec: int
) -> dict[str, np.ndarray]:
    """Reviews of delivered orders; late deliveries and returns get worse ratings."""
    n = len(orders["ts"])
    late, ret = orders["late"], orders["returned"]
    p = np.where(late, 0.5, np.where(ret, 0.35, 0.12))
    ts = orders["delivered"] + 3600 + (rng.exponential(2.0, n) * 86400).astype(np.int64)
    keep = (orders["delivered"] >= 0) & (rng.random(n) < p) & (ts <= end_sec)
    idx = np.flatnonzero(keep)
    kind = np.where(late[idx], 0, np.where(ret[idx], 1, 2))
    u = rng.random(len(idx))
    cum = np.stack([np.cumsum(_RATING_P[k]) for k in ("late", "returned", "ok")])
    rating = 1 + (u[:, None] > cum[kind]).sum(axis=1)
    return {
        "person": orders["person"][idx],
        "order": idx,
        "ts": ts[idx],
        "item": first_item[idx],
        "rating": np.minimum(rating, 5),
        "delay": orders["delay"][idx],
        "late": late[idx],
    }


def campaign_days(start_weekday: int, days: int) -> np.ndarray:
    """Weekly newsletters on Thursdays plus two November promotions (day indices)."""
    d = np.arange(days)
    thursdays = d[(d + start_weekday) % 7 == 3]
    extra = d[(d + start_weekday) % 7 == 0][-8:-6] if days > 60 else d[:0]  # late-year Mondays
    return np.unique(np.concatenate([thursdays, extra]))


def email_events(
    rng: np.random.Generator,
    people: People,
    act: Activity,
    camp_days: np.ndarray,
    end_sec: int,
) -> dict[str, np.ndarray]:
    """Sends to consenting people, opens driven by engagement (and being active), clicks."""
    n, c = people.n, len(camp_days)
    send = 9 * 3600 + camp_days.astype(np.int64) * 86400  # (c,)
    consent = people.consent[:, 0] == 1
    withdrawn_at = np.where(people.withdraw == 0, people.update_sec, np.iinfo(np.int64).max)
    known = np.maximum(people.signup_sec, people.join_day * 86400)
    eligible = (
        consent[:, None]
        & (known[:, None] <= send[None, :])
        & (send[None, :] < withdrawn_at[:, None])
        & (rng.random((n, c)) < 0.6)
    )
    pi, ci = np.nonzero(eligible)
    send_ts = send[ci] + rng.integers(0, 3600, len(pi))
    active = (act.churn_day[pi] < 0) | (act.churn_day[pi] > camp_days[ci])
    p_open = np.where(active, 1.0 / (1.0 + np.exp(-(-1.3 + 0.8 * people.z_eng[pi]))), 0.01)
    opened = rng.random(len(pi)) < p_open
    open_ts = send_ts + 60 + (rng.exponential(6.0, len(pi)) * 3600).astype(np.int64)
    opened &= open_ts <= end_sec
    clicked = opened & (rng.random(len(pi)) < 0.22)
    click_ts = open_ts + 5 + rng.exponential(90.0, len(pi)).astype(np.int64)
    clicked &= click_ts <= end_sec
    kind = np.concatenate([np.zeros(len(pi), int), np.ones(int(opened.sum()), int), np.full(int(clicked.sum()), 2)])  # fmt: skip
    ts = np.concatenate([send_ts, open_ts[opened], click_ts[clicked]])
    person = np.concatenate([pi, pi[opened], pi[clicked]])
    camp = np.concatenate([ci, ci[opened], ci[clicked]])
    srt = np.lexsort((kind, ts))
    new_addr = (people.new_email[person] != "") & (people.update_sec[person] <= ts)
    return {
        "person": person[srt],
        "kind": kind[srt],  # 0 send, 1 open, 2 click
        "ts": ts[srt],
        "campaign": camp[srt],
        "new_address": new_addr[srt],
    }
