"""Read-only views of the engine's state: status per trigger, the message log, a dry run.

These are what ``cip triggers status|log|test`` show; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
from cip.activation.measure.preferences import load_preferences
from cip.activation.policy import MessageRequest, PersonState, decide
from cip.activation.triggers._people import load_people, recent_sends
from cip.activation.triggers._tables import MESSAGES, TIMERS, ensure_trigger_tables
from cip.activation.triggers.best import choose_channel
from cip.activation.triggers.content import person_events
from cip.activation.triggers.definitions import EventWhen, SendStep
from cip.activation.triggers.engine import TriggerEngine
from cip.activation.triggers.sources import event_starts, normalise_events
from cip.profiles.errors import NotFoundError
from cip.profiles.store import Store

__all__ = ["trigger_status", "message_log", "explain"]


def trigger_status(store: Store) -> pd.DataFrame:
    """One row per trigger: timers per state, messages per decision, next due, last decision."""
    ensure_trigger_tables(store)
    t = store.sql(
        f'SELECT "trigger", state, count(*) AS n, min(due_at) AS next_due FROM {TIMERS} '
        'GROUP BY "trigger", state'
    )
    m = store.sql(
        f'SELECT "trigger", decision, count(*) AS n, max(decided_at) AS last_decided '
        f'FROM {MESSAGES} GROUP BY "trigger", decision'
    )
    names = sorted(set(t["trigger"]).union(m["trigger"]))
    rows = []
    for name in names:
        ti, me = t[t["trigger"] == name], m[m["trigger"] == name]
        row: dict[str, Any] = {"trigger": name}
        for state in ("waiting", "done", "cancelled"):
            row[state] = int(ti.loc[ti["state"] == state, "n"].sum())
        waiting = ti.loc[ti["state"] == "waiting", "next_due"]
        row["next_due"] = waiting.min() if len(waiting) else None
        for d in (
            "sent",
            "held_out",
            "capped",
            "deferred",
            "no_consent",
            "no_contact",
            "suppressed",
        ):
            row[d] = int(me.loc[me["decision"] == d, "n"].sum())
        row["last_decided"] = me["last_decided"].max() if len(me) else None
        rows.append(row)
    return pd.DataFrame(rows)


def message_log(
    store: Store,
    *,
    trigger: str | None = None,
    unified_id: str | None = None,
    limit: int = 50,
) -> pd.DataFrame:
    """The latest messages (newest first), optionally of one trigger and/or person."""
    ensure_trigger_tables(store)
    where, params = [], []
    if trigger:
        where.append('"trigger" = ?')
        params.append(trigger)
    if unified_id:
        where.append("unified_id = ?")
        params.append(unified_id)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    return store.sql(
        f'SELECT message_id, "trigger", unified_id, step, channel, destination, decision, '
        f"control, reason, items, model_versions, decided_at, deferred_until, sent_at "
        f"FROM {MESSAGES}{cond} ORDER BY decided_at DESC, message_id LIMIT {int(limit)}",
        params,
    )


def explain(
    engine: TriggerEngine, trigger: str, unified_id: str, now: dt.datetime
) -> dict[str, Any]:
    """A dry run: what ``trigger`` would do for the person at ``now``, and why not.

    Returns the person's journeys of the trigger (state, step, reason), for an
    event trigger the remembered events matching its source within the maximum
    event age (``reentry`` decides which of them start a journey), and the
    policy's decision for each send step if it ran now. Nothing is written.
    """
    if trigger not in engine.triggers:
        known = ", ".join(sorted(engine.triggers)) or "none"
        raise NotFoundError(f"no trigger named {trigger!r} (triggers: {known})")
    t = engine.triggers[trigger]
    store = engine.store
    journeys = store.sql(
        f"SELECT window_key, step, due_at, anchor_ts, state, reason FROM {TIMERS} "
        'WHERE "trigger" = ? AND unified_id = ? ORDER BY anchor_ts',
        [trigger, unified_id],
    )
    would_start: list[str] = []
    if isinstance(t.when, EventWhen):
        evs = person_events(store, [unified_id], now - engine.max_event_age, now).get(
            unified_id, []
        )
        batch = normalise_events(
            pd.DataFrame(
                {
                    "ts": [e[0] for e in evs],
                    "event_type": [e[1] for e in evs],
                    "unified_id": unified_id,
                    "item_id": [e[2] for e in evs],
                }
            )
        )
        starts = event_starts(t, batch, now, engine.max_event_age)
        would_start = [
            f"{json.loads(c)['event_type']} at {pd.Timestamp(a).isoformat()}"
            for c, a in zip(starts["context"], starts["anchor_ts"], strict=True)
        ]
    person = load_people(store, [unified_id], salt=engine.salt).get(unified_id) or PersonState(
        unified_id, known=False
    )
    sends = recent_sends(store, [unified_id], now - engine.longest_cap)
    prefs, shop = load_preferences(store, [unified_id])
    decisions = []
    for i, s in enumerate(t.plan()):
        if not isinstance(s, SendStep):
            continue
        ch = s.send.channel or t.channel
        if ch == "best":
            ch, _ = choose_channel(t, person, prefs.get(unified_id), shop)
        req = MessageRequest(t.name, ch, t.purpose_of(ch), t.control_pct)
        d = decide(req, person, sends.get((unified_id, ch), ()), now, engine.policy, engine.secret)
        decisions.append({"step": i, "channel": ch, "decision": d.kind, "reason": d.reason})
    return {
        "trigger": trigger,
        "unified_id": unified_id,
        "journeys": journeys.to_dict("records"),
        "would_start": would_start,
        "decisions_now": decisions,
    }
