"""Day-by-day behaviour of a chunk of people: visits, orders, deliveries and churn.

The loop runs over days (not rows); each day is vectorised over all people.
Churn is a discrete-time proportional hazard (Cox-style):

    h_i(d) = h0 * exp(b_bad * bad_i(d) + b_rec * min(r_i(d) / 60, 3)
                      - b_eng * z_eng_i + b_one * oneoff_i * [orders_i(d) > 0])

where ``bad_i`` counts late deliveries (1 each) and returns (0.5 each) so far,
``r_i`` is the days since the last purchase (or since joining) and ``z_eng`` the
latent engagement that also drives visits and e-mail opens. After churning a
person makes no more visits or purchases (e-mails still arrive, opens mostly stop).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from cip.pipelines.simulator._people import People

H0 = 0.0011
B_BAD = 0.9
B_REC = 0.55
B_ENG = 0.55
B_ONEOFF = 2.2
P_CANCEL = 0.03


def season(start: date, days: int) -> np.ndarray:
    """Demand multiplier per day: weekends, the November-December peak, a summer dip."""
    d = np.arange(days)
    dates = np.datetime64(start) + d.astype("timedelta64[D]")
    weekday = (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday = 0
    week = np.array([0.95, 0.95, 0.97, 1.0, 1.05, 1.12, 1.1])[weekday]
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    peak = 0.45 * np.exp(-(((doy - 332) / 18.0) ** 2)) + 0.25 * np.exp(-(((doy - 355) / 6.0) ** 2))
    summer = -0.1 * np.exp(-(((doy - 215) / 25.0) ** 2))
    return week * (1.0 + peak + summer)


@dataclass
class Activity:
    """What a chunk of people did (chunk-local person indices)."""

    web_person: np.ndarray
    web_day: np.ndarray
    web_buy: np.ndarray  # bool: the session ends with an order
    app_person: np.ndarray
    app_day: np.ndarray
    app_buy: np.ndarray
    store_person: np.ndarray
    store_day: np.ndarray
    # online orders, in the order of (channel, session) after sorting: see order_session
    order_person: np.ndarray
    order_day: np.ndarray
    order_app: np.ndarray  # bool: placed in the app (else web)
    order_cancelled: np.ndarray
    order_returned: np.ndarray
    order_late: np.ndarray
    order_delay: np.ndarray  # delivery days
    churn_day: np.ndarray  # per person: day of churn, -1 if still active at the end
    bad: np.ndarray  # per person: bad-experience score at the end
    n_orders: np.ndarray  # per person: online + store purchases


def simulate_activity(rng: np.random.Generator, people: People, days: int, start: date) -> Activity:
    """Run the day loop for one chunk of people."""
    n = people.n
    s = season(start, days)
    alive = np.ones(n, dtype=bool)
    churn_day = np.full(n, -1, dtype=np.int64)
    last_buy = people.join_day.astype(np.int64).copy()
    bad = np.zeros(n)
    n_orders = np.zeros(n, dtype=np.int64)
    static = -B_ENG * people.z_eng
    web: list[tuple[np.ndarray, ...]] = []
    app: list[tuple[np.ndarray, ...]] = []
    store: list[np.ndarray] = []
    orders: list[tuple[np.ndarray, ...]] = []
    for d in range(days):
        act = alive & (people.join_day <= d)
        u = rng.random((3, n))
        visit = act & (u[0] < people.visit_rate * s[d])
        vis = np.flatnonzero(visit)
        in_app = u[1, vis] < people.app_share[vis]
        buy = rng.random(len(vis)) < people.p_buy[vis]
        web.append((vis[~in_app], buy[~in_app]))
        app.append((vis[in_app], buy[in_app]))
        shop = np.flatnonzero(act & (u[2] < people.store_rate * s[d]))
        store.append(shop)

        # online orders: outcome drawn now, effect on the hazard from now on
        buyers = vis[buy]
        k = len(buyers)
        r = rng.random((3, k))
        cancelled = r[0] < P_CANCEL
        late = ~cancelled & (r[1] < people.late_p[buyers])
        returned = ~cancelled & (r[2] < np.where(late, 0.22, 0.05))
        delay = np.where(late, 5 + rng.poisson(4.0, k), 1 + rng.poisson(1.2, k))
        orders.append((buyers, in_app[buy], cancelled, returned, late, delay))
        np.add.at(bad, buyers, late * 1.0 + returned * 0.5)
        purchased = np.concatenate([buyers, shop])
        last_buy[purchased] = d
        np.add.at(n_orders, purchased, 1)

        rec = np.minimum((d - last_buy) / 60.0, 3.0)
        lin = static + B_BAD * bad + B_REC * rec + B_ONEOFF * (people.oneoff & (n_orders > 0))
        churn = act & (rng.random(n) < H0 * np.exp(lin))
        alive &= ~churn
        churn_day[churn] = d

    def cat(parts: list, i: int | None = None, dtype=np.int64) -> np.ndarray:
        arrs = [p if i is None else p[i] for p in parts]
        return np.concatenate(arrs).astype(dtype) if arrs else np.zeros(0, dtype)

    def days_of(parts: list, i: int | None = None) -> np.ndarray:
        sizes = [len(p if i is None else p[i]) for p in parts]
        return np.repeat(np.arange(len(parts)), sizes)

    return Activity(
        web_person=cat(web, 0),
        web_day=days_of(web, 0),
        web_buy=cat(web, 1, bool),
        app_person=cat(app, 0),
        app_day=days_of(app, 0),
        app_buy=cat(app, 1, bool),
        store_person=cat(store),
        store_day=days_of(store),
        order_person=cat(orders, 0),
        order_day=days_of(orders, 0),
        order_app=cat(orders, 1, bool),
        order_cancelled=cat(orders, 2, bool),
        order_returned=cat(orders, 3, bool),
        order_late=cat(orders, 4, bool),
        order_delay=cat(orders, 5),
        churn_day=churn_day,
        bad=bad,
        n_orders=n_orders,
    )


def window_start(end: date, days: int) -> date:
    """First day of a ``days``-long window ending on ``end`` (inclusive)."""
    return end - timedelta(days=days - 1)
