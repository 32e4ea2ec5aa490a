"""Expand sessions into click-stream events and orders into order lines (vectorised).

Times are integer seconds from the start of the simulated window. Every output
is a dict of equal-length numpy arrays with a ``person`` column (chunk-local index).
"""

from __future__ import annotations

import numpy as np
from cip.pipelines.simulator._activity import Activity
from cip.pipelines.simulator._people import People
from cip.pipelines.simulator._world import CATEGORIES, Catalog, sample_items

WEB_TYPES = (
    "page_view", "login", "search", "product_view", "add_to_cart", "remove_from_cart",
    "checkout", "purchase",
)  # fmt: skip
APP_TYPES = ("app_install",) + WEB_TYPES
_HOURS = np.array([1, .6, .4, .3, .3, .5, 1, 2, 3, 4, 4.5, 5, 5.5, 5, 4.5, 4.5, 5, 5.5, 6.5, 7.5, 8, 7, 5, 3])  # fmt: skip
_HOUR_CUM = np.cumsum(_HOURS) / _HOURS.sum()
QUERIES = np.array([c.lower() for c in CATEGORIES])


def merge_lines(order: np.ndarray, item: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, ...]:
    """One line per (order, item), quantities added; sorted by order, then item."""
    if len(order) == 0:
        return order, item, qty
    srt = np.lexsort((item, order))
    o, i, q = order[srt], item[srt], qty[srt]
    first = np.flatnonzero(np.r_[True, (o[1:] != o[:-1]) | (i[1:] != i[:-1])])
    return o[first], i[first], np.add.reduceat(q, first)


def start_seconds(rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    """A time of day with the usual online rhythm (evening peak)."""
    hour = np.searchsorted(_HOUR_CUM, rng.random(len(day)))
    return day.astype(np.int64) * 86400 + hour * 3600 + rng.integers(0, 3600, len(day))


def expand_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(session, type, rank)`` for a ``(sessions, types)`` matrix of event counts.

    Rows come sorted by session, then type column, then rank within the type.
    """
    n_s, n_t = counts.shape
    flat = counts.ravel().astype(np.int64)
    cell = np.repeat(np.arange(n_s * n_t), flat)
    cell_start = np.cumsum(flat) - flat
    rank = np.arange(len(cell)) - np.repeat(cell_start, flat)
    return cell // n_t, cell % n_t, rank


def segment_times(rng: np.random.Generator, session: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Event times: each session starts at ``start`` and proceeds with random gaps."""
    gaps = 5 + rng.exponential(45.0, len(session)).astype(np.int64)
    cs = np.cumsum(gaps)
    first = np.r_[True, session[1:] != session[:-1]]
    base = np.maximum.accumulate(np.where(first, np.arange(len(session)), 0))
    return start[session] + cs - cs[base]


def expand_sessions(
    rng: np.random.Generator,
    people: People,
    catalog: Catalog,
    person: np.ndarray,
    day: np.ndarray,
    buy: np.ndarray,
    *,
    app: bool,
    days: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Events of web (or app) sessions, and the purchased lines of the sessions that buy.

    Returns ``(events, lines)``; ``events['type']`` indexes :data:`WEB_TYPES` (or
    :data:`APP_TYPES`), ``lines['order']`` numbers the buying sessions in order.
    """
    n = len(person)
    start = start_seconds(rng, day)
    n_buy = np.where(buy, 1 + rng.poisson(0.6, n), 0)
    n_prod = n_buy + rng.poisson(2.0, n)
    abandon = (n_prod > n_buy) & (rng.random(n) < 0.15)
    join = np.minimum(people.join_day[person], day)
    frac = (day - join) / np.maximum(days - join, 1)
    if app:
        k = np.minimum(people.n_devices[person] - 1, (people.n_devices[person] * frac).astype(int))
        device = people.gidx[person] * 2 + k
        logged_in = rng.random(n) < 0.9
        key = device
        order = np.lexsort((start, key))
        first = np.zeros(n, dtype=bool)
        first[order[np.r_[True, key[order][1:] != key[order][:-1]]]] = True
        install = [first]
        visitor = device
    else:
        k = np.minimum(people.n_cookies[person] - 1, (people.n_cookies[person] * frac).astype(int))
        visitor = people.gidx[person] * 8 + k
        has_acc = people.has_account[person]
        logged_in = has_acc & (
            (rng.random(n) < people.login_p[person]) | (buy & (rng.random(n) < 0.85))
        )
        install = []
    cols = install + [
        1 + rng.poisson(1.2, n),  # page_view
        logged_in if not app else np.zeros(n, dtype=bool),  # login (app: logged in = user id)
        rng.random(n) < 0.3,  # search
        n_prod,
        n_buy + abandon,  # add_to_cart
        abandon & (rng.random(n) < 0.35),  # remove_from_cart
        buy | (abandon & (rng.random(n) < 0.1)),  # checkout
        buy,  # purchase
    ]
    counts = np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)
    session, etype, rank = expand_counts(counts)
    ts = segment_times(rng, session, start)
    off = 1 if app else 0
    p = person[session]

    # items: product views from the person's taste; carts and purchases reuse them
    is_pv = etype == 3 + off
    pv_rows = np.flatnonzero(is_pv)
    pv_items = sample_items(rng, catalog, people.fav_cats[p[pv_rows]], people.style[p[pv_rows]])
    pv_first = np.cumsum(counts[:, 3 + off]) - counts[:, 3 + off]
    item = np.full(len(session), -1, dtype=np.int64)
    item[pv_rows] = pv_items
    cart = np.flatnonzero((etype == 4 + off) | (etype == 5 + off))
    cart_rank = np.where(etype[cart] == 4 + off, rank[cart], n_buy[session[cart]])
    item[cart] = pv_items[pv_first[session[cart]] + cart_rank]
    query = np.where(etype == 2 + off, people.fav_cats[p, 0], -1)
    query[etype == 2 + off] = np.where(
        rng.random(int((etype == 2 + off).sum())) < 0.7,
        query[etype == 2 + off],
        rng.integers(0, len(CATEGORIES), int((etype == 2 + off).sum())),
    )

    # orders: one per buying session, numbered in session order
    buying = np.flatnonzero(buy)
    order_of_session = np.full(n, -1, dtype=np.int64)
    order_of_session[buying] = np.arange(len(buying))
    purchase_rows = np.flatnonzero(etype == len(cols) - 1)
    order_ts = np.zeros(len(buying), dtype=np.int64)
    order_ts[order_of_session[session[purchase_rows]]] = ts[purchase_rows]
    line_order = np.repeat(np.arange(len(buying)), n_buy[buying])
    line_rank = np.arange(len(line_order)) - np.repeat(np.cumsum(n_buy[buying]) - n_buy[buying], n_buy[buying])  # fmt: skip
    line_item = pv_items[pv_first[buying][line_order] + line_rank]

    events = {
        "person": p,
        "session": session,
        "type": etype,
        "ts": ts,
        "item": item,
        "query": query,
        "session_visitor": visitor,  # per session (not per event)
        "logged_in": logged_in[session],
        "order": np.where(etype == len(cols) - 1, order_of_session[session], -1),
    }
    lines = {
        "person": person[buying][line_order],
        "order": line_order,
        "ts": order_ts[line_order],
        "item": line_item,
        "qty": 1 + rng.poisson(0.25, len(line_order)),
        "order_ts": order_ts,
        "logged_in": logged_in[buying],
    }
    return events, lines


def store_receipts(
    rng: np.random.Generator, people: People, catalog: Catalog, act: Activity
) -> dict[str, np.ndarray]:
    """Lines of in-store receipts (one receipt per store visit)."""
    n = len(act.store_person)
    n_lines = 1 + rng.poisson(0.8, n)
    receipt = np.repeat(np.arange(n), n_lines)
    p = act.store_person[receipt]
    ts = act.store_day.astype(np.int64) * 86400 + 9 * 3600 + rng.integers(0, 9 * 3600, n)
    item = sample_items(rng, catalog, people.fav_cats[p], people.style[p])
    receipt, item, qty = merge_lines(receipt, item, 1 + rng.poisson(0.3, len(receipt)))
    p = act.store_person[receipt]
    return {
        "person": p,
        "receipt": receipt,
        "ts": ts[receipt],
        "item": item,
        "qty": qty,
        "receipt_ts": ts,
        "receipt_person": act.store_person,
        "scanned": (people.loyalty_id[act.store_person] != "") & (rng.random(n) < 0.85),
        "gave_phone": (people.phone[act.store_person] != "") & (rng.random(n) < 0.08),
        "store": rng.integers(1, 25, n),
    }
