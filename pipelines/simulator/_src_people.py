"""Source tables about people: the CRM export, review platform and e-mail tool.

Builders return ``(table, truth)`` like those in :mod:`pipelines.simulator._src_orders`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cip.pipelines.simulator._format import bad_rows, iso, pick, prefixed, set_where
from cip.pipelines.simulator._people import PLACEHOLDER_PHONE
from cip.pipelines.simulator._src_orders import Bad, Ctx, Truth
from cip.pipelines.simulator._world import CATEGORIES, CITIES, STREETS, _cat

#: CRM spellings of consent per purpose: (yes, no) values; "" is no statement
CONSENT_SPELLING: dict[str, tuple[str, str]] = {
    "OptInEmail": ("Y", "N"),
    "OptInSMS": ("Y", "N"),
    "PushOptIn": ("true", "false"),
    "Personalisation": ("1", "0"),
    "Profiling": ("yes", "no"),
}
_HEADLINES = np.array(["Terrible", "Disappointing", "It's OK", "Very good", "Excellent"])


def crm_customers(ctx: Ctx) -> tuple[pa.Table, Truth, Bad]:
    """Shop accounts and newsletter sign-ups; 30% of accounts have a later update record.

    Updates may move house, change e-mail or withdraw one consent purpose.
    A few broken rows carry no identifier at all.
    """
    rng, p = ctx.rng, ctx.people
    first_rec = np.flatnonzero(p.has_account | p.newsletter)
    second = np.flatnonzero(p.update_sec >= 0)
    person = np.concatenate([first_rec, second])
    is_upd = np.r_[np.zeros(len(first_rec), bool), np.ones(len(second), bool)]
    n = len(person)
    news = p.newsletter[person]
    ts = np.where(is_upd, p.update_sec[person], p.signup_sec[person])
    srt = np.lexsort((person, ts))
    person, is_upd, news, ts = person[srt], is_upd[srt], news[srt], ts[srt]
    # broken rows: a copy of a record with every identifier blanked
    bad = bad_rows(rng, n)
    person = np.concatenate([person, person[bad]])
    is_upd, news, ts = (np.concatenate([a, a[bad]]) for a in (is_upd, news, ts))
    broken = np.r_[np.zeros(n, bool), np.ones(int(bad.sum()), bool)]
    n = len(person)

    email = ctx.email(person)
    changed = is_upd & (p.new_email[person] != "")
    email = pc.if_else(pa.array(changed), pick(p.new_email, person), email)
    gives_phone = ~news & ((rng.random(n) < 0.85) | p.family[person])
    phone = pc.if_else(pa.array(gives_phone), ctx.phone(person), None)
    phone = set_where(phone, p.placeholder[person] & ~news, PLACEHOLDER_PHONE)
    moved = is_upd & p.moved[person]
    city = np.where(moved, rng.integers(0, len(CITIES), n), p.city[person])
    area = np.array([c[1] for c in CITIES])
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    new_pc = _cat(area[city], rng.integers(1, 30, n), " ", rng.integers(1, 10, n), letters[rng.integers(0, 20, n)], letters[rng.integers(0, 20, n)])  # fmt: skip
    new_street = _cat(rng.integers(1, 180, n), " ", np.array(STREETS)[rng.integers(0, 18, n)])
    postcode = np.where(moved, new_pc, p.postcode[person])
    street = np.where(moved, new_street, p.street[person])
    last = np.where(rng.random(n) < 0.03, np.char.upper(p.last[person]), p.last[person])
    has_addr = ~news
    cols: dict[str, pa.Array] = {
        "RecordID": prefixed("CRM-", ctx.ids.take("crm", n), 8),
        "CustomerNo": set_where(pick(ctx.customer_id, person), broken, None),
        "EMail": set_where(email, broken, None),
        "Mobile": set_where(phone, broken, None),
        "FirstName": pick(p.first, np.where(news & (rng.random(n) < 0.5), -1, person)),
        "LastName": pick(last, np.where(news, -1, np.arange(n))),
        "BirthDate": pc.if_else(
            pa.array(~news & (rng.random(n) < 0.85)),
            pc.cast(pa.array(p.birth[person].astype("datetime64[D]")), pa.string()),
            None,
        ),
        "Street": pick(street, np.where(has_addr, np.arange(n), -1)),
        "City": pick(np.array([c[0] for c in CITIES]), np.where(has_addr, city, -1)),
        "PostCode": pick(postcode, np.where(has_addr, np.arange(n), -1)),
        "Country": pick(
            np.array(["United Kingdom", "UK", "GB", ""]), rng.choice(4, n, p=[0.5, 0.25, 0.15, 0.1])
        ),  # fmt: skip
        "CreatedAt": iso(ctx.t0, p.signup_sec[person]),
        "UpdatedAt": iso(ctx.t0, ts),
    }
    for j, (col, (yes, no)) in enumerate(CONSENT_SPELLING.items()):
        state = p.consent[person, j].astype(int)
        state = np.where(is_upd & (p.withdraw[person] == j), 0, state)
        spelled = np.array([no, yes, ""])  # index 0 no, 1 yes, -1 (last) no statement
        if col == "OptInSMS":  # a second system wrote lower case
            spelled = np.array([no, yes, "", no.lower(), yes.lower()])
            state = np.where((state >= 0) & (rng.random(n) < 0.2), state + 3, state)
        cols[col] = pick(spelled, np.where(state < 0, 2, state))
    channel = np.where(news, 3, rng.choice(3, n, p=[0.6, 0.25, 0.15]))
    cols["SignupChannel"] = pick(np.array(["web", "store", "app", "newsletter"]), channel)
    ids = cols["RecordID"]
    return (
        pa.table(cols),
        {"customers": (ids, person)},
        [(ids.filter(pa.array(broken)), "no identifier")],
    )


def reviews(ctx: Ctx, rv: dict[str, np.ndarray], order_no: pa.Array) -> tuple[pa.Table, Truth, Bad]:
    """Reviews as the review platform exports them: a customer ref that is an id or an e-mail."""
    rng, p = ctx.rng, ctx.people
    n = len(rv["ts"])
    person = rv["person"]
    ids = prefixed("RV-", ctx.ids.take("review", n), 7)
    bad = bad_rows(rng, n)
    acc = p.has_account[person]
    ref = pc.if_else(pa.array(acc), pick(ctx.customer_id, person), ctx.email(person))
    late = pc.cast(pa.array(rv["late"]), pa.string())
    meta = pc.binary_join_element_wise(
        '{"delivery_days": ',
        pc.cast(pa.array(rv["delay"]), pa.string()),
        ', "late": ',
        late,
        "}",
        "",
    )
    table = pa.table(
        {
            "review_id": ids,
            "submitted": set_where(iso(ctx.t0, rv["ts"], suffix="Z"), bad, "yesterday"),
            "customer_ref": ref,
            "order_ref": pc.take(order_no, pa.array(rv["order"])),
            "product": pick(ctx.sku, rv["item"]),
            "stars": pa.array(rv["rating"].astype(np.int64)),
            "headline": pick(_HEADLINES, rv["rating"] - 1),
            "meta": meta,
        }
    )
    return table, {"events": (ids, person)}, [(ids.filter(pa.array(bad)), "unparseable timestamp")]


def email_events(
    ctx: Ctx, em: dict[str, np.ndarray], camp_days: np.ndarray
) -> tuple[pa.Table, Truth, Bad]:
    """The e-mail tool's activity log, keyed by the recipient address."""
    rng, p = ctx.rng, ctx.people
    n = len(em["ts"])
    person = em["person"]
    ids = ctx.ids.take("email_event", n)
    addr = ctx.email(person, np.array([0.9, 0.05, 0.0, 0.03, 0.0, 0.02]))
    addr = pc.if_else(pa.array(em["new_address"]), pick(p.new_email, person), addr)
    bad = bad_rows(rng, n)
    addr = set_where(addr, bad, None)  # a bounce record without the address
    kinds = np.array(["SEND", "OPEN", "CLICK", "send", "open", "click"])
    kind = em["kind"] + 3 * (rng.random(n) < 0.05)
    camp_dates = (np.datetime64("1970-01-01") + ((ctx.t0 // 86400) + camp_days).astype("timedelta64[D]")).astype(str)  # fmt: skip
    camp = np.char.add("NL-", camp_dates)
    slugs = np.char.add("https://shop.example.co.uk/c/", np.array([c.lower().replace(" ", "-") for c in CATEGORIES]))  # fmt: skip
    link = np.where(em["kind"] == 2, p.fav_cats[person, 0], -1)
    table = pa.table(
        {
            "message_event_id": pa.array(ids),
            "recipient": addr,
            "campaign_id": pick(camp, em["campaign"]),
            "event_kind": pick(kinds, kind),
            "occurred_at": iso(ctx.t0, em["ts"], sep=" "),
            "link_url": pick(slugs, link),
        }
    )
    ids_s = pc.cast(pa.array(ids), pa.string())
    return table, {"events": (ids_s, person)}, [(ids_s.filter(pa.array(bad)), "no identifier")]
