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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["best_channel_and_hour"]


def best_channel_and_hour(
    facts: pd.DataFrame,
    orders: pd.DataFrame | None = None,
    *,
    window_days: float = 3.0,
    min_responses: int = 5,
) -> pd.DataFrame:
    """One row per person messaged: ``unified_id, channel, hour, responses, basis``.

    ``basis`` is ``person`` (enough responses of their own) or ``default``.
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
        str((overall["responses"] / overall["sent"].clip(lower=1)).idxmax()) if len(overall) else None
    )
    default_hour = int(resp["hour"].mode().iloc[0]) if len(resp) else None
    r = rate.reset_index().sort_values(["unified_id", "rate", "responses"], ascending=[True, False, False])
    best = r.groupby("unified_id").head(1).set_index("unified_id")["channel"]
    total = resp.groupby("unified_id").size()
    hours = resp.groupby(["unified_id", "hour"]).size().rename("n").reset_index()
    hours = hours.sort_values(["unified_id", "n"], ascending=[True, False]).groupby("unified_id").head(1)
    best_hour = hours.set_index("unified_id")["hour"]
    people = pd.Index(sends["unified_id"].unique(), name="unified_id")
    n = total.reindex(people).fillna(0).astype(int)
    own = n >= min_responses
    out = pd.DataFrame(
        {
            "channel": np.where(own, best.reindex(people), default_channel),
            "hour": np.where(own, best_hour.reindex(people), default_hour),
            "responses": n.to_numpy(),
            "basis": np.where(own, "person", "default"),
        },
        index=people,
    )
    return out.reset_index()
