"""Hand-made persons, events and engines for the trigger tests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from cip.activation.policy import PolicyConfig
from cip.activation.triggers import TriggerEngine, validate_triggers
from cip.profiles.store import Store

SECRET = b"w" * 32
T0 = dt.datetime(2026, 1, 5, 12, 0)  # a Monday noon, UTC (London is on GMT)
NO_QUIET = PolicyConfig(quiet_hours=None)

_PURPOSES = ("email", "sms", "push", "personalization")


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes, hours=hours, days=days)


def add_profiles(store: Store, people: Sequence[dict[str, Any]]) -> None:
    """A minimal ``profiles`` table: ids, contacts, consent per purpose, time zone.

    Each person: ``uid`` and optionally ``email``, ``phone``, ``consent`` (a set
    of purposes; default all), ``timezone``.
    """
    cols = (
        "unified_id VARCHAR, customer_id VARCHAR, email VARCHAR, phone VARCHAR, "
        + ", ".join(f"consent_{p} BOOLEAN" for p in _PURPOSES)
        + ", timezone VARCHAR"
    )
    store.execute(f"CREATE TABLE IF NOT EXISTS profiles ({cols})")
    for p in people:
        uid = p["uid"]
        consent = p.get("consent", set(_PURPOSES))
        store.execute(
            "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                uid,
                f"c-{uid}",
                p.get("email", f"{uid}@example.com"),
                p.get("phone", "+447700900123"),
                *(purpose in consent for purpose in _PURPOSES),
                p.get("timezone"),
            ],
        )


def events(*rows: tuple) -> pd.DataFrame:
    """``(event_id, uid, event_type, ts[, item_id[, properties]])`` rows as a batch."""
    out = []
    for r in rows:
        eid, uid, kind, ts = r[:4]
        item = r[4] if len(r) > 4 else None
        props = json.dumps(r[5]) if len(r) > 5 else None
        out.append(
            {
                "event_id": eid,
                "ts": ts,
                "event_type": kind,
                "unified_id": uid,
                "item_id": item,
                "properties": props,
            }
        )
    return pd.DataFrame(out)


def engine(
    store: Store, triggers: list[dict[str, Any]], policy: PolicyConfig = NO_QUIET, **kw: Any
) -> TriggerEngine:
    return TriggerEngine(store, validate_triggers(triggers), secret=SECRET, policy=policy, **kw)


def messages(store: Store) -> pd.DataFrame:
    return store.sql(
        'SELECT message_id, "trigger", unified_id, window_key, step, channel, decision, control, '
        "reason, items, decided_at, deferred_until FROM messages ORDER BY decided_at, message_id"
    )


def timers(store: Store) -> pd.DataFrame:
    return store.sql(
        'SELECT "trigger", unified_id, window_key, step, due_at, state, reason FROM trigger_timers '
        'ORDER BY "trigger", unified_id, window_key'
    )


def rows(df: pd.DataFrame) -> list[tuple]:
    """Comparable rows (NaN/NaT -> None, timestamps -> ISO text)."""
    out = []
    for r in df.itertuples(index=False):
        out.append(
            tuple(
                None
                if (v is None or (not isinstance(v, str) and pd.isna(v)))
                else (
                    pd.Timestamp(v).isoformat() if isinstance(v, dt.datetime | pd.Timestamp) else v
                )
                for v in r
            )
        )
    return out


CART = {
    "name": "abandoned_cart",
    "when": {"event": "add_to_cart"},
    "wait": "30m",
    "unless": {"event": ["checkout", "purchase"]},
    "channel": "email",
    "content": {"cart": True},
}
