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
from cip.activation.measure.preferences import Preference, load_preferences
from cip.activation.policy import Decision, MessageRequest, PersonState, PolicyConfig, decide
from cip.activation.triggers._people import erased_ids, load_people, recent_sends
from cip.activation.triggers._tables import TIMERS, ensure_trigger_tables
from cip.activation.triggers._timers import (
    existing_decisions,
    insert_starts,
    journal_events,
    write_chunk,
)
from cip.activation.triggers.best import best_hour, best_send_time, choose_channel
from cip.activation.triggers.content import (
    CART_LOOKBACK,
    ContentProvider,
    ContentRequest,
    ContentUnavailable,
    PersonEvent,
    cart_items,
    describe_items,
    first_event,
    item_info,
    person_events,
    to_json,
)
from cip.activation.triggers.definitions import (
    CatalogWhen,
    EventWhen,
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
    """What one :meth:`TriggerEngine.process` call did (counts only, no identifiers).

    ``events``: the batch's events with a person; ``events_new``: those journaled
    for the first time; ``started``: new journeys; ``due``: timers run;
    ``cancelled``: journeys ended by ``unless``; ``retried``: messages waiting for
    content; ``decisions``: messages decided, per decision.
    """

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
        chunk_size: timers run and committed together (one transaction per chunk).
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
        chunk_size: int = 500,
    ) -> None:
        self.store = store
        self.triggers = {t.name: t for t in triggers if t.enabled}
        self.secret = secret
        self.salt = salt if salt is not None else secret
        self.policy = policy or PolicyConfig()
        self.content = content
        self.max_event_age = max_event_age
        self.retry_after = retry_after
        self.chunk_size = max(1, int(chunk_size))
        self._plans = {n: t.plan() for n, t in self.triggers.items()}
        self._send_steps = {
            n: [i for i, s in enumerate(p) if isinstance(s, SendStep)]
            for n, p in self._plans.items()
        }
        #: the longest frequency-cap window of any channel (how far back sends are read)
        self.longest_cap = max(
            (c.per_delta for c in self.policy.channels.values()), default=dt.timedelta(0)
        )
        #: triggers with a ``channel: best`` or ``send_at: best`` send (they read preferences)
        self._best = {
            n
            for n, p in self._plans.items()
            if any(
                isinstance(s, SendStep) and "best" in (s.send.channel, s.send.send_at) for s in p
            )
        }
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
            gone = erased_ids(self.store, ev["unified_id"], salt=self.salt)
            if gone:  # an erased person's late events are neither kept nor acted on
                ev = ev[~ev["unified_id"].isin(sorted(gone))]
            report.events_new = journal_events(self.store, ev, self._types, now)
            # each trigger sees only the events of its types (the batch split once, in order)
            by_type = {str(k): g for k, g in ev.groupby("event_type", sort=False)}
            for t in self.triggers.values():
                if not isinstance(t.when, EventWhen):
                    continue
                parts = [by_type[e] for e in t.when.event if e in by_type]
                if parts:
                    mine = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
                    starts.append(event_starts(t, mine, now, self.max_event_age))
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
        """Run the timers due at ``now`` (oldest first, at most ``limit``), in chunks of
        ``chunk_size`` timers; each chunk's messages and timer moves commit together."""
        report = BatchReport()
        names = list(self.triggers)
        if not names:
            return report
        ph = ", ".join("?" for _ in names)
        due = self.store.sql(
            f'SELECT "trigger", unified_id, window_key, step, due_at, anchor_ts, context '
            f"FROM {TIMERS} WHERE state = 'waiting' AND due_at <= CAST(? AS TIMESTAMP) "
            f'AND "trigger" IN ({ph}) ORDER BY due_at, "trigger", unified_id, window_key'
            + (f" LIMIT {int(limit)}" if limit else ""),
            [now, *names],
        )
        counts: Counter[str] = Counter()
        for k in range(0, len(due), self.chunk_size):
            self._chunk(due.iloc[k : k + self.chunk_size], now, report, counts)
        report.decisions = dict(sorted(counts.items()))
        return report

    def _chunk(
        self, due: pd.DataFrame, now: dt.datetime, report: BatchReport, counts: Counter[str]
    ) -> None:
        # columns as Python lists (iterating DataFrame rows costs more than the rest)
        dues = pd.to_datetime(due["due_at"]).dt.to_pydatetime()
        anchors = pd.to_datetime(due["anchor_ts"]).dt.to_pydatetime()
        timers = [
            _Timer(str(tr), str(u), str(k), int(st), d, a, json.loads(c) if c else {})
            for tr, u, k, st, d, a, c in zip(
                due["trigger"].tolist(),
                due["unified_id"].tolist(),
                due["window_key"].tolist(),
                due["step"].tolist(),
                dues,
                anchors,
                due["context"].tolist(),
                strict=True,
            )
        ]
        since = min(t.anchor for t in timers) - CART_LOOKBACK
        walk = _Walk(now=now, people={}, sends={}, events={}, decided={})
        busy = [t for t in timers if self._goes_past_waits(t, now)]
        if busy:  # only waits to move on: nothing about the persons needs reading
            ids = sorted({t.uid for t in busy})
            walk.people = load_people(self.store, ids, salt=self.salt)
            walk.sends = recent_sends(self.store, ids, now - self.longest_cap)
            walk.events = person_events(self.store, ids, since, now)
            best = sorted({t.uid for t in busy if t.trigger in self._best})
            if best:
                walk.prefs, walk.shop_pref = load_preferences(self.store, best)
            walk.decided = existing_decisions(
                self.store,
                [
                    message_id(t.trigger, t.uid, t.key, i)
                    for t in busy
                    for i in self._send_steps[t.trigger]
                ],
            )
        for t in timers:
            state = self._walk(t, walk)
            report.due += 1
            report.cancelled += state == "cancelled"
            report.retried += state == "retry"
        info = item_info(self.store, {i for m in walk.messages for i, _ in m["_blocks"]})
        for m in walk.messages:
            m["items"] = to_json(describe_items(m.pop("_blocks"), info) + m.pop("_recs"))
        new = [m for m in walk.messages if walk.decided.get(m["message_id"]) is None]
        upd = [m for m in walk.messages if walk.decided.get(m["message_id"]) == "deferred"]
        write_chunk(self.store, walk.moves, new, upd)
        counts.update(m["decision"] for m in walk.messages)

    def _goes_past_waits(self, t: _Timer, now: dt.datetime) -> bool:
        """Whether the timer reaches an ``unless`` or ``send`` step at ``now``."""
        plan, step, due = self._plans[t.trigger], t.step, t.due
        while step < len(plan) and isinstance(plan[step], WaitStep):
            due += plan[step].delta  # type: ignore[union-attr]
            step += 1
            if due > now:
                return False
        return step < len(plan)

    def _walk(self, t: _Timer, w: _Walk) -> str:
        """Run one timer's steps in memory; the move and messages go to ``w``."""
        trigger, plan = self.triggers[t.trigger], self._plans[t.trigger]
        step, due, now = t.step, t.due, w.now
        person = w.people.get(t.uid) or PersonState(unified_id=t.uid, known=False)
        evs = w.events.get(t.uid, [])

        def move(
            state: str, reason: str | None, at: dt.datetime, outcome: str | None = None
        ) -> str:
            w.moves.append(
                {"trigger": t.trigger, "unified_id": t.uid, "window_key": t.key,
                 "old_step": t.step, "old_due": t.due, "step": step, "due_at": at,
                 "state": state, "reason": reason, "updated_at": now}
            )  # fmt: skip
            return outcome or state

        while step < len(plan):
            s = plan[step]
            if isinstance(s, WaitStep):
                due, step = due + s.delta, step + 1
                if due > now:
                    return move("waiting", None, due)
            elif isinstance(s, UnlessStep):
                hit = first_event(evs, s.unless.event, t.anchor, now)
                if hit:
                    return move("cancelled", f"unless: {hit[1]} at {hit[0].isoformat()}", due)
                step += 1
            else:
                item = t.context.get("item_id") if isinstance(trigger.when, CatalogWhen) else None
                if item and first_event(
                    evs, ["purchase"], _ts(t.context.get("interest_at")), now, item
                ):
                    return move("cancelled", f"bought {item} since the interest", due)
                res = self._send(trigger, s, step, person, t, evs, w)
                if res is not None:
                    kind, until, reason = res
                    return move("waiting", reason, until, kind)
                step += 1
        return move("done", None, due)

    def _send(
        self,
        trigger: Trigger,
        s: SendStep,
        step: int,
        person: PersonState,
        t: _Timer,
        evs: list[PersonEvent],
        w: _Walk,
    ) -> tuple[str, dt.datetime, str] | None:
        """Decide one message; returns (outcome, wait until, reason) when the timer must wait."""
        uid, channel, now = person.unified_id, s.send.channel or trigger.channel, w.now
        content = s.send.content or trigger.content
        mid = message_id(trigger.name, uid, t.key, step)
        if w.decided.get(mid) not in (None, "deferred"):
            return None  # decided before (a re-run): never a second message
        pref = w.prefs.get(uid)
        note = None
        if channel == "best":
            channel, note = choose_channel(trigger, person, pref, w.shop_pref)
        req = MessageRequest(
            trigger.name, channel, trigger.purpose_of(channel), trigger.control_pct
        )
        d = decide(req, person, w.sends.get((uid, channel), ()), now, self.policy, self.secret)
        if (s.send.send_at or trigger.send_at) == "best" and d.kind == "sent":
            hour = best_hour(pref, w.shop_pref)
            # deferred to the best hour once: a message deferred before goes when it comes due
            again = w.decided.get(mid) is not None
            until = None if again else best_send_time(now, hour, person, self.policy, channel)
            if until is not None:
                d = Decision("deferred", f"send_at best: {hour:02d}:00 UTC", deferred_until=until)
        if note is not None:
            d = Decision(d.kind, f"{d.reason}; {note}", d.control, d.deferred_until)
        blocks: list[tuple[str, str]] = []
        if content.item and isinstance(trigger.when, CatalogWhen) and t.context.get("item_id"):
            blocks.append((str(t.context["item_id"]), "item"))
        if content.cart:
            blocks += [(i, "cart") for i in cart_items(evs, t.anchor, now)]
        recs: list[dict[str, Any]] = []
        versions: dict[str, str] = {}
        if d.kind == "sent" and content.recommend:
            try:
                if self.content is None:
                    raise ContentUnavailable("no content provider configured")
                ask = ContentRequest(
                    trigger.name,
                    uid,
                    channel,
                    content.recommend,
                    [i for i, _ in blocks],
                    person.contacts.get("customer_id"),
                )
                got = self.content(ask)
            except ContentUnavailable as exc:
                return "retry", now + self.retry_after, f"content unavailable: {exc}"
            recs = [{**it, "block": "recommend"} for it in got.items[: content.recommend]]
            versions = dict(got.model_versions)
        w.messages.append(
            {
                "message_id": mid, "trigger": trigger.name, "unified_id": uid,
                "window_key": t.key, "step": step, "channel": channel,
                "destination": s.send.destination, "purpose": req.purpose, "decision": d.kind,
                "control": d.control, "reason": d.reason, "items": None,
                "context": to_json(t.context), "model_versions": to_json(versions),
                "decided_at": now, "deferred_until": d.deferred_until,
                "_blocks": blocks, "_recs": recs,
            }
        )  # fmt: skip
        if d.kind == "deferred":
            assert d.deferred_until is not None
            return "deferred", d.deferred_until, d.reason
        if d.kind == "sent":
            w.sends.setdefault((uid, channel), []).append(now)
        return None


@dataclass
class _Timer:
    trigger: str
    uid: str
    key: str
    step: int
    due: dt.datetime
    anchor: dt.datetime
    context: dict[str, Any]


@dataclass
class _Walk:
    """What one chunk reads once and what it collects to write."""

    now: dt.datetime
    people: dict[str, PersonState]
    sends: dict[tuple[str, str], list[dt.datetime]]
    events: dict[str, list[PersonEvent]]
    decided: dict[str, str]
    prefs: dict[str, Preference] = field(default_factory=dict)  # channel: best, send_at: best
    shop_pref: Preference | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def _ts(value: Any) -> dt.datetime:
    return pd.Timestamp(value).to_pydatetime() if value else dt.datetime.min


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
