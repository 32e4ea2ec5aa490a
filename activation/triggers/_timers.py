"""Store writes of the engine: the event journal, new timers, timer moves, message rows.

Inserts go through a staged table and ``INSERT ... ON CONFLICT DO NOTHING``
on the primary key, so a replayed batch inserts nothing twice; each call runs
in a transaction.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
from cip.activation.triggers._tables import EVENTS, MESSAGES, TIMERS
from cip.activation.triggers.definitions import Trigger, WaitStep
from cip.activation.triggers.sources import START_COLUMNS
from cip.profiles.store import Store

__all__ = [
    "journal_events",
    "insert_starts",
    "thin_starts",
    "existing_decisions",
    "write_chunk",
]

_EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", pa.timestamp("us")),
        ("event_type", pa.string()),
        ("unified_id", pa.string()),
        ("item_id", pa.string()),
        ("properties", pa.string()),
        ("received_at", pa.timestamp("us")),
    ]
)
_TIMER_SCHEMA = pa.schema(
    [
        ("trigger", pa.string()),
        ("unified_id", pa.string()),
        ("window_key", pa.string()),
        ("step", pa.int64()),
        ("due_at", pa.timestamp("us")),
        ("anchor_ts", pa.timestamp("us")),
        ("state", pa.string()),
        ("reason", pa.string()),
        ("context", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
    ]
)
_MESSAGE_COLS = (
    "message_id",
    "trigger",
    "unified_id",
    "window_key",
    "step",
    "channel",
    "destination",
    "purpose",
    "decision",
    "control",
    "reason",
    "items",
    "context",
    "model_versions",
    "decided_at",
    "deferred_until",
)
_MESSAGE_SCHEMA = pa.schema(
    [
        (c, pa.timestamp("us"))
        if c in ("decided_at", "deferred_until")
        else (c, pa.int64())
        if c == "step"
        else (c, pa.bool_())
        if c == "control"
        else (c, pa.string())
        for c in _MESSAGE_COLS
    ]
)
_MOVE_SCHEMA = pa.schema(
    [
        ("trigger", pa.string()),
        ("unified_id", pa.string()),
        ("window_key", pa.string()),
        ("old_step", pa.int64()),
        ("old_due", pa.timestamp("us")),
        ("step", pa.int64()),
        ("due_at", pa.timestamp("us")),
        ("state", pa.string()),
        ("reason", pa.string()),
        ("updated_at", pa.timestamp("us")),
    ]
)


def _col(df: pd.DataFrame, c: str) -> list[Any]:
    return [
        None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
        for v in df[c].tolist()  # a list first: iterating an Arrow-backed column is slow
    ]


def _ns(values: Any) -> list[int]:
    """Timestamps as integer nanoseconds (cheap to compare in a Python loop)."""
    return pd.to_datetime(pd.Series(values)).astype("datetime64[ns]").astype("int64").tolist()


def _insert_new(store: Store, table: str, tbl: pa.Table) -> int:
    stage = f"_stage_new_{table}"
    cols = ", ".join(f'"{c}"' for c in tbl.column_names)
    with store.transaction():
        store.load_arrow(stage, tbl, mode="replace")
        try:
            n = store.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
            )
        finally:
            store.execute(f"DROP TABLE IF EXISTS {stage}")
    return max(n, 0)


def journal_events(
    store: Store, events: pd.DataFrame, types: Sequence[str], now: dt.datetime
) -> int:
    """Remember the (normalised) events of ``types``; returns how many were new."""
    ev = events[events["event_type"].isin(list(types))]
    if ev.empty:
        return 0
    tbl = pa.table(
        {
            "event_id": _col(ev, "event_id"),
            "ts": ev["ts"].to_list(),
            "event_type": _col(ev, "event_type"),
            "unified_id": _col(ev, "unified_id"),
            "item_id": _col(ev, "item_id"),
            "properties": _col(ev, "properties"),
            "received_at": [now] * len(ev),
        },
        schema=_EVENT_SCHEMA,
    )
    return _insert_new(store, EVENTS, tbl)


def thin_starts(
    store: Store, triggers: Mapping[str, Trigger], starts: pd.DataFrame
) -> pd.DataFrame:
    """Drop starts within a trigger's ``reentry`` of another journey of the same person
    (stored or earlier in the batch); a start whose window key is stored is dropped too."""
    starts = starts.sort_values(["trigger", "unified_id", "anchor_ts", "window_key"])
    persons = sorted(set(starts["unified_id"].astype(str)))
    old: dict[tuple[str, str], list[tuple[str, pd.Timestamp]]] = defaultdict(list)
    for i in range(0, len(persons), 500):
        chunk = persons[i : i + 500]
        df = store.sql(
            f'SELECT "trigger", unified_id, window_key, anchor_ts FROM {TIMERS} '
            f"WHERE unified_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        if df.empty:
            continue
        for t, u, k, a in zip(
            df["trigger"].tolist(),
            df["unified_id"].tolist(),
            df["window_key"].tolist(),
            _ns(df["anchor_ts"]),
            strict=True,
        ):
            old[(str(t), str(u))].append((str(k), a))
    keep: list[Any] = []
    known: dict[tuple[str, str], set[str]] = {}
    taken: dict[tuple[str, str], list[int]] = {}
    gaps = {
        n: (None if t.reentry_delta is None else int(t.reentry_delta.total_seconds() * 1e9))
        for n, t in triggers.items()
    }
    cols = zip(
        starts.index.tolist(),
        starts["trigger"].tolist(),
        starts["unified_id"].tolist(),
        starts["window_key"].tolist(),
        _ns(starts["anchor_ts"]),
        strict=True,
    )
    for idx, name, uid, key, t in cols:
        pk = (str(name), str(uid))
        if pk not in known:
            known[pk] = {k for k, _ in old.get(pk, ())}
            taken[pk] = [a for _, a in old.get(pk, ())]
        gap = gaps[pk[0]]
        if key in known[pk] or (gap is None and taken[pk]):
            continue
        if gap is not None and any(abs(t - a) < gap for a in taken[pk]):
            continue
        taken[pk].append(t)
        known[pk].add(str(key))
        keep.append(idx)
    return starts.loc[keep, list(START_COLUMNS)]


def insert_starts(
    store: Store, triggers: Mapping[str, Trigger], starts: pd.DataFrame, now: dt.datetime
) -> int:
    """Insert journeys (:data:`START_COLUMNS` rows) as waiting timers; returns how many
    were new.

    A journey is due at its anchor at step 0, or - when its plan starts with waits
    that end after ``now`` - at the end of those waits, at the step after them:
    where the engine's first pass would have moved it (one timer write instead of
    two for a journey that waits).
    """
    kept = thin_starts(store, triggers, starts)
    if kept.empty:
        return 0
    anchors = list(pd.to_datetime(kept["anchor_ts"]).dt.to_pydatetime())
    names = _col(kept, "trigger")
    lead: dict[str, tuple[int, dt.timedelta]] = {}
    for name in set(names):
        k, total = 0, dt.timedelta(0)
        for step in triggers[name].plan():
            if not isinstance(step, WaitStep):
                break
            k, total = k + 1, total + step.delta
        lead[name] = (k, total)
    steps, dues = [], []
    for name, a in zip(names, anchors, strict=True):
        k, total = lead[name]
        if k and a + total > now:
            steps.append(k)
            dues.append(a + total)
        else:
            steps.append(0)
            dues.append(a)
    n = len(kept)
    tbl = pa.table(
        {
            "trigger": names,
            "unified_id": _col(kept, "unified_id"),
            "window_key": _col(kept, "window_key"),
            "step": steps,
            "due_at": dues,
            "anchor_ts": anchors,
            "state": ["waiting"] * n,
            "reason": [None] * n,
            "context": _col(kept, "context"),
            "created_at": [now] * n,
            "updated_at": [now] * n,
        },
        schema=_TIMER_SCHEMA,
    )
    return _insert_new(store, TIMERS, tbl)


def existing_decisions(store: Store, message_ids: Sequence[str]) -> dict[str, str]:
    """``message_id -> decision`` of the messages already recorded."""
    out: dict[str, str] = {}
    ids = sorted(set(message_ids))
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        df = store.sql(
            f"SELECT message_id, decision FROM {MESSAGES} "
            f"WHERE message_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        out.update(zip(df["message_id"].astype(str), df["decision"].astype(str), strict=True))
    return out


def _stage(store: Store, name: str, tbl: pa.Table) -> str:
    stage = f"_stage_{name}"
    store.load_arrow(stage, tbl, mode="replace")
    return stage


def write_chunk(
    store: Store,
    moves: Sequence[Mapping[str, Any]],
    new_messages: Sequence[Mapping[str, Any]],
    decided_deferrals: Sequence[Mapping[str, Any]],
) -> None:
    """Write one chunk of timer moves and messages in one transaction.

    ``moves``: the timer key, the step and due time it was read with
    (``old_step``, ``old_due``) and its new ``step, due_at, state, reason,
    updated_at`` - applied only when the timer is still as read. ``new_messages``
    are inserted ``ON CONFLICT DO NOTHING``; ``decided_deferrals`` update rows
    that are still ``deferred``.
    """
    with store.transaction():
        if new_messages:
            tbl = pa.table(
                {c: [m[c] for m in new_messages] for c in _MESSAGE_COLS}, schema=_MESSAGE_SCHEMA
            )
            st = _stage(store, "trigger_messages", tbl)
            cols = ", ".join(f'"{c}"' for c in _MESSAGE_COLS)
            store.execute(
                f"INSERT INTO {MESSAGES} ({cols}) SELECT {cols} FROM {st} ON CONFLICT DO NOTHING"
            )
            store.execute(f"DROP TABLE {st}")
        if decided_deferrals:
            tbl = pa.table(
                {c: [m[c] for m in decided_deferrals] for c in _MESSAGE_COLS},
                schema=_MESSAGE_SCHEMA,
            )
            st = _stage(store, "trigger_decided", tbl)
            store.execute(
                f"UPDATE {MESSAGES} SET decision = s.decision, control = s.control, "
                "reason = s.reason, items = s.items, model_versions = s.model_versions, "
                f"decided_at = s.decided_at, deferred_until = COALESCE(s.deferred_until, "
                f"{MESSAGES}.deferred_until) FROM {st} s WHERE {MESSAGES}.message_id = s.message_id "
                f"AND {MESSAGES}.decision = 'deferred'"
            )
            store.execute(f"DROP TABLE {st}")
        if moves:
            tbl = pa.table(
                {c: [m[c] for m in moves] for c in _MOVE_SCHEMA.names}, schema=_MOVE_SCHEMA
            )
            st = _stage(store, "trigger_moves", tbl)
            t = TIMERS
            store.execute(
                f"UPDATE {t} SET step = s.step, due_at = s.due_at, state = s.state, "
                f"reason = s.reason, updated_at = s.updated_at FROM {st} s "
                f'WHERE {t}."trigger" = s."trigger" AND {t}.unified_id = s.unified_id '
                f"AND {t}.window_key = s.window_key AND {t}.state = 'waiting' "
                f"AND {t}.step = s.old_step AND {t}.due_at = s.old_due"
            )
            store.execute(f"DROP TABLE {st}")
