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
from cip.activation.policy import MessageRequest, PersonState, PolicyConfig, decide
from cip.activation.triggers._people import load_people, recent_sends
from cip.activation.triggers._tables import EVENTS, TIMERS, ensure_trigger_tables
from cip.activation.triggers._timers import (
    insert_starts,
    journal_events,
    message_decision,
    save_timer,
    write_message,
)
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
            report.events_new = journal_events(self.store, ev, self._types, now)
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
            all_starts = pd.concat(starts, ignore_index=True)
            report.started = insert_starts(self.store, self.triggers, all_starts, now)
        adv = self.advance(now)
        report.due, report.cancelled, report.retried = adv.due, adv.cancelled, adv.retried
        report.decisions = adv.decisions
        return report

    def _kind(self, cls: type) -> list[Trigger]:
        return [t for t in self.triggers.values() if isinstance(t.when, cls)]

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
        tkey = (name, uid, key)

        def save(step: int, due: dt.datetime, state: str, reason: str | None) -> str:
            save_timer(self.store, tkey, step, due, state, reason, now)
            return state

        person = people.get(uid) or PersonState(unified_id=uid, known=False)
        while step < len(plan):
            s = plan[step]
            if isinstance(s, WaitStep):
                due, step = due + s.delta, step + 1
                if due > now:
                    return save(step, due, "waiting", None)
            elif isinstance(s, UnlessStep):
                hit = self._happened(uid, s.unless.event, anchor, now)
                if hit:
                    return save(step, due, "cancelled", hit)
                step += 1
            else:
                bought = self._bought_item(trigger, uid, ctx, now)
                if bought:
                    return save(step, due, "cancelled", bought)
                res = self._send(trigger, s, step, person, key, ctx, anchor, now, sends, counts)
                if res is not None:
                    kind, until, reason = res
                    save(step, until, "waiting", reason)
                    return kind
                step += 1
        return save(step, due, "done", None)

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
        old = message_decision(self.store, mid)
        if old is not None and old != "deferred":
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
                ask = ContentRequest(
                    trigger.name, uid, channel, content.recommend, [i for i, _ in blocks]
                )
                got = self.content(ask)
            except ContentUnavailable as exc:
                return "retry", now + self.retry_after, f"content unavailable: {exc}"
            items += [{**it, "block": "recommend"} for it in got.items[: content.recommend]]
            versions = got.model_versions
        row = {
            "message_id": mid,
            "trigger": trigger.name,
            "unified_id": uid,
            "window_key": key,
            "step": step,
            "channel": channel,
            "destination": s.send.destination,
            "purpose": req.purpose,
            "decision": d.kind,
            "control": d.control,
            "reason": d.reason,
            "items": to_json(items),
            "context": to_json(ctx),
            "model_versions": to_json(versions),
            "decided_at": now,
            "deferred_until": d.deferred_until,
        }
        write_message(self.store, row, update_deferred=old == "deferred")
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
