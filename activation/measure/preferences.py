"""Best channel and best send hour per person, from their responses to messages.

A **response** is a click (machine opens never count) or a completed order
within ``window_days`` of a message (credited to the last message sent before
it). Per person and channel the response *rate* (responses / messages sent on
the channel, clicks counting fully and purchases a quarter, since many
purchases would have happened whatever the channel) decides the best channel;
the best hour is the send hour (UTC) of the messages they responded to most
often. A person with fewer than
``min_responses`` responses gets the shop's default: the channel with the best
overall response rate and the most common responding hour.

:func:`write_preferences` stores them in ``channel_preferences`` (one row per
person and a ``*`` row with the shop's default) and :func:`load_preferences`
reads them back for the trigger engine (``channel: best``, ``send_at: best``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from cip.profiles.store import Store

__all__ = [
    "SHOP_DEFAULT",
    "Preference",
    "best_channel_and_hour",
    "write_preferences",
    "load_preferences",
]

#: ``unified_id`` of the shop's default row in ``channel_preferences``.
SHOP_DEFAULT = "*"


def best_channel_and_hour(
    facts: pd.DataFrame,
    orders: pd.DataFrame | None = None,
    *,
    window_days: float = 3.0,
    min_responses: int = 5,
) -> pd.DataFrame:
    """One row per person messaged: ``unified_id, channel, hour, responses, basis, ranking``.

    ``basis`` is ``person`` (enough responses of their own) or ``default``;
    ``ranking`` lists the channels best first, comma-separated (the person's
    own by response rate, then the shop's ranking; the shop's alone for
    ``default``). ``out.attrs["default"]`` holds the shop's default
    ``(channel, hour, ranking)``.
    """
    ev = facts[~facts["machine"].astype(bool)] if "machine" in facts else facts
    sends = ev[ev["event_type"] == "send"][["unified_id", "message_id", "channel", "ts"]]
    sends = sends.assign(hour=pd.to_datetime(sends["ts"]).dt.hour)
    clicks = ev[ev["event_type"] == "click"][["unified_id", "message_id"]].drop_duplicates()
    resp = sends.merge(clicks, on=["unified_id", "message_id"])[["unified_id", "channel", "hour"]]
    n_clicks = len(resp)
    if orders is not None and len(orders) and len(sends):
        # one key type on both sides (the store gives string[python], a frame object)
        o = orders[["unified_id", "ts"]].astype({"unified_id": object, "ts": "datetime64[us]"})
        o = o.sort_values("ts")
        s = sends.astype({"unified_id": object, "ts": "datetime64[us]"}).sort_values("ts")
        last = pd.merge_asof(
            o, s.rename(columns={"ts": "send_ts"}), left_on="ts", right_on="send_ts",
            by="unified_id", direction="backward",
            tolerance=pd.Timedelta(days=window_days),
        ).dropna(subset=["channel"])  # fmt: skip
        resp = pd.concat([resp, last[["unified_id", "channel", "hour"]]], ignore_index=True)
    sent_n = sends.groupby(["unified_id", "channel"]).size().rename("sent")
    # clicks decide the channel (a purchase after a message often happens whatever the
    # channel); purchases count towards the evidence a person has and break ties
    click_n = resp.iloc[:n_clicks].groupby(["unified_id", "channel"]).size()
    resp_n = (resp.groupby(["unified_id", "channel"]).size() * 0.25).add(click_n, fill_value=0)
    resp_n = resp_n.rename("responses")
    rate = pd.concat([sent_n, resp_n], axis=1).fillna(0.0)
    rate["rate"] = rate["responses"] / rate["sent"].clip(lower=1)
    overall = rate.groupby(level="channel")[["responses", "sent"]].sum()
    default_channel = (
        str((overall["responses"] / overall["sent"].clip(lower=1)).idxmax())
        if len(overall)
        else None
    )
    default_hour = int(resp["hour"].mode().iloc[0]) if len(resp) else None
    shop_rank = list(
        (overall["responses"] / overall["sent"].clip(lower=1))
        .sort_values(ascending=False, kind="stable")
        .index.astype(str)
    )
    r = rate.reset_index().sort_values(
        ["unified_id", "rate", "responses"], ascending=[True, False, False]
    )
    best = r.groupby("unified_id").head(1).set_index("unified_id")["channel"]
    total = resp.groupby("unified_id").size()
    hours = resp.groupby(["unified_id", "hour"]).size().rename("n").reset_index()
    hours = (
        hours.sort_values(["unified_id", "n"], ascending=[True, False])
        .groupby("unified_id")
        .head(1)
    )
    best_hour = hours.set_index("unified_id")["hour"]
    people = pd.Index(sends["unified_id"].unique(), name="unified_id")
    n = total.reindex(people).fillna(0).astype(int)
    own = n >= min_responses
    mine = r[r["responses"] > 0].groupby("unified_id")["channel"].agg(list)
    shop = ",".join(shop_rank)
    ranking = [
        ",".join(dict.fromkeys([*mine.get(u, []), *shop_rank])) if o else shop
        for u, o in zip(people, own, strict=True)
    ]
    out = pd.DataFrame(
        {
            "channel": np.where(own, best.reindex(people), default_channel),
            "hour": np.where(own, best_hour.reindex(people), default_hour),
            "responses": n.to_numpy(),
            "basis": np.where(own, "person", "default"),
            "ranking": ranking,
        },
        index=people,
    ).reset_index()
    out.attrs["default"] = (default_channel, default_hour, shop)
    return out


@dataclass(frozen=True)
class Preference:
    """A person's (or the shop's) best channel, channels in order, and best send hour (UTC)."""

    channel: str | None
    ranking: tuple[str, ...]
    hour: int | None
    basis: str  # person, default or shop


def write_preferences(store: Store, best: pd.DataFrame, now: dt.datetime | None = None) -> int:
    """Replace ``channel_preferences`` with ``best`` (:func:`best_channel_and_hour`) and the
    shop's default row (``unified_id`` ``*``); returns the persons written."""
    from cip.profiles.tables import CHANNEL_PREFERENCES, ensure_tables

    when = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ch, hour, rank = best.attrs.get("default", (None, None, ""))
    shop = pd.DataFrame(
        [{"unified_id": SHOP_DEFAULT, "channel": ch, "hour": hour, "ranking": rank,
          "responses": float(best["responses"].sum()) if len(best) else 0.0, "basis": "shop"}]
    )  # fmt: skip
    rows = pd.concat(
        [best[["unified_id", "channel", "hour", "ranking", "responses", "basis"]], shop],
        ignore_index=True,
    )
    rows = rows.astype({"unified_id": str, "responses": float}).assign(computed_at=when)
    rows["hour"] = pd.array(rows["hour"], dtype="Int32")
    with store.transaction():
        ensure_tables(store, CHANNEL_PREFERENCES)
        store.execute("DELETE FROM channel_preferences")
        store.load_arrow("channel_preferences", rows)
    return len(best)


def _pref(row: dict) -> Preference:
    rank = tuple(c for c in str(row.get("ranking") or "").split(",") if c)
    hour = row.get("hour")
    return Preference(
        None if pd.isna(row.get("channel")) else str(row["channel"]),
        rank,
        None if hour is None or pd.isna(hour) else int(hour),
        str(row.get("basis")),
    )


def load_preferences(
    store: Store, unified_ids: Iterable[str]
) -> tuple[dict[str, Preference], Preference | None]:
    """The stored preferences of ``unified_ids`` and the shop's default (None: never computed)."""
    if not store.has_table("channel_preferences"):
        return {}, None
    ids = sorted({str(u) for u in unified_ids} | {SHOP_DEFAULT})
    frames = []
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        frames.append(
            store.sql(
                "SELECT unified_id, channel, hour, ranking, basis FROM channel_preferences "
                f"WHERE unified_id IN ({', '.join('?' for _ in part)})",
                part,
            )
        )
    df = pd.concat(frames, ignore_index=True)
    prefs = {str(r["unified_id"]): _pref(r) for r in df.to_dict("records")}
    return {u: p for u, p in prefs.items() if u != SHOP_DEFAULT}, prefs.get(SHOP_DEFAULT)
