"""Randomised campaigns with ground truth: who a message persuades, who it puts off.

Every simulated person has a true **response type** to a message:

* ``persuadable`` - buys only when messaged (low base rate, large positive effect);
* ``sure_thing`` - buys anyway (high base rate, no effect);
* ``lost_cause`` - does not buy either way (very low base rate, no effect);
* ``sleeping_dog`` - a message puts them off (moderate base rate, negative effect);

and a preferred **channel** (email, sms, push) and **send hour**: the effect of
a message is full on the preferred channel within three hours of the preferred
hour and smaller otherwise. Observable features (recency, frequency, spend,
e-mail engagement, discount use, tenure) depend on the type, so an uplift model
can learn it, and the purchase probability does not tell persuadables from
sure things.

A campaign sends to a random ``1 - control_pct`` of its audience and holds out
the rest; each person's conversion is drawn from their *own* probability with
and without the message, so the true effect of every campaign is known: the
mean of ``p1 - p0`` over its audience (``effect`` scales every person's
``p1 - p0``; 0 gives a campaign that does nothing).

Everything is vectorised numpy: thousands of persons and several campaigns
take milliseconds, so tests run many seeds. The truth frames are for tests and
benchmarks; the platform never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "RESPONSE_TYPES",
    "MESSAGE_CHANNELS",
    "FEATURES",
    "CampaignSimulation",
    "simulate_persons",
    "simulate_campaigns",
    "history_orders",
    "write_campaign_sources",
]

RESPONSE_TYPES: tuple[str, ...] = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
#: Observable features of a person (what an uplift model may use).
FEATURES: tuple[str, ...] = (
    "recency_days", "frequency", "monetary", "email_engagement", "discount_share", "tenure_days",
)  # fmt: skip
_MIX = (0.25, 0.20, 0.40, 0.15)
# base purchase probability in the window and the change a message makes
_P0 = {"persuadable": 0.04, "sure_thing": 0.45, "lost_cause": 0.02, "sleeping_dog": 0.20}
_DELTA = {"persuadable": 0.30, "sure_thing": 0.0, "lost_cause": 0.0, "sleeping_dog": -0.15}
_OFF_CHANNEL = 0.4  # share of the effect left on another channel than the preferred one
_OFF_HOUR = 0.7  # share left when sent more than 3 hours from the preferred hour
_CLICK = 0.35  # click probability of a message on the preferred channel and hour


@dataclass(frozen=True)
class CampaignSimulation:
    """What :func:`simulate_campaigns` drew.

    Attributes:
        persons: the truth per person: ``unified_id, response_type,
            preferred_channel, preferred_hour, p0`` and the observable :data:`FEATURES`.
        assignments: one row per (campaign, person): ``campaign, unified_id,
            treated, channel, send_hour, ts, p0, p1, converted, orders, revenue``.
        message_events: ``send`` / ``control`` rows as the platform sees them
            (``unified_id, campaign, channel, event_type, ts, scope``).
        orders: the orders placed (``unified_id, order_id, ts, amount, order_channel``).
        truth: per campaign, the true effects: ``campaign, n, true_conversion_lift,
            true_revenue_lift, true_orders_lift``.
    """

    persons: pd.DataFrame
    assignments: pd.DataFrame
    message_events: pd.DataFrame
    orders: pd.DataFrame
    truth: pd.DataFrame


def simulate_persons(n: int, rng: np.random.Generator, mix=_MIX) -> pd.DataFrame:
    """``n`` persons with their true response type, preferences and observable features."""
    kind = rng.choice(len(RESPONSE_TYPES), size=n, p=np.asarray(mix) / np.sum(mix))
    types = np.asarray(RESPONSE_TYPES, dtype=object)[kind]
    p0 = np.array([_P0[t] for t in RESPONSE_TYPES])[kind]
    # features: each type has its own centre; noise makes them overlap
    centre = np.array(
        [  # recency, frequency, monetary, engagement, discount, tenure
            [60.0, 2.0, 80.0, 0.45, 0.55, 300.0],  # persuadable: lapsing, engaged, deal-seeking
            [15.0, 8.0, 400.0, 0.35, 0.10, 700.0],  # sure thing: frequent, loyal
            [220.0, 0.6, 30.0, 0.05, 0.20, 400.0],  # lost cause: gone, ignores mail
            [25.0, 5.0, 250.0, 0.08, 0.05, 900.0],  # sleeping dog: regular, hates mail
        ]
    )[kind]
    noise = rng.normal(size=(n, 6)) * np.array([0.5, 0.45, 0.5, 0.35, 0.45, 0.35])
    feats = np.empty((n, 6))
    feats[:, [0, 1, 2, 5]] = centre[:, [0, 1, 2, 5]] * np.exp(noise[:, [0, 1, 2, 5]])
    feats[:, [3, 4]] = np.clip(centre[:, [3, 4]] + noise[:, [3, 4]] * 0.3, 0, 1)
    df = pd.DataFrame(feats, columns=list(FEATURES))
    df.insert(0, "unified_id", np.char.add("p", np.char.zfill(np.arange(n).astype(str), 6)))
    df.insert(1, "response_type", types)
    df.insert(
        2, "preferred_channel", np.asarray(MESSAGE_CHANNELS, dtype=object)[rng.integers(0, 3, n)]
    )
    df.insert(3, "preferred_hour", np.clip(rng.normal(18, 3, n).round(), 6, 22).astype(int))
    df.insert(4, "p0", p0)
    return df


def simulate_campaigns(
    persons: int = 4000,
    *,
    campaigns: int = 1,
    seed: int = 0,
    control_pct: float = 50.0,
    effect: float = 1.0,
    audience_share: float = 1.0,
    start: datetime = datetime(2025, 11, 3, 9),
    window_days: float = 7.0,
    mix=_MIX,
    people: pd.DataFrame | None = None,
) -> CampaignSimulation:
    """Draw persons and ``campaigns`` randomised campaigns with a ``control_pct`` % holdout.

    Args:
        persons: population size.
        campaigns: number of campaigns (``c0``, ``c1``, ...), one week apart.
        seed: random seed (same arguments, same frames).
        control_pct: share of each audience held out (0-100).
        effect: multiplies every person's true effect (0: campaigns do nothing).
        audience_share: share of the population each campaign targets (random).
        start: send time of the first campaign.
        window_days: outcomes are the orders within this many days of the send.
        mix: shares of the four response types.
        people: the persons (a :func:`simulate_persons` frame) instead of drawing ``persons``.
    """
    rng = np.random.default_rng(seed)
    if people is None:
        people = simulate_persons(persons, rng, mix)
    persons = len(people)
    kind = pd.Categorical(people["response_type"], categories=RESPONSE_TYPES).codes
    delta0 = np.array([_DELTA[t] for t in RESPONSE_TYPES])[kind]
    rows = []
    for c in range(campaigns):
        aud = np.flatnonzero(rng.random(persons) < audience_share)
        n = len(aud)
        treated = rng.random(n) >= control_pct / 100.0
        channel = np.asarray(MESSAGE_CHANNELS, dtype=object)[rng.integers(0, 3, n)]
        hour = rng.integers(8, 22, n)
        pref_c = people["preferred_channel"].to_numpy()[aud]
        pref_h = people["preferred_hour"].to_numpy()[aud]
        scale = np.where(channel == pref_c, 1.0, _OFF_CHANNEL) * np.where(
            np.abs(hour - pref_h) <= 3, 1.0, _OFF_HOUR
        )
        p0 = people["p0"].to_numpy()[aud]
        p1 = np.clip(p0 + effect * delta0[aud] * scale, 0.0, 1.0)
        p = np.where(treated, p1, p0)
        converted = rng.random(n) < p
        # one order for most converters, two for some; amounts lognormal around 60
        n_orders = np.where(converted, 1 + (rng.random(n) < 0.2), 0)
        revenue = np.where(converted, rng.lognormal(np.log(55), 0.5, n) * n_orders, 0.0)
        day0 = pd.Timestamp(start + timedelta(days=7 * c)).normalize()
        ts = day0 + pd.to_timedelta(hour, unit="h")
        rows.append(
            pd.DataFrame(
                {
                    "campaign": f"c{c}",
                    "unified_id": people["unified_id"].to_numpy()[aud],
                    "treated": treated,
                    "channel": channel,
                    "send_hour": hour,
                    "ts": ts,
                    "p0": p0,
                    "p1": p1,
                    "converted": converted,
                    "orders": n_orders,
                    "revenue": revenue,
                    "_lag": rng.uniform(0.05, window_days * 0.95, n),
                }
            )
        )
    a = pd.concat(rows, ignore_index=True)
    # clicks (their own random stream): likelier on the preferred channel and hour
    crng = np.random.default_rng([seed, 1])
    pref = people.set_index("unified_id").loc[a["unified_id"]]
    fit = np.where(a["channel"].to_numpy() == pref["preferred_channel"].to_numpy(), 1.0, 0.25)
    fit = fit * np.where(
        np.abs(a["send_hour"].to_numpy() - pref["preferred_hour"].to_numpy()) <= 2, 1.0, 0.4
    )
    a["clicked"] = a["treated"].to_numpy() & (crng.random(len(a)) < _CLICK * fit)
    sent = pd.DataFrame(
        {
            "unified_id": a["unified_id"],
            "campaign": a["campaign"],
            "channel": a["channel"],
            "event_type": np.where(a["treated"], "send", "control"),
            "ts": a["ts"],
            "scope": "trigger",
            "message_id": a["campaign"] + ":" + a["unified_id"],
        }
    )
    clicks = sent[a["clicked"].to_numpy()].assign(
        event_type="click", ts=lambda d: d["ts"] + pd.Timedelta(minutes=20)
    )
    events = pd.concat([sent, clicks], ignore_index=True)
    buy = a[a["orders"] > 0]
    rep = buy.loc[buy.index.repeat(buy["orders"])]
    k = rep.groupby(level=0).cumcount()
    orders = pd.DataFrame(
        {
            "unified_id": rep["unified_id"].to_numpy(),
            "order_id": (
                rep["campaign"] + ":" + rep["unified_id"] + ":" + k.astype(str)
            ).to_numpy(),
            "ts": (rep["ts"] + pd.to_timedelta(rep["_lag"] + k * 0.01, unit="D")).to_numpy(),
            "amount": (rep["revenue"] / rep["orders"]).to_numpy(),
            "order_channel": "web",
        }
    )
    mean_order = np.exp(np.log(55) + 0.5**2 / 2) * 1.2  # E[amount] x E[orders | converted]
    truth = (
        a.assign(d=a["p1"] - a["p0"])
        .groupby("campaign")
        .agg(n=("d", "size"), true_conversion_lift=("d", "mean"))
        .reset_index()
    )
    truth["true_orders_lift"] = truth["true_conversion_lift"] * 1.2
    truth["true_revenue_lift"] = truth["true_conversion_lift"] * mean_order
    return CampaignSimulation(people, a.drop(columns="_lag"), events, orders, truth)


def history_orders(
    persons: pd.DataFrame, before: datetime, seed: int = 0, *, max_days: int = 720
) -> pd.DataFrame:
    """Past orders consistent with each person's features (frequency, recency, spend).

    ``frequency`` orders (at least one) per person, the last ``recency_days``
    before ``before``, the others spread over the ``tenure_days`` before it,
    sharing ``monetary``; so features built from these orders carry the
    response type the way real history would.
    """
    rng = np.random.default_rng(seed)
    n_orders = np.maximum(1, np.round(persons["frequency"].to_numpy())).astype(int)
    idx = np.repeat(np.arange(len(persons)), n_orders)
    k = pd.Series(idx).groupby(idx).cumcount().to_numpy()
    rec = np.minimum(persons["recency_days"].to_numpy(), max_days - 1)[idx]
    span = np.maximum(persons["tenure_days"].to_numpy()[idx], rec + 1)
    ago = np.where(k == 0, rec, rng.uniform(rec, np.minimum(span, max_days)))
    amount = persons["monetary"].to_numpy()[idx] / n_orders[idx] * rng.uniform(0.7, 1.3, len(idx))
    uid = persons["unified_id"].to_numpy()[idx]
    return pd.DataFrame(
        {
            "unified_id": uid,
            "order_id": np.char.add(np.char.add(uid.astype(str), ":h"), k.astype(str)),
            "ts": pd.Timestamp(before) - pd.to_timedelta(ago + 0.5, unit="D"),
            "amount": np.round(amount, 2),
            "order_channel": "web",
        }
    )


#: Files :func:`write_campaign_sources` adds beside the shop's sources.
CAMPAIGN_FILES = {
    "campaign_messages": "campaign_messages.csv",
    "campaign_orders": "campaign_orders.csv",
}


def write_campaign_sources(
    out_dir: Path, *, campaigns: int, seed: int, end: date, path_prefix: str, truth_dir: str
) -> tuple[list[dict[str, Any]], dict[str, Path], dict[str, int]]:
    """Randomised campaigns to the simulated shop's e-mail holders, written as sources.

    Reads the shop's persons from ``<truth_dir>/persons.parquet`` (their e-mail),
    gives each a true response type and preferences, runs ``campaigns`` weekly
    campaigns (30 % control) ending a week before ``end`` and writes an e-mail
    provider's export (``campaign_messages.csv``: send / control / click rows)
    and the orders the campaigns' window saw (``campaign_orders.csv``). The
    truth goes to ``truth_dir``: ``campaign_persons.parquet``,
    ``campaign_assignments.parquet`` and ``campaign_truth.parquet`` (true lift
    per campaign). Returns the two sources' declarations, files and row counts.
    """
    out_dir = Path(out_dir)
    truth = out_dir / truth_dir
    shop = pd.read_parquet(truth / "persons.parquet", columns=["person_id", "email"])
    shop = shop[shop["email"].notna()].reset_index(drop=True)
    rng = np.random.default_rng(seed + 7919)
    people = simulate_persons(len(shop), rng)
    people["unified_id"] = shop["person_id"].astype(str).to_numpy()
    email = dict(zip(people["unified_id"], shop["email"], strict=True))
    start = datetime.combine(end, datetime.min.time()) - timedelta(days=7 * campaigns + 7)
    sim = simulate_campaigns(
        campaigns=campaigns, seed=seed + 7919, control_pct=30, start=start, people=people
    )
    a = sim.assignments
    clicks = a[a["clicked"]]
    ev = pd.concat(
        [
            pd.DataFrame({"event": np.where(a["treated"], "send", "control"), "a": a.index}),
            pd.DataFrame({"event": "click", "a": clicks.index}),
        ],
        ignore_index=True,
    )
    rows = a.loc[ev["a"]].reset_index(drop=True)
    lag = np.where(ev["event"].eq("click"), 20.0, 0.0)
    msgs = pd.DataFrame(
        {
            "message_id": rows["campaign"] + "-" + rows["unified_id"],
            "event": ev["event"],
            "when": (rows["ts"] + pd.to_timedelta(lag, unit="min")).dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "recipient": rows["unified_id"].map(email),
            "campaign": rows["campaign"],
            "medium": rows["channel"],
        }
    ).sort_values(["when", "message_id"], kind="stable")
    orders = sim.orders.assign(
        email=sim.orders["unified_id"].map(email),
        ts=sim.orders["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        order_id="CMP-" + sim.orders["order_id"],
    )[["order_id", "ts", "email", "amount", "order_channel"]]
    files = {name: out_dir / f for name, f in CAMPAIGN_FILES.items()}
    msgs.to_csv(files["campaign_messages"], index=False)
    orders.round({"amount": 2}).to_csv(files["campaign_orders"], index=False)
    sim.persons.rename(columns={"unified_id": "person_id"}).assign(
        email=lambda d: d["person_id"].map(email)
    ).to_parquet(truth / "campaign_persons.parquet", index=False)
    a.rename(columns={"unified_id": "person_id"}).to_parquet(
        truth / "campaign_assignments.parquet", index=False
    )
    sim.truth.to_parquet(truth / "campaign_truth.parquet", index=False)
    pre = f"{path_prefix}/" if path_prefix else ""
    decls = [
        {
            "name": "campaign_messages",
            "table": "message_events",
            "path": pre + CAMPAIGN_FILES["campaign_messages"],
            "format": "csv",
            "columns": {
                "event_id": {"expr": "message_id || ':' || event"},
                "message_id": "message_id", "event_type": "event", "ts": "when",
                "email": "recipient", "campaign": "campaign", "channel": "medium",
            },
        },
        {
            "name": "campaign_orders",
            "table": "orders",
            "path": pre + CAMPAIGN_FILES["campaign_orders"],
            "format": "csv",
            "columns": {
                "order_id": "order_id", "ts": "ts", "email": "email", "amount": "amount",
                "channel": "order_channel",
            },
        },
    ]  # fmt: skip
    return decls, files, {"campaign_messages": len(msgs), "campaign_orders": len(orders)}
