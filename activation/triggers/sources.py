"""Trigger sources: which (trigger, person, window) journeys an input starts.

Every source gives a *starts* frame of :data:`START_COLUMNS`; the window key
makes a start idempotent (the same input always gives the same key):

* events: ``event:<event_id>``, anchored at the event time;
* catalog changes: ``<kind>:<item_id>:<change time>``, anchored at the change;
* segment changes: ``segment:<segment>:<change>:<as_of>``;
* scores: ``score:<name>:<as_of>`` (a crossing of the threshold since the previous score);
* predictions: ``next_order_due:<predicted date>``.

Event batches use the canonical ``events`` columns with the person resolved:
``event_id, ts, event_type, unified_id, item_id, properties`` (a JSON object
as text, or a dict). :func:`events_from_store` reads them from the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
from cip.activation._tables import to_timestamp
from cip.activation.triggers._tables import EVENTS
from cip.activation.triggers.definitions import (
    CatalogWhen,
    EventWhen,
    PredictedWhen,
    ScoreWhen,
    SegmentWhen,
    Trigger,
)
from cip.profiles.errors import DataError
from cip.profiles.store import Store

__all__ = [
    "EVENT_COLUMNS",
    "START_COLUMNS",
    "normalise_events",
    "event_starts",
    "catalog_starts",
    "segment_starts",
    "score_starts",
    "prediction_starts",
    "events_from_store",
]

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "event_type",
    "unified_id",
    "item_id",
    "properties",
)
START_COLUMNS: tuple[str, ...] = ("trigger", "unified_id", "window_key", "anchor_ts", "context")


def _empty_starts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in START_COLUMNS})


def _props_text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
        return None
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def normalise_events(events: pd.DataFrame) -> pd.DataFrame:
    """A batch in :data:`EVENT_COLUMNS` (naive UTC ``ts``; a missing ``event_id`` becomes a hash
    of the event's content). Rows without a person or a time are dropped."""
    for c in ("ts", "event_type", "unified_id"):
        if c not in events.columns:
            raise DataError(f"event batch: missing column {c}")
    events = events.reset_index(drop=True)  # a concatenated batch may repeat index labels
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(events["ts"], utc=True, errors="coerce")
            .dt.tz_localize(None)
            .astype("datetime64[us]"),
            "event_type": events["event_type"].astype(object),
            "unified_id": events["unified_id"].astype(object),
            "item_id": events["item_id"].astype(object) if "item_id" in events else None,
            "properties": events["properties"].map(_props_text) if "properties" in events else None,
        }
    )
    df = df[df["ts"].notna() & df["unified_id"].notna() & df["event_type"].notna()].copy()
    for c in ("unified_id", "event_type", "item_id"):
        df[c] = df[c].map(lambda v: None if v is None or pd.isna(v) else str(v))
    given = events.loc[df.index, "event_id"] if "event_id" in events else None
    fallback = [
        hashlib.md5(f"{u}|{t.isoformat()}|{e}|{i}|{p}".encode()).hexdigest()
        for u, t, e, i, p in zip(
            df["unified_id"],
            df["ts"],
            df["event_type"],
            df["item_id"],
            df["properties"],
            strict=True,
        )
    ]
    if given is not None:
        ids = [
            str(g) if isinstance(g, str) and g else f for g, f in zip(given, fallback, strict=True)
        ]
    else:
        ids = fallback
    df.insert(0, "event_id", ids)
    df = df.drop_duplicates("event_id").sort_values(["ts", "event_id"], ignore_index=True)
    return df[list(EVENT_COLUMNS)]


def _matches(props: str | None, item_id: str | None, want: dict[str, Any]) -> bool:
    try:
        have = json.loads(props) if props else {}
    except ValueError:
        have = {}
    if not isinstance(have, dict):
        have = {}
    for key, allowed in want.items():
        v = item_id if key == "item_id" and "item_id" not in have else have.get(key)
        options = allowed if isinstance(allowed, list) else [allowed]
        if v is None or not any(v == o or str(v) == str(o) for o in options):
            return False
    return True


def event_starts(
    trigger: Trigger, events: pd.DataFrame, now: dt.datetime, max_age: dt.timedelta
) -> pd.DataFrame:
    """Journeys an event batch (normalised) starts; events older than ``max_age`` never fire."""
    when = trigger.when
    if not isinstance(when, EventWhen) or events.empty:
        return _empty_starts()
    # plain lists: a cycle runs this per trigger, and pandas' per-call overhead was most of it
    floor = pd.Timestamp(now - max_age)
    types = set(when.event)
    ts = events["ts"].tolist()
    kinds = events["event_type"].tolist()
    items = events["item_id"].tolist()
    props = events["properties"].tolist() if when.properties else None
    pos = [
        k
        for k, (t, kind) in enumerate(zip(ts, kinds, strict=True))
        if kind in types and t >= floor
        and (props is None or _matches(props[k], items[k], when.properties))
    ]  # fmt: skip
    if not pos:
        return _empty_starts()
    ids = events["event_id"].tolist()
    uids = events["unified_id"].tolist()
    return pd.DataFrame(
        {
            "trigger": trigger.name,
            "unified_id": np.array([uids[k] for k in pos], dtype=object),
            "window_key": np.array([f"event:{ids[k]}" for k in pos], dtype=object),
            "anchor_ts": events["ts"].to_numpy()[pos],
            "context": [
                json.dumps({"event_id": ids[k], "event_type": kinds[k], "item_id": items[k]})
                for k in pos
            ],
        }
    )


def catalog_starts(
    store: Store, trigger: Trigger, changes: pd.DataFrame, now: dt.datetime
) -> pd.DataFrame:
    """Journeys catalog changes start: persons with interest in the item in the
    ``lookback_days`` before the change who did not buy it after that interest."""
    when = trigger.when
    if not isinstance(when, CatalogWhen) or changes.empty:
        return _empty_starts()
    ch = changes[changes["kind"] == when.catalog]
    if when.catalog == "price_drop":
        ch = ch[ch["pct"].fillna(0) >= when.min_pct]
    rows = []
    types = list(when.interest)
    ph = ", ".join("?" for _ in types)
    for c in ch.itertuples(index=False):
        at = to_timestamp(c.ts, what="change ts")
        found = store.sql(
            f"WITH i AS (SELECT unified_id, max(ts) AS interest_at FROM {EVENTS} "
            f"WHERE item_id = ? AND event_type IN ({ph}) AND ts >= CAST(? AS TIMESTAMP) "
            "AND ts <= CAST(? AS TIMESTAMP) GROUP BY unified_id) "
            f"SELECT i.unified_id, i.interest_at FROM i WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} p "
            "WHERE p.unified_id = i.unified_id AND p.item_id = ? AND p.event_type = 'purchase' "
            "AND p.ts > i.interest_at AND p.ts <= CAST(? AS TIMESTAMP)) ORDER BY i.unified_id",
            [
                str(c.item_id),
                *types,
                at - dt.timedelta(days=when.lookback_days),
                at,
                str(c.item_id),
                now,
            ],
        )
        for uid, interest in zip(found["unified_id"], found["interest_at"], strict=True):
            ctx = {
                "item_id": str(c.item_id),
                "change": c.kind,
                "old_price": None if pd.isna(c.old_price) else float(c.old_price),
                "new_price": None if pd.isna(c.new_price) else float(c.new_price),
                "pct": None if pd.isna(c.pct) else float(c.pct),
                "interest_at": pd.Timestamp(interest).isoformat(),
            }
            key = f"{c.kind}:{c.item_id}:{at.isoformat()}"
            rows.append((trigger.name, str(uid), key, at, json.dumps(ctx)))
    if not rows:
        return _empty_starts()
    return pd.DataFrame(rows, columns=list(START_COLUMNS))


def segment_starts(trigger: Trigger, changes: pd.DataFrame) -> pd.DataFrame:
    """Journeys segment transitions start (``segment, unified_id, as_of, change`` rows)."""
    when = trigger.when
    if not isinstance(when, SegmentWhen) or changes.empty:
        return _empty_starts()
    c = changes[(changes["segment"] == when.segment) & (changes["change"] == when.change)]
    as_of = pd.to_datetime(c["as_of"]).astype("datetime64[us]")
    return pd.DataFrame(
        {
            "trigger": trigger.name,
            "unified_id": c["unified_id"].astype(str).to_numpy(object),
            "window_key": [f"segment:{when.segment}:{when.change}:{t.isoformat()}" for t in as_of],
            "anchor_ts": as_of.to_numpy(),
            "context": [json.dumps({"segment": when.segment, "change": when.change})] * len(c),
        }
    )


def score_starts(trigger: Trigger, scores: pd.DataFrame) -> pd.DataFrame:
    """Journeys started by scores crossing the threshold.

    ``scores``: ``unified_id, name, as_of, score`` and optionally ``previous``
    (the person's previous score; null = none): a person fires when the score is
    beyond the threshold and the previous one was not.
    """
    when = trigger.when
    if not isinstance(when, ScoreWhen) or scores.empty:
        return _empty_starts()
    s = scores[scores["name"] == when.score]
    prev = s["previous"] if "previous" in s else pd.Series(float("nan"), index=s.index)
    if when.above is not None:
        hit = (s["score"] > when.above) & ~(prev > when.above).fillna(False)
    else:
        hit = (s["score"] < when.below) & ~(prev < when.below).fillna(False)
    s = s[hit.astype(bool)]
    as_of = pd.to_datetime(s["as_of"]).astype("datetime64[us]")
    return pd.DataFrame(
        {
            "trigger": trigger.name,
            "unified_id": s["unified_id"].astype(str).to_numpy(object),
            "window_key": [f"score:{when.score}:{t.isoformat()}" for t in as_of],
            "anchor_ts": as_of.to_numpy(),
            "context": [json.dumps({"score": when.score, "value": float(v)}) for v in s["score"]],
        }
    )


def prediction_starts(
    trigger: Trigger, predictions: pd.DataFrame, now: dt.datetime
) -> pd.DataFrame:
    """Journeys started by predictions coming due (``unified_id, as_of, next_order_at`` rows)."""
    when = trigger.when
    if not isinstance(when, PredictedWhen) or predictions.empty:
        return _empty_starts()
    nxt = pd.to_datetime(predictions["next_order_at"]).astype("datetime64[us]")
    p = predictions[(nxt <= now + dt.timedelta(days=when.within_days)).to_numpy()]
    due = pd.to_datetime(p["next_order_at"]).astype("datetime64[us]")
    as_of = pd.to_datetime(p["as_of"]).astype("datetime64[us]")
    return pd.DataFrame(
        {
            "trigger": trigger.name,
            "unified_id": p["unified_id"].astype(str).to_numpy(object),
            "window_key": [f"next_order_due:{d.date().isoformat()}" for d in due],
            "anchor_ts": as_of.to_numpy(),
            "context": [json.dumps({"next_order_at": d.isoformat()}) for d in due],
        }
    )


def events_from_store(store: Store, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    """Canonical events (and order lines as ``purchase`` events) with ``since <= ts < until``,
    with the person resolved through ``record_map`` (else ``customer_id``)."""
    rmap = store.has_table("record_map")

    def person(table: str, alias: str, record: str) -> tuple[str, str]:
        if rmap:
            return (
                f" JOIN record_map m ON m.source_table = '{table}' AND m.record_id = {record}",
                "m.unified_id",
            )
        return "", f"CAST({alias}.customer_id AS VARCHAR)"

    ej, eu = person("events", "e", "e.record_id")
    # a line's order is the orders-view record md5(source:order_lines:order_id) (profiles.store)
    oj, ou = person("orders", "l", "md5(l.source || ':order_lines:' || l.order_id)")
    sql = (
        f"SELECT COALESCE(e.event_id, e.record_id) AS event_id, e.ts, e.event_type, "
        f"{eu} AS unified_id, e.item_id, e.properties FROM events e{ej} "
        "WHERE e.ts >= CAST(? AS TIMESTAMP) AND e.ts < CAST(? AS TIMESTAMP) "
        f"UNION ALL SELECT 'ol:' || l.record_id, l.ts, 'purchase', {ou}, l.item_id, NULL "
        f"FROM order_lines l{oj} WHERE l.ts >= CAST(? AS TIMESTAMP) AND l.ts < CAST(? AS TIMESTAMP) "
        "AND COALESCE(l.status, 'completed') = 'completed'"
    )
    df = store.sql(sql, [since, until, since, until])
    return normalise_events(df)
