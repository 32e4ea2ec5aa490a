"""Message facts: the ``message_events`` table, fed by the trigger log, read per person.

Two feeds write ``message_events`` (the contract is
:data:`cip.profiles.contracts.MESSAGE_EVENTS`):

* the trigger engine's ``messages`` log, copied by :func:`sync_trigger_log`:
  a ``sent`` decision becomes a ``send`` event, a ``held_out`` decision (the
  trigger's or the global control group) a ``control`` event, so the control
  group is kept beside the treatment; capped, deferred and no-consent decisions
  are not message facts (nothing was sent and nobody was randomised);
* a provider's export (sends, deliveries, opens, clicks, ...), ingested like
  every other source with ``table: message_events`` in ``cip.yaml``.

:func:`message_facts` reads them back with a ``unified_id`` for every event
(the trigger log knows it; an export's identifiers are resolved through the
identity graph's ``identity_map``) and a ``machine`` flag on opens: the
provider's ``machine_open`` flag, or an open within ``machine_open_seconds`` of
the message's delivery (or send) -- mail proxies and scanners open at once.
Machine opens are kept, flagged, and never counted as engagement.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from cip.profiles.contracts import IDENTIFIER_COLUMNS, MESSAGE_EVENTS
from cip.profiles.identity.normalise import normalise_email, normalise_id, normalise_phone
from cip.profiles.store import Store

__all__ = [
    "TRIGGER_SOURCE",
    "MACHINE_OPEN_SECONDS",
    "ensure_message_events",
    "sync_trigger_log",
    "message_facts",
]

log = logging.getLogger(__name__)

#: ``source`` of the rows copied from the trigger engine's ``messages`` log.
TRIGGER_SOURCE = "triggers"
#: An open this soon after delivery (or send) is a machine open.
MACHINE_OPEN_SECONDS = 2.0
_TABLE = MESSAGE_EVENTS.name
_FACT_COLS = (
    "event_id", "message_id", "ts", "event_type", "channel", "campaign", "unified_id",
    "machine_open", "properties", "source",
)  # fmt: skip


def ensure_message_events(store: Store) -> None:
    """Create ``message_events`` when missing."""
    store.create_table(MESSAGE_EVENTS)


def sync_trigger_log(store: Store) -> int:
    """Copy new ``sent`` and ``held_out`` decisions of ``messages`` into ``message_events``.

    Idempotent: a message's event has ``record_id`` = md5 of source, message id
    and type, and rows already present are skipped. Returns the rows added.
    """
    ensure_message_events(store)
    if not store.has_table("messages"):
        return 0
    scope = "CASE WHEN m.reason LIKE 'global control group%' THEN 'global' ELSE 'trigger' END"
    etype = "CASE WHEN m.decision = 'sent' THEN 'send' ELSE 'control' END"
    select = (
        f"SELECT '{TRIGGER_SOURCE}' AS source, "
        f"md5('{TRIGGER_SOURCE}:' || m.message_id || ':' || {etype}) AS record_id, "
        "m.message_id AS source_record_id, CAST(now() AS TIMESTAMP) AS ingested_at, "
        "m.message_id AS event_id, m.message_id, "
        "COALESCE(m.sent_at, m.decided_at) AS ts, "
        f'{etype} AS event_type, m.channel, m."trigger" AS campaign, m.unified_id, '
        "CAST(NULL AS BOOLEAN) AS machine_open, "
        f"'{{\"scope\": \"' || {scope} || '\", \"step\": ' || CAST(m.step AS VARCHAR) || '}}' "
        "AS properties "
        "FROM messages m WHERE m.decision IN ('sent', 'held_out')"
    )
    cols = ", ".join(
        c
        for c in ("source", "record_id", "source_record_id", "ingested_at", "event_id",
                  "message_id", "ts", "event_type", "channel", "campaign", "unified_id",
                  "machine_open", "properties")
    )  # fmt: skip
    with store.transaction():
        n = store.execute(
            f"INSERT INTO {_TABLE} ({cols}) SELECT {cols} FROM ({select}) AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_TABLE} x WHERE x.record_id = s.record_id)"
        )
    log.info("message_events: %s rows copied from the trigger log", n)
    return int(n or 0)


def _resolve(store: Store, ev: pd.DataFrame) -> pd.Series:
    """``unified_id`` of events without one, from their identifiers (identity graph)."""
    uid = ev["unified_id"].astype("object").copy()
    todo = uid.isna()
    if not todo.any():
        return uid
    if not store.has_table("identity_map"):
        return uid.where(~todo, ev["customer_id"])
    ids = store.sql(
        "SELECT identifier_type, identifier_value, unified_id FROM identity_map "
        "WHERE unified_id IS NOT NULL AND identifier_value IS NOT NULL"
    )
    lookup = {
        t: dict(zip(g["identifier_value"], g["unified_id"], strict=False))
        for t, g in ids.groupby("identifier_type")
    }
    norm = {"email": normalise_email, "phone": normalise_phone}
    for col in IDENTIFIER_COLUMNS:  # in order of trust: the first match wins
        todo = uid.isna()
        if not todo.any() or col not in lookup:
            continue
        vals = ev.loc[todo, col]
        vals = vals[vals.notna()]
        if vals.empty:
            continue
        got = norm.get(col, normalise_id)(vals.astype("string")).map(lookup[col])
        uid.loc[got.index] = got.astype("object").where(got.notna(), None)
    return uid


def message_facts(
    store: Store, *, machine_open_seconds: float = MACHINE_OPEN_SECONDS
) -> pd.DataFrame:
    """Every message event with ``unified_id`` resolved and machine opens flagged.

    Columns: ``event_id, message_id, ts, event_type, channel, campaign,
    unified_id, machine, scope, source``. ``machine`` is True for opens made by a
    machine (never engagement); ``scope`` is ``global`` for the global control
    group's ``control`` rows, else ``trigger``. Events whose person cannot be
    resolved are dropped (logged).
    """
    if not store.has_table(_TABLE):
        return pd.DataFrame(columns=[*_FACT_COLS, "machine", "scope"])
    cols = ", ".join(dict.fromkeys((*_FACT_COLS, *IDENTIFIER_COLUMNS)))
    ev = store.sql(f"SELECT {cols} FROM {_TABLE}")
    ev["unified_id"] = _resolve(store, ev)
    lost = int(ev["unified_id"].isna().sum())
    if lost:
        log.warning("message_events: %s events match no known person (left out)", lost)
    ev = ev[ev["unified_id"].notna()].copy()
    if ev.empty:
        return ev.assign(machine=pd.Series(dtype=bool), scope=pd.Series(dtype=object))[
            [*_FACT_COLS, "machine", "scope"]
        ].reset_index(drop=True)
    ev["ts"] = pd.to_datetime(ev["ts"])
    ev["event_type"] = ev["event_type"].str.lower()
    ev["scope"] = np.where(
        ev["properties"].fillna("").str.contains('"scope": "global"', regex=False),
        "global",
        "trigger",
    )
    first = (
        ev[ev["event_type"].isin(["delivered", "send"])]
        .dropna(subset=["message_id"])
        .groupby("message_id")["ts"]
        .max()  # the delivery when there is one (it follows the send)
    )
    is_open = ev["event_type"].eq("open")
    if first.empty:  # only control rows: nothing was delivered (map would fail on it)
        sent_at = pd.Series(pd.NaT, index=ev.index, dtype=ev["ts"].dtype)
    else:
        sent_at = pd.to_datetime(ev["message_id"].map(first))
    since = (ev["ts"] - sent_at).dt.total_seconds()
    fast = since.between(0, machine_open_seconds).fillna(False).astype(bool)
    flagged = ev["machine_open"].fillna(False).astype(bool)
    ev["machine"] = is_open & (flagged | fast)
    return ev[[*_FACT_COLS, "machine", "scope"]].reset_index(drop=True)
