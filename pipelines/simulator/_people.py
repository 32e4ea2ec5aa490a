"""Simulated people: identifiers, traits, latent taste and behaviour parameters.

One :class:`People` holds a chunk of people as parallel arrays. Identifiers are
derived from the global person index (so they are unique across chunks) and the
seed (so different seeds give different people).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cip.pipelines.simulator._world import (
    _DOMAIN_P,
    CITIES,
    CONSENT_P,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    STREETS,
    Catalog,
    _cat,
    affine_ids,
)

PURPOSES: tuple[str, ...] = ("email", "sms", "push", "personalization", "profiling")
PLACEHOLDER_PHONE = "0000000000"
FAMILY_SIZE = 4
_MOBILE_PREFIX = np.array(["074", "075", "078", "079"])


@dataclass
class Specials:
    """People chosen once for the whole population (global indices)."""

    placeholder: np.ndarray  # give the placeholder phone instead of their own
    family: np.ndarray  # share one phone, last name and address


def choose_specials(rng: np.random.Generator, n_people: int, chunk: int) -> Specials:
    """A few dozen placeholder-phone people, and one family sharing a phone.

    The family lives in the first chunk of ``chunk`` people (it shares values
    drawn per chunk: a last name, an address, the first member's phone).
    """
    n_ph = int(np.clip(n_people // 50, 5, 60))
    first = min(n_people, chunk)
    n_fam = FAMILY_SIZE if first >= 50 else 0
    family = np.sort(rng.choice(first, size=n_fam, replace=False))
    picked = rng.choice(n_people, size=min(n_people, n_ph + n_fam), replace=False)
    picked = picked[~np.isin(picked, family)][:n_ph]
    return Specials(placeholder=np.sort(picked), family=family)


@dataclass
class People:
    """A chunk of people as parallel arrays (length ``n``)."""

    gidx: np.ndarray
    person_id: np.ndarray  # str "P0000001"
    first: np.ndarray  # str
    last: np.ndarray  # str
    email: np.ndarray  # str, lower-case canonical
    gmail: np.ndarray  # bool
    phone: np.ndarray  # str national "07xxxxxxxxx" or "" (none)
    placeholder: np.ndarray  # bool
    family: np.ndarray  # bool
    customer_id: np.ndarray  # str or "" (no shop account)
    loyalty_id: np.ndarray  # str or "" (no loyalty card)
    birth: np.ndarray  # datetime64[D]
    city: np.ndarray  # int index into CITIES
    postcode: np.ndarray  # str
    street: np.ndarray  # str
    join_day: np.ndarray  # first active day in the window
    signup_sec: np.ndarray  # account / newsletter sign-up (seconds from window start; may be < 0)
    newsletter: np.ndarray  # bool: a CRM record without a shop account
    z_eng: np.ndarray  # latent engagement
    visit_rate: np.ndarray  # online sessions per day while active
    p_buy: np.ndarray  # purchase probability per online session
    app_share: np.ndarray  # share of online sessions in the app (0: no app)
    store_rate: np.ndarray  # store visits per day while active (0: never)
    login_p: np.ndarray  # probability to log in during a web session
    late_p: np.ndarray  # probability that a delivery is late (depends on the region)
    oneoff: np.ndarray  # bool: tends to leave after the first order
    fav_cats: np.ndarray  # (n, 3) favourite categories
    style: np.ndarray  # preferred style
    consent: np.ndarray  # (n, 5) int8: 1 yes, 0 no, -1 no statement
    update_sec: np.ndarray  # second CRM record (seconds) or -1
    withdraw: np.ndarray  # purpose index withdrawn in the second record, or -1
    moved: np.ndarray  # bool: the second record has a new address
    new_email: np.ndarray  # str: the second record's e-mail ("" when unchanged)
    n_cookies: np.ndarray
    n_devices: np.ndarray

    @property
    def n(self) -> int:
        return len(self.gidx)

    @property
    def has_account(self) -> np.ndarray:
        return self.customer_id != ""

    @property
    def taste(self) -> np.ndarray:
        """Latent taste cluster: favourite category and style."""
        return self.fav_cats[:, 0] * 4 + self.style


def build_people(
    rng: np.random.Generator,
    gidx: np.ndarray,
    *,
    days: int,
    seed: int,
    catalog: Catalog,
    specials: Specials,
) -> People:
    """Draw the people with global indices ``gidx`` (vectorised)."""
    n = len(gidx)
    names, surnames = np.array(FIRST_NAMES), np.array(LAST_NAMES)
    fi = rng.integers(0, len(names), n)
    first, last = names[fi], surnames[rng.integers(0, len(surnames), n)]
    city_p = np.array([c[2] for c in CITIES])
    city = rng.choice(len(CITIES), n, p=city_p / city_p.sum())
    area = np.array([c[1] for c in CITIES])[city]
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    postcode = _cat(
        area, rng.integers(1, 30, n), " ", rng.integers(1, 10, n),
        letters[rng.integers(0, 20, n)], letters[rng.integers(0, 20, n)],
    )  # fmt: skip
    street = _cat(rng.integers(1, 180, n), " ", np.array(STREETS)[rng.integers(0, 18, n)])
    family = np.isin(gidx, specials.family)
    if family.any():
        last[family] = last[family][0]
        city[family], postcode[family], street[family] = city[family][0], postcode[family][0], street[family][0]  # fmt: skip

    # e-mail: a pattern of the name plus a number unique to the person (names have no digits,
    # so every spelling of one person's address differs from every other person's)
    domain = rng.choice(len(EMAIL_DOMAINS), n, p=_DOMAIN_P / _DOMAIN_P.sum())
    num = affine_ids(gidx, 10_000_000, seed).astype(str)
    f, la = np.char.lower(first), np.char.lower(last)
    initial = np.char.lower(np.array([x[0] for x in FIRST_NAMES]))[fi]  # per name, not per row
    pattern = rng.integers(0, 4, n)
    local = np.select(
        [pattern == 0, pattern == 1, pattern == 2],
        [_cat(f, ".", la, num), _cat(f, la, num), _cat(initial, la, num)],
        default=_cat(f, "_", la, ".", num),
    )
    email = _cat(local, "@", np.array(EMAIL_DOMAINS)[domain])

    # phones: UK mobiles, unique per person; a placeholder for a few, one for the family
    has_phone = rng.random(n) < 0.78
    v = affine_ids(gidx, 400_000_000, seed + 1)
    phone = _cat(_MOBILE_PREFIX[v // 100_000_000], np.char.zfill((v % 100_000_000).astype(str), 8))
    phone = np.where(has_phone | family, phone, "")
    placeholder = np.isin(gidx, specials.placeholder)
    own_phone = phone.copy()
    if family.any():  # the family shares the first member's number
        phone[family] = own_phone[family][0]

    has_account = (rng.random(n) < 0.72) | family  # the family all have shop accounts
    customer_id = np.where(has_account, _cat("C", (1_000_000 + gidx).astype(str)), "")
    store_shopper = rng.random(n) < 0.25
    card = store_shopper & (rng.random(n) < 0.9)
    loyalty = np.char.zfill(affine_ids(gidx, 10**10, seed + 2).astype(str), 10)
    loyalty_id = np.where(card, _cat("LC", loyalty), "")
    birth = np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, n).astype("timedelta64[D]")

    existing = rng.random(n) < 0.3
    join_day = np.where(existing, 0, rng.integers(0, days, n))
    signup_sec = np.where(
        existing,
        -(rng.exponential(500.0, n) * 86400).astype(np.int64) - 1,
        join_day * 86400 + rng.integers(8 * 3600, 22 * 3600, n),
    )
    newsletter = ~has_account & (rng.random(n) < 0.25)

    z_eng = rng.normal(0.0, 1.0, n)
    z_buy = rng.normal(0.0, 1.0, n)
    app_user = has_account & (rng.random(n) < 0.35)
    consent = np.full((n, len(PURPOSES)), -1, dtype=np.int8)
    for j, p in enumerate(PURPOSES):  # five purposes, not rows
        stated = rng.random(n) < 0.9
        yes = rng.random(n) < CONSENT_P[p] * (1.0 + 0.15 * np.tanh(z_eng))
        consent[:, j] = np.where(stated, yes.astype(np.int8), -1)
    consent[newsletter] = [1, -1, -1, -1, -1]  # a newsletter sign-up states e-mail consent only
    has_crm = has_account | newsletter
    update = has_account & (rng.random(n) < 0.3)
    start_sec = np.maximum(signup_sec, join_day * 86400)
    update_sec = np.where(
        update, start_sec + (rng.random(n) * (days * 86400 - start_sec)).astype(np.int64), -1
    )
    yes_any = consent == 1
    pick = np.argmax(yes_any * rng.random((n, len(PURPOSES))), axis=1)
    withdraw = np.where(update & yes_any.any(axis=1) & (rng.random(n) < 0.4), pick, -1)
    other = np.array(EMAIL_DOMAINS)[
        (domain + rng.integers(1, len(EMAIL_DOMAINS), n)) % len(EMAIL_DOMAINS)
    ]
    new_email = np.where(update & (rng.random(n) < 0.1), _cat(local, "@", other), "")

    gumbel = np.log(catalog.cat_pop)[None, :] - np.log(
        -np.log(rng.random((n, len(catalog.cat_pop))))
    )
    fav = np.argsort(-gumbel, axis=1)[:, :3]
    return People(
        gidx=gidx,
        person_id=_cat("P", np.char.zfill((gidx + 1).astype(str), 7)),
        first=first,
        last=last,
        email=email,
        gmail=domain == 0,
        phone=phone,
        placeholder=placeholder & has_crm,
        family=family,
        customer_id=customer_id,
        loyalty_id=loyalty_id,
        birth=birth,
        city=city,
        postcode=postcode,
        street=street,
        join_day=join_day,
        signup_sec=signup_sec,
        newsletter=newsletter,
        z_eng=z_eng,
        visit_rate=0.05 * np.exp(0.55 * z_eng - 0.15),
        p_buy=1.0 / (1.0 + np.exp(-(-1.9 + 0.6 * z_buy))),
        app_share=np.where(app_user, rng.uniform(0.4, 0.9, n), 0.0),
        store_rate=np.where(store_shopper, 0.015 * np.exp(0.4 * z_eng), 0.0),
        login_p=np.where(has_account, rng.uniform(0.1, 0.6, n), 0.0),
        late_p=np.array([c[3] for c in CITIES])[city],
        oneoff=rng.random(n) < 0.2,
        fav_cats=fav,
        style=rng.choice(4, n, p=[0.35, 0.3, 0.2, 0.15]),
        consent=np.where(has_crm[:, None], consent, -1).astype(np.int8),
        update_sec=update_sec,
        withdraw=withdraw,
        moved=update & (rng.random(n) < 0.3),
        new_email=new_email,
        n_cookies=1 + rng.poisson(0.8, n),
        n_devices=1 + (rng.random(n) < 0.2),
    )
