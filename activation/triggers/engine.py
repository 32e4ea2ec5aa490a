"""The trigger engine: inputs start journeys, due timers run their steps, messages are decided.

One call of :meth:`TriggerEngine.process` (or :func:`process_batch`):

1. journals the batch's events in ``trigger_events`` (the types some trigger
   reads; ``ON CONFLICT DO NOTHING`` on ``event_id``);
2. turns events, catalog changes, segment changes, scores and predictions into
   journey starts (``activation.triggers.sources``), thins them by each
   trigger's ``reentry`` and inserts them as durable timers in
   ``trigger_timers`` (primary key trigger + person + window key, so a replayed
   input starts nothing new);
3. runs every timer due at ``now``, each in its own transaction: ``wait``
   moves ``due_at`` on (from the scheduled time, so a late worker catches up
   deterministically), ``unless`` cancels the journey when the person had one
   of the events since the journey started, ``send`` asks the policy
   (:func:`activation.policy.decide`) and writes the message row.

Idempotency: a message id is a hash of trigger, person, window key and step; a
message row is written once (a ``deferred`` row is updated to its final
decision when its time comes). A crash between two timers, or inside one,
leaves the store as committed before, and re-running does the rest once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from cip.activation.policy import MessageRequest, PersonState, PolicyConfig, decide
from cip.activation.triggers._people import load_people, recent_sends
from cip.activation.triggers._tables import EVENTS, MESSAGES, TIMERS, ensure_trigger_tables
from cip.activation.triggers.content import (
    ContentProvider,
    ContentRequest,
    ContentUnavailable,
    cart_items,
    describe_items,
    to_json,
)
from cip.activation.triggers.definitions import (
    CatalogWhen,
    SendStep,
    Trigger,
    UnlessStep,
    WaitStep,
)
from cip.activation.triggers.sources import (
    START_COLUMNS,
    catalog_starts,
    event_starts,
    normalise_events,
    prediction_starts,
    score_starts,
    segment_starts,
)
from cip.profiles.store import Store

__all__ = ["TriggerEngine", "BatchReport", "message_id", "process_batch"]

log = logging.getLogger(__name__)


def message_id(trigger: str, unified_id: str, window_key: str, step: int) -> str:
    """The message id, also its idempotency key: SHA-256 of trigger, person, window and step."""
    raw = f"{trigger}|{unified_id}|{window_key}|{step}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class BatchReport:
    """What one :meth:`TriggerEngine.process` call did (counts only, no identifiers)."""

    events: int = 0
    events_new: int = 0
    started: int = 0
    due: int = 0
    cancelled: int = 0
    retried: int = 0
    decisions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _col(df: pd.DataFrame, c: str) -> list[Any]:
    return [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in df[c]]


class TriggerEngine:
    """Runs triggers over a store (DuckDB or PostgreSQL).

    Args:
        store: the profile store; the engine creates its tables there.
        triggers: validated trigger definitions (disabled ones are ignored).
        secret: the workspace secret keying the control-group hash.
        policy: the messaging policy (default: :class:`PolicyConfig` defaults).
        salt: the key of identifier hashes (tombstones, suppression lists);
            defaults to ``secret`` (the workspace uses one salt for both).
        content: recommendations provider for ``content.recommend``; without
            one, messages asking for recommendations wait (retried) until one is set.
        max_event_age: events older than this (at ``now``) never start a journey.
        retry_after: how long a message waits when content is unavailable.
    """

    def __init__(
        self,
        store: Store,
        triggers: Sequence[Trigger],
        *,
        secret: bytes,
        policy: PolicyConfig | None = None,
        salt: bytes | None = None,
        content: ContentProvider | None = None,
        max_event_age: dt.timedelta = dt.timedelta(hours=24),
        retry_after: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.triggers = {t.name: t for t in triggers if t.enabled}
        self.secret = secret
        self.salt = salt if salt is not None else secret
        self.policy = policy or PolicyConfig()
        self.content = content
        self.max_event_age = max_event_age
        self.retry_after = retry_after
        self._plans = {n: t.plan() for n, t in self.triggers.items()}
        self._types = sorted(
            {"purchase", *(e for t in self.triggers.values() for e in t.event_types())}
        )
        ensure_trigger_tables(store)

    # -- inputs -------------------------------------------------------------
    def process(
        self,
        now: dt.datetime,
        *,
        events: pd.DataFrame | None = None,
        catalog_changes: pd.DataFrame | None = None,
        segment_changes: pd.DataFrame | None = None,
        scores: pd.DataFrame | None = None,
        predictions: pd.DataFrame | None = None,
    ) -> BatchReport:
        """Journal and start from every given input, then run the timers due at ``now``."""
        report = BatchReport()
        starts = []
        if events is not None:
            ev = normalise_events(events)
            report.events = len(ev)
            report.events_new = self.journal(ev, now)
            starts += [event_starts(t, ev, now, self.max_event_age) for t in self.triggers.values()]
        if catalog_changes is not None:
            starts += [
                catalog_starts(self.store, t, catalog_changes, now) for t in self._kind(CatalogWhen)
            ]
        if segment_changes is not None:
            starts += [segment_starts(t, segment_changes) for t in self.triggers.values()]
        if scores is not None:
            starts += [score_starts(t, scores) for t in self.triggers.values()]
        if predictions is not None:
            starts += [prediction_starts(t, predictions, now) for t in self.triggers.values()]
        starts = [s for s in starts if len(s)]
        if starts:
            report.started = self.start(pd.concat(starts, ignore_index=True), now)
        adv = self.advance(now)
        report.due, report.cancelled, report.retried = adv.due, adv.cancelled, adv.retried
        report.decisions = adv.decisions
        return report

    def _kind(self, cls: type) -> list[Trigger]:
        return [t for t in self.triggers.values() if isinstance(t.when, cls)]

    def journal(self, events: pd.DataFrame, now: dt.datetime) -> int:
        """Remember the batch's events of the types the triggers read; returns how many were new."""
        ev = events[events["event_type"].isin(self._types)]
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
        return self._insert_new(EVENTS, tbl)

    def _insert_new(self, table: str, tbl: pa.Table) -> int:
        stage = f"_stage_new_{table}"
        cols = ", ".join(f'"{c}"' for c in tbl.column_names)
        with self.store.transaction():
            self.store.load_arrow(stage, tbl, mode="replace")
            try:
                n = self.store.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
                )
            finally:
                self.store.execute(f"DROP TABLE IF EXISTS {stage}")
        return max(n, 0)

    def start(self, starts: pd.DataFrame, now: dt.datetime) -> int:
        """Insert journeys (:data:`START_COLUMNS` rows) as timers, thinned by ``reentry``."""
        kept = self._thin(starts)
        if kept.empty:
            return 0
        anchors = pd.to_datetime(kept["anchor_ts"]).dt.to_pydatetime().tolist()
        tbl = pa.table(
            {
                "trigger": _col(kept, "trigger"),
                "unified_id": _col(kept, "unified_id"),
                "window_key": _col(kept, "window_key"),
                "step": [0] * len(kept),
                "due_at": anchors,
                "anchor_ts": anchors,
                "state": ["waiting"] * len(kept),
                "reason": [None] * len(kept),
                "context": _col(kept, "context"),
                "created_at": [now] * len(kept),
                "updated_at": [now] * len(kept),
            },
            schema=_TIMER_SCHEMA,
        )
        return self._insert_new(TIMERS, tbl)

    def _thin(self, starts: pd.DataFrame) -> pd.DataFrame:
        """Drop starts within ``reentry`` of another journey of the same trigger and person."""
        starts = starts.sort_values(["trigger", "unified_id", "anchor_ts", "window_key"])
        keep: list[int] = []
        for (name, uid), grp in starts.groupby(["trigger", "unified_id"], sort=False):
            gap = self.triggers[name].reentry_delta
            old = self.store.sql(
                f'SELECT window_key, anchor_ts FROM {TIMERS} WHERE "trigger" = ? AND unified_id = ?',
                [name, uid],
            )
            known = set(old["window_key"].astype(str))
            taken = [pd.Timestamp(t) for t in old["anchor_ts"]]
            for idx, key, ts in zip(grp.index, grp["window_key"], grp["anchor_ts"], strict=True):
                if key in known:
                    continue
                t = pd.Timestamp(ts)
                if gap is None and taken:
                    continue
                if gap is not None and any(abs(t - a) < gap for a in taken):
                    continue
                taken.append(t)
                known.add(key)
                keep.append(idx)
        return starts.loc[keep, list(START_COLUMNS)]

    # -- timers -------------------------------------------------------------
    def advance(self, now: dt.datetime, *, limit: int | None = None) -> BatchReport:
        """Run the timers due at ``now`` (oldest first, at most ``limit``)."""
        report = BatchReport()
        names = list(self.triggers)
        if not names:
            return report
        ph = ", ".join("?" for _ in names)
        due = self.store.sql(
            f"SELECT \"trigger\", unified_id, window_key FROM {TIMERS} WHERE state = 'waiting' "
            f'AND due_at <= CAST(? AS TIMESTAMP) AND "trigger" IN ({ph}) '
            f'ORDER BY due_at, "trigger", unified_id, window_key'
            + (f" LIMIT {int(limit)}" if limit else ""),
            [now, *names],
        )
        if due.empty:
            return report
        people = load_people(self.store, due["unified_id"], salt=self.salt)
        longest = max((c.per_delta for c in self.policy.channels.values()), default=dt.timedelta(0))
        sends = recent_sends(self.store, due["unified_id"], now - longest)
        counts: Counter[str] = Counter()
        for name, uid, key in due.itertuples(index=False):
            with self.store.transaction():
                outcome = self._run(str(name), str(uid), str(key), now, people, sends, counts)
            report.due += 1
            report.cancelled += outcome == "cancelled"
            report.retried += outcome == "retry"
        report.decisions = dict(sorted(counts.items()))
        return report

    def _run(
        self,
        name: str,
        uid: str,
        key: str,
        now: dt.datetime,
        people: dict[str, PersonState],
        sends: dict[tuple[str, str], list[dt.datetime]],
        counts: Counter[str],
    ) -> str:
        lock = " FOR UPDATE SKIP LOCKED" if self.store.dialect == "postgres" else ""
        row = self.store.sql(
            f"SELECT step, due_at, anchor_ts, state, context FROM {TIMERS} "
            f'WHERE "trigger" = ? AND unified_id = ? AND window_key = ?{lock}',
            [name, uid, key],
        )
        if row.empty or row["state"].iloc[0] != "waiting":
            return "skipped"
        step = int(row["step"].iloc[0])
        due = pd.Timestamp(row["due_at"].iloc[0]).to_pydatetime()
        anchor = pd.Timestamp(row["anchor_ts"].iloc[0]).to_pydatetime()
        ctx = json.loads(row["context"].iloc[0] or "{}")
        if due > now:
            return "skipped"
        trigger, plan = self.triggers[name], self._plans[name]
        person = people.get(uid) or PersonState(unified_id=uid, known=False)
        while step < len(plan):
            s = plan[step]
            if isinstance(s, WaitStep):
                due, step = due + s.delta, step + 1
                if due > now:
                    return self._save(name, uid, key, step, due, "waiting", None, now)
            elif isinstance(s, UnlessStep):
                hit = self._happened(uid, s.unless.event, anchor, now)
                if hit:
                    return self._save(name, uid, key, step, due, "cancelled", hit, now)
                step += 1
            else:
                bought = self._bought_item(trigger, uid, ctx, now)
                if bought:
                    return self._save(name, uid, key, step, due, "cancelled", bought, now)
                res = self._send(trigger, s, step, person, key, ctx, anchor, now, sends, counts)
                if res is not None:
                    kind, until, reason = res
                    return self._save(name, uid, key, step, until, "waiting", reason, now, kind)
                step += 1
        return self._save(name, uid, key, step, due, "done", None, now)

    def _save(
        self,
        name: str,
        uid: str,
        key: str,
        step: int,
        due: dt.datetime,
        state: str,
        reason: str | None,
        now: dt.datetime,
        outcome: str | None = None,
    ) -> str:
        self.store.execute(
            f"UPDATE {TIMERS} SET step = ?, due_at = CAST(? AS TIMESTAMP), state = ?, reason = ?, "
            f'updated_at = CAST(? AS TIMESTAMP) WHERE "trigger" = ? AND unified_id = ? '
            "AND window_key = ?",
            [step, due, state, reason, now, name, uid, key],
        )
        return outcome or state

    def _happened(
        self, uid: str, types: Sequence[str], since: dt.datetime, now: dt.datetime
    ) -> str | None:
        ph = ", ".join("?" for _ in types)
        df = self.store.sql(
            f"SELECT event_type, ts FROM {EVENTS} WHERE unified_id = ? AND event_type IN ({ph}) "
            "AND ts > CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) ORDER BY ts LIMIT 1",
            [uid, *types, since, now],
        )
        if df.empty:
            return None
        return f"unless: {df['event_type'].iloc[0]} at {pd.Timestamp(df['ts'].iloc[0]).isoformat()}"

    def _bought_item(
        self, trigger: Trigger, uid: str, ctx: dict[str, Any], now: dt.datetime
    ) -> str | None:
        if not isinstance(trigger.when, CatalogWhen) or not ctx.get("item_id"):
            return None
        df = self.store.sql(
            f"SELECT ts FROM {EVENTS} WHERE unified_id = ? AND item_id = ? AND event_type = "
            "'purchase' AND ts > CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) LIMIT 1",
            [uid, ctx["item_id"], pd.Timestamp(ctx["interest_at"]).to_pydatetime(), now],
        )
        return None if df.empty else f"bought {ctx['item_id']} since the interest"

    def _send(
        self,
        trigger: Trigger,
        s: SendStep,
        step: int,
        person: PersonState,
        key: str,
        ctx: dict[str, Any],
        anchor: dt.datetime,
        now: dt.datetime,
        sends: dict[tuple[str, str], list[dt.datetime]],
        counts: Counter[str],
    ) -> tuple[str, dt.datetime, str] | None:
        """Decide and record one message; returns (outcome, wait until, reason) when it must wait."""
        uid, channel = person.unified_id, s.send.channel or trigger.channel
        content = s.send.content or trigger.content
        mid = message_id(trigger.name, uid, key, step)
        old = self.store.sql(f"SELECT decision FROM {MESSAGES} WHERE message_id = ?", [mid])
        if not old.empty and old["decision"].iloc[0] != "deferred":
            return None  # decided before (a re-run): never a second message
        req = MessageRequest(
            trigger.name, channel, trigger.purpose_of(channel), trigger.control_pct
        )
        d = decide(req, person, sends.get((uid, channel), ()), now, self.policy, self.secret)
        blocks: list[tuple[str, str]] = []
        if content.item and ctx.get("item_id") and isinstance(trigger.when, CatalogWhen):
            blocks.append((ctx["item_id"], "item"))
        if content.cart:
            blocks += [(i, "cart") for i in cart_items(self.store, uid, anchor, now)]
        items, versions = describe_items(self.store, blocks), {}
        if d.kind == "sent" and content.recommend:
            try:
                if self.content is None:
                    raise ContentUnavailable("no content provider configured")
                got = self.content(
                    ContentRequest(
                        trigger.name, uid, channel, content.recommend, [i for i, _ in blocks]
                    )
                )
            except ContentUnavailable as exc:
                return "retry", now + self.retry_after, f"content unavailable: {exc}"
            items += [{**it, "block": "recommend"} for it in got.items[: content.recommend]]
            versions = got.model_versions
        values = [
            mid, trigger.name, uid, key, step, channel, s.send.destination, req.purpose, d.kind,
            d.control, d.reason, to_json(items), to_json(ctx), to_json(versions), now,
            d.deferred_until,
        ]  # fmt: skip
        if old.empty:
            self.store.execute(
                f'INSERT INTO {MESSAGES} (message_id, "trigger", unified_id, window_key, step, '
                "channel, destination, purpose, decision, control, reason, items, context, "
                "model_versions, decided_at, deferred_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
                values,
            )
        else:
            self.store.execute(
                f"UPDATE {MESSAGES} SET decision = ?, control = ?, reason = ?, items = ?, "
                "model_versions = ?, decided_at = CAST(? AS TIMESTAMP), "
                "deferred_until = COALESCE(CAST(? AS TIMESTAMP), deferred_until) "
                "WHERE message_id = ? AND decision = 'deferred'",
                [d.kind, d.control, d.reason, to_json(items), to_json(versions), now,
                 d.deferred_until, mid],
            )  # fmt: skip
        counts[d.kind] += 1
        if d.kind == "deferred":
            assert d.deferred_until is not None
            return "deferred", d.deferred_until, d.reason
        if d.kind == "sent":
            sends.setdefault((uid, channel), []).append(now)
        return None


def process_batch(
    store: Store,
    triggers: Sequence[Trigger],
    now: dt.datetime,
    *,
    secret: bytes,
    policy: PolicyConfig | None = None,
    content: ContentProvider | None = None,
    **inputs: pd.DataFrame | None,
) -> BatchReport:
    """One-shot :meth:`TriggerEngine.process` (``inputs``: events, catalog_changes,
    segment_changes, scores, predictions)."""
    engine = TriggerEngine(store, triggers, secret=secret, policy=policy, content=content)
    return engine.process(now, **inputs)
