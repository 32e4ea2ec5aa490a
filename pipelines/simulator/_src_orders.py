"""Source tables of the click-stream and the orders: web_events, app_events,
online_orders and store_purchases, each in the source system's own columns.

Every builder returns ``(table, truth, bad)``; ``truth`` maps a canonical table
name to ``(source_record_id, chunk-local person index)`` for the truth file and
``bad`` lists the deliberately broken rows as ``(source_record_ids, defect)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cip.pipelines.simulator._format import (
    Counters,
    Vocab,
    bad_rows,
    by_index,
    const,
    email_index,
    email_variants,
    hex_ids,
    messy_email,
    messy_phone,
    phone_variants,
    pick,
    prefixed,
    set_where,
    timestamps,
    uk_datetime,
    vocab,
)
from cip.pipelines.simulator._people import People
from cip.pipelines.simulator._sessions import APP_TYPES, QUERIES, WEB_TYPES
from cip.pipelines.simulator._world import CATEGORIES, Catalog

Truth = dict[str, tuple[pa.Array, np.ndarray]]
Bad = list[tuple[pa.Array, str]]  # (source_record_ids, defect)
APP_NAMES = (
    "AppInstalled", "ScreenViewed", "LoggedIn", "ProductSearched", "ProductViewed",
    "AddedToCart", "RemovedFromCart", "CheckoutStarted", "OrderCompleted",
)  # fmt: skip
_AGENTS = np.array(["Chrome/131 Windows", "Safari/18 macOS", "Safari/18 iPhone", "Chrome/131 Android", "Firefox/133 Windows", "Edge/131 Windows"])  # fmt: skip
_SLUGS = np.array([c.lower().replace(" ", "-") for c in CATEGORIES])


@dataclass
class Ctx:
    """What every source builder of one chunk needs."""

    rng: np.random.Generator
    people: People
    catalog: Catalog
    ids: Counters
    t0: int  # epoch seconds of the window start
    end_sec: int  # last second of the window
    seed: int
    emails: Vocab = field(init=False)  # email_variants(people)
    phones: Vocab = field(init=False)  # phone_variants(people.phone)
    customer_id: Vocab = field(init=False)
    sku: Vocab = field(init=False)

    def __post_init__(self) -> None:
        self.emails = vocab(email_variants(self.people))
        self.phones = vocab(phone_variants(self.people.phone))
        self.customer_id = vocab(self.people.customer_id)
        self.sku = vocab(self.catalog.sku)

    def email(self, person: np.ndarray, p: np.ndarray | None = None) -> pa.Array:
        if p is None:
            return messy_email(self.rng, self.emails, person, self.people.n)
        return messy_email(self.rng, self.emails, person, self.people.n, p)

    def phone(self, person: np.ndarray) -> pa.Array:
        return messy_phone(self.rng, self.phones, person, self.people.n)


def web_events(
    ctx: Ctx, ev: dict[str, np.ndarray], order_no: pa.Array
) -> tuple[pa.Table, Truth, Bad]:
    """The web tracker's hits: cookie, session, page; logins and guest checkouts identify."""
    rng, p = ctx.rng, ctx.people
    n = len(ev["ts"])
    hit = ctx.ids.take("web_hit", n)
    etype, person, session = ev["type"], ev["person"], ev["session"]
    bad = bad_rows(rng, n)  # a tracker glitch: no cookie and nothing else
    login = (etype == WEB_TYPES.index("login")) & ~bad
    how = rng.random(n)  # a login carries the account id, the e-mail, or both
    with_acc = login & (how < 0.7)
    guest_buy = ~ev["logged_in"] & (etype >= WEB_TYPES.index("checkout")) & ~bad
    with_mail = (login & (how >= 0.5)) | guest_buy
    mail = np.where(with_mail, email_index(rng, person, p.n), -1)
    urls = np.concatenate(
        [
            ["/", "/sale", "/new-in", "/search", "/account/login", "/checkout", "/checkout/confirmation"],
            np.char.add("/c/", _SLUGS),
            np.char.add("/p/", ctx.catalog.sku),
        ]
    )  # fmt: skip
    landing = np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), 7 + p.fav_cats[person, 0])
    page = np.select(
        [etype == 0, etype == 1, etype == 2, etype == 6, etype == 7],
        [landing, np.full(n, 4), np.full(n, 3), np.full(n, 5), np.full(n, 6)],
        default=7 + len(_SLUGS) + np.maximum(ev["item"], 0),
    )
    search = etype == WEB_TYPES.index("search")
    props = np.char.add(np.char.add('{"q": "', QUERIES), '"}')
    purchase = etype == WEB_TYPES.index("purchase")
    agent = (p.gidx[person] * 7 + ev["session_visitor"][session]) % len(_AGENTS)
    cookies, cookie_of = np.unique(ev["session_visitor"], return_inverse=True)
    table = pa.table(
        {
            "hit_id": pa.array(hit),
            "event": pick(np.array(WEB_TYPES), etype, as_dict=True),
            "client_ts": timestamps(ctx.t0, ev["ts"]),
            "cookie_id": by_index(
                hex_ids(cookies, ctx.seed * 16 + 1), np.where(bad, -1, cookie_of[session])
            ),  # fmt: skip
            "session": by_index(hex_ids(ev["session_gid"], ctx.seed * 16 + 2), session),
            "page_url": pick(urls, page, as_dict=True),
            "sku": pick(ctx.sku, ev["item"], as_dict=True),
            "user_email": pick(ctx.emails, mail, as_dict=True),
            "account_id": pick(ctx.customer_id, np.where(with_acc, person, -1), as_dict=True),
            "order_ref": by_index(order_no, np.where(purchase, ev["order"], -1)),
            "props": pick(props, np.where(search, ev["query"], -1), as_dict=True),
            "user_agent": pick(_AGENTS, agent, as_dict=True),
        }
    )
    hit_s = pc.cast(pa.array(hit), pa.string())
    return table, {"events": (hit_s, person)}, [(hit_s.filter(pa.array(bad)), "no identifier")]


def app_events(
    ctx: Ctx, ev: dict[str, np.ndarray], order_no: pa.Array
) -> tuple[pa.Table, Truth, Bad]:
    """The mobile app's analytics: device id, user id when logged in, CamelCase names."""
    p = ctx.people
    n = len(ev["ts"])
    ids = prefixed("evt-", ctx.ids.take("app_event", n), 10)
    person, etype, session = ev["person"], ev["type"], ev["session"]
    devices, device_of = np.unique(ev["session_visitor"], return_inverse=True)
    h = hex_ids(devices, ctx.seed * 16 + 3, upper=True)
    sl = pc.utf8_slice_codeunits
    device = pc.binary_join_element_wise(sl(h, 0, 8), sl(h, 8, 12), sl(h, 12, 16), "-")
    purchase = etype == APP_TYPES.index("purchase")
    search = etype == APP_TYPES.index("search")
    version = np.clip(ev["ts"] // (86400 * 61), 0, 5)
    table = pa.table(
        {
            "id": ids,
            "device_id": by_index(device, device_of[session]),
            "user_id": pick(ctx.customer_id, np.where(ev["logged_in"], person, -1), as_dict=True),
            "name": pick(np.array(APP_NAMES), etype, as_dict=True),
            "event_time": timestamps(ctx.t0, ev["ts"]),
            "product_id": pick(ctx.sku, ev["item"], as_dict=True),
            "order_id": by_index(order_no, np.where(purchase, ev["order"], -1)),
            "search_term": pick(QUERIES, np.where(search, ev["query"], -1), as_dict=True),
            "os": pick(np.array(["iOS", "Android"]), p.gidx[person] % 2, as_dict=True),
            "app_version": pick(np.array([f"5.{i}.0" for i in range(6)]), version, as_dict=True),
        }
    )
    return table, {"events": (ids, person)}, []


def online_orders(
    ctx: Ctx, orders: dict[str, np.ndarray], lines: dict[str, np.ndarray], order_no: pa.Array
) -> tuple[pa.Table, Truth, Bad]:
    """The shop's order-line export: sales, then return lines (``<order>-R``) as credits."""
    rng, cat = ctx.rng, ctx.catalog
    o = lines["order"]
    ret = orders["returned"][o]
    # sale lines, then one return line per line of a returned order
    row_order = np.concatenate([o, o[ret]])
    is_ret = np.r_[np.zeros(len(o), bool), np.ones(int(ret.sum()), bool)]
    item = np.concatenate([lines["item"], lines["item"][ret]])
    qty = np.concatenate([lines["qty"], lines["qty"][ret]])
    n = len(row_order)
    person = orders["person"][row_order]
    promo = rng.random(len(o)) < 0.1
    price = np.where(promo, np.round(cat.price[lines["item"]] * 0.8, 2), cat.price[lines["item"]])
    price = np.concatenate([price, price[ret]])
    ts = np.where(is_ret, orders["return_ts"][row_order], orders["ts"][row_order])
    status = np.where(is_ret, 2, np.where(orders["cancelled"][row_order], 1, 0))
    ord_id = pc.take(order_no, pa.array(row_order))
    ord_id = pc.if_else(pa.array(is_ret), pc.binary_join_element_wise(ord_id, "-R", ""), ord_id)
    guest = orders["guest"][row_order]
    # guests type their address at checkout: more case, space and plus-tag variants
    guest_email = ctx.email(person, np.array([0.6, 0.1, 0.08, 0.07, 0.1, 0.05]))
    email = pc.if_else(pa.array(guest), guest_email, ctx.email(person))
    phone = ctx.phone(person)
    phone = set_where(phone, rng.random(n) >= 0.3, None)
    delivered = orders["delivered"][row_order]
    has_del = delivered >= 0
    line_id = ctx.ids.take("order_line", n)
    bad = bad_rows(rng, n)  # an export glitch: the product code is missing
    table = pa.table(
        {
            "line_id": pa.array(line_id),
            "order_no": ord_id,
            "created_at": timestamps(ctx.t0, ts),
            "account_id": pick(ctx.customer_id, np.where(guest, -1, person)),
            "customer_email": email,
            "delivery_phone": phone,
            "sku": set_where(pick(ctx.sku, item), bad, None),
            "qty": pa.array(qty.astype(np.int64)),
            "price": pa.array(price),
            "currency": const("GBP", n),
            "order_status": pick(np.array(["COMPLETE", "CANCELLED", "RETURNED"]), status),
            "platform": pick(np.array(["web", "app"]), orders["app"][row_order].astype(int)),
            "delivered_at": pc.if_else(
                pa.array(has_del), timestamps(ctx.t0, np.maximum(delivered, 0)), None
            ),  # fmt: skip
            "delivery_days": pa.array(orders["delay"][row_order], mask=~has_del | is_ret),
        }
    )
    key = row_order * 2 + is_ret  # sale lines by order, then return lines by order
    first = np.r_[True, key[1:] != key[:-1]]
    line_s = pc.cast(pa.array(line_id), pa.string())
    truth = {
        "order_lines": (line_s, person),
        "orders": (ord_id.filter(pa.array(first)), person[first]),
    }
    return table, truth, [(line_s.filter(pa.array(bad)), "missing item_id")]


def store_purchases(ctx: Ctx, rc: dict[str, np.ndarray]) -> tuple[pa.Table, Truth, Bad]:
    """The tills' export: loyalty card when scanned, a phone sometimes, refunds as receipts."""
    rng, p, cat = ctx.rng, ctx.people, ctx.catalog
    n_rc = len(rc["receipt_ts"])
    refund_at = (
        rc["receipt_ts"] + rng.integers(1, 21, n_rc) * 86400 + rng.integers(0, 8 * 3600, n_rc)
    )
    refunded = (rng.random(n_rc) < 0.03) & (refund_at <= ctx.end_sec)
    r = rc["receipt"]
    sel = refunded[r]
    receipt = np.concatenate([r, r[sel]])
    is_ref = np.r_[np.zeros(len(r), bool), np.ones(int(sel.sum()), bool)]
    rec_no = ctx.ids.take("receipt", n_rc + int(refunded.sum()))
    ref_no = np.full(n_rc, -1, dtype=np.int64)
    ref_no[refunded] = rec_no[n_rc:]
    number = np.where(is_ref, ref_no[receipt], rec_no[receipt])
    order = np.lexsort((is_ref, receipt))  # a receipt's refund follows it
    receipt, is_ref, number = receipt[order], is_ref[order], number[order]
    item = np.concatenate([rc["item"], rc["item"][sel]])[order]
    qty = np.concatenate([rc["qty"], rc["qty"][sel]])[order]
    ts = np.where(is_ref, refund_at[receipt], rc["receipt_ts"][receipt])
    person = rc["receipt_person"][receipt]
    n = len(receipt)
    store = rc["store"][receipt]
    rno = pc.binary_join_element_wise(
        prefixed("ST", store, 3), "-", pc.cast(pa.array(number), pa.string()), ""
    )
    price = pc.cast(pa.array(cat.price[item]), pa.string())
    bad_ts = bad_rows(rng, n)
    bad_price = bad_rows(rng, n) & ~bad_ts  # one defect per broken row
    phone = ctx.phone(person)
    line_id = ctx.ids.take("till_line", n)
    table = pa.table(
        {
            "TxnLineID": pa.array(line_id),
            "StoreCode": prefixed("ST", store, 3),
            "ReceiptNo": rno,
            "TxnDate": set_where(uk_datetime(ctx.t0, ts), bad_ts, "31/02/2025 25:61:00"),
            "LoyaltyCard": pick(p.loyalty_id, np.where(rc["scanned"][receipt], person, -1)),
            "CustomerPhone": pc.if_else(pa.array(rc["gave_phone"][receipt]), phone, None),
            "ProductCode": pick(ctx.sku, item),
            "Qty": pa.array(qty.astype(np.int64)),
            "UnitPrice": set_where(price, bad_price, "N/A"),
            "Refund": pick(np.array(["N", "Y"]), is_ref.astype(int)),
        }
    )
    first = np.r_[True, (number[1:] != number[:-1])]
    line_s = pc.cast(pa.array(line_id), pa.string())
    truth = {
        "order_lines": (line_s, person),
        "orders": (rno.filter(pa.array(first)), person[first]),
    }
    bad = [
        (line_s.filter(pa.array(bad_ts)), "unparseable timestamp"),
        (line_s.filter(pa.array(bad_price)), "non-numeric unit_price"),
    ]
    return table, truth, bad
