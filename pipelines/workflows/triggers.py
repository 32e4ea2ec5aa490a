"""Trigger workflows: the worker (``cip triggers run``), list, status, log and dry runs.

The worker repeats one *cycle*: read the unread events of the feed (the
service's event journal or a Redis Stream), resolve their persons, feed them and
the catalog changes recorded since the last cycle to the
:class:`~cip.activation.triggers.TriggerEngine` (which also runs the due
timers) and move the feed's durable offset on - all in one store transaction, so
a crash leaves either all of it or none - then deliver the decided messages as
signed webhooks over one keep-alive HTTP client kept for the whole run.
``--once`` runs cycles until the feed is read, then exits (cron); otherwise the
worker polls until SIGINT/SIGTERM, finishing the cycle it is in.

The store and the engine are kept open across cycles (opening a DuckDB file and
checking the engine's tables costs more than a cycle at hundreds of events a
second). DuckDB has one writing process and the service and ``cip run`` need
the file too, so with DuckDB the worker closes it when a cycle found nothing to
do and, under a steady load, at least every ``trigger_worker.hold_seconds``,
staying closed for one poll interval; a PostgreSQL store stays connected.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cip.pipelines.workflows.activation import open_quiet, webhook_secrets_dir
from cip.pipelines.workflows.results import to_datetime
from cip.pipelines.workflows.setup import salt_path
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError, ConflictError, NotFoundError

if TYPE_CHECKING:
    import httpx
    import pandas as pd
    from cip.activation.triggers import ContentProvider, TriggerEngine
    from cip.activation.triggers.delivery import WebhookSender
    from cip.profiles.store import Store

__all__ = [
    "WorkerResult",
    "run_worker",
    "list_triggers",
    "destination_secret",
    "trigger_status",
    "message_log",
    "test_trigger",
    "events_dir",
    "make_feed",
    "record_catalog_after_ingest",
]

log = logging.getLogger(__name__)

CATALOG_WATERMARK = "catalog"
STORE_WATERMARK = "ingested_events"


@dataclass
class WorkerResult:
    """What a worker run did (counts only, no identifiers)."""

    cycles: int = 0
    events: int = 0
    events_new: int = 0
    catalog_changes: int = 0
    started: int = 0
    due: int = 0
    cancelled: int = 0
    retried: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    delivery_failed: int = 0
    busy: int = 0
    stopped: str = "done"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def events_dir(ws: Workspace) -> Any:
    """The folder the service's ``/events`` journal is written to."""
    return ws.root / "sources" / "_http_events"


def _salt(ws: Workspace) -> bytes:
    from cip.profiles.privacy import load_salt

    return load_salt(salt_path(ws))


def make_feed(ws: Workspace) -> Any:
    """The configured event feed: the journal folder, or the Redis Stream."""
    from cip.activation.triggers.feed import JournalFeed, RedisStreamFeed

    cfg = ws.config.trigger_worker
    if cfg.feed == "journal":
        return JournalFeed(events_dir(ws))
    url = cfg.redis_url or ws.config.serving.redis_url
    if not url:
        raise ConfigError(
            "trigger_worker.feed redis needs trigger_worker.redis_url (or serving.redis_url)"
        )
    import redis

    key = cfg.redis_stream or ws.config.serving.event_stream or "cip:events"
    return RedisStreamFeed(redis.Redis.from_url(url), key, cfg.redis_group)


def service_content(ws: Workspace) -> ContentProvider:
    """Recommendations from the running service (``trigger_worker.service_url`` / key)."""
    from cip.activation.triggers.service_content import ServiceContent

    cfg, s = ws.config.trigger_worker, ws.config.serving
    url = cfg.service_url or f"http://{s.host}:{s.port}"
    return ServiceContent(url, cfg.service_key)


def _engine(
    ws: Workspace,
    store: Store,
    content: ContentProvider | None,
    max_event_age: dt.timedelta | None = None,
) -> TriggerEngine:
    from cip.activation.policy import parse_duration
    from cip.activation.triggers import TriggerEngine

    cfg = ws.config
    return TriggerEngine(
        store,
        cfg.triggers,
        secret=_salt(ws),
        policy=cfg.policy,
        content=content,
        max_event_age=max_event_age or parse_duration(cfg.trigger_worker.max_event_age),
        retry_after=parse_duration(cfg.trigger_worker.retry_after),
    )


def _secret_of(ws: Workspace) -> Callable[[str], str]:
    from cip.activation.signing import webhook_secret

    def secret(name: str) -> str:
        d = ws.config.destinations[name]
        return d.secret or webhook_secret(webhook_secrets_dir(ws), name)

    return secret


def _store_events(store: Store, engine: TriggerEngine, now: dt.datetime) -> pd.DataFrame | None:
    """Ingested events (``cip ingest`` files) within the maximum event age (and the catalog
    triggers' lookback), when new ones arrived since the last look (a row count)."""
    from cip.activation.triggers import events_from_store
    from cip.activation.triggers.feed import get_watermark, set_watermark

    if not store.has_table("events"):
        return None
    n = int(store.sql("SELECT count(*) AS n FROM events")["n"].iloc[0])
    if store.has_table("order_lines"):
        n += int(store.sql("SELECT count(*) AS n FROM order_lines")["n"].iloc[0])
    seen = get_watermark(store, STORE_WATERMARK)
    mark = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=n)  # the row count, as a time
    if seen == mark:
        return None
    # catalog triggers look back at interest (views, carts) for their lookback_days: the
    # engine remembers those events too; only events within max_event_age start journeys
    from cip.activation.triggers import CatalogWhen

    back = max(
        [engine.max_event_age]
        + [dt.timedelta(days=t.when.lookback_days) for t in engine._kind(CatalogWhen)]
    )
    ev = events_from_store(store, now - back, now + dt.timedelta(seconds=1))
    set_watermark(store, STORE_WATERMARK, mark)
    return ev


class _Held:
    """The store and engine kept across cycles (see the module docstring)."""

    def __init__(
        self,
        ws: Workspace,
        content: ContentProvider | None,
        max_event_age: dt.timedelta | None,
        hold_seconds: float,
    ) -> None:
        self.ws, self.content, self.age, self.hold = ws, content, max_event_age, hold_seconds
        self.store: Store | None = None
        self.engine: TriggerEngine | None = None
        self.opened = 0.0
        self._cm: Any = None

    def get(self) -> tuple[Store, TriggerEngine]:
        if self.store is None or self.engine is None:
            cm = open_quiet(self.ws)
            store = cm.__enter__()
            try:
                engine = _engine(self.ws, store, self.content, self.age)
            except BaseException:
                cm.__exit__(None, None, None)
                raise
            self._cm, self.store, self.engine = cm, store, engine
            self.opened = time.monotonic()
        return self.store, self.engine

    def should_release(self, idle: bool) -> bool:
        """DuckDB only: after an idle cycle, or when held ``hold_seconds``."""
        if self.store is None or self.store.backend != "duckdb":
            return False
        return idle or time.monotonic() - self.opened >= self.hold

    def release(self) -> None:
        if self._cm is not None:
            cm, self._cm, self.store, self.engine = self._cm, None, None, None
            cm.__exit__(None, None, None)


def _cycle(
    held: _Held,
    feed: Any,
    res: WorkerResult,
    *,
    now: dt.datetime,
    from_store: bool,
    http: httpx.Client | None,
    sender: WebhookSender | None,
) -> tuple[int, bool]:
    """One cycle; returns how many feed records it read and whether it did anything."""
    import pandas as pd
    from cip.activation.triggers import catalog_changes_since
    from cip.activation.triggers.delivery import deliver_messages
    from cip.activation.triggers.feed import get_watermark, resolve_people, set_watermark

    ws = held.ws
    t0 = time.perf_counter()
    store, engine = held.get()
    t_open = time.perf_counter()
    records = feed.read(store, ws.config.trigger_worker.batch_size)
    with store.transaction():  # journeys, decisions and the feed's offset commit together
        batch = resolve_people(store, records)
        if from_store:
            ingested = _store_events(store, engine, now)
            if ingested is not None and len(ingested):
                batch = pd.concat([batch, ingested], ignore_index=True)
        mark = get_watermark(store, CATALOG_WATERMARK) or dt.datetime(2000, 1, 1)
        changes = catalog_changes_since(store, mark)
        rep = engine.process(
            now,
            events=batch if len(batch) else None,
            catalog_changes=changes if len(changes) else None,
        )
        if len(changes):
            set_watermark(
                store, CATALOG_WATERMARK, pd.Timestamp(changes["ts"].max()).to_pydatetime()
            )
        if getattr(feed, "commits_in_store", False):
            feed.commit(store)  # the journal's offsets: in the same transaction
    if not getattr(feed, "commits_in_store", False):
        feed.commit(store)  # e.g. XACK: after the store's commit (a replay is a no-op)
    t_engine = time.perf_counter()
    sent = deliver_messages(
        store, ws.config.destinations, _secret_of(ws), salt=engine.salt, client=http,
        limit=20_000, concurrency=ws.config.trigger_worker.delivery_concurrency, sender=sender,
    )  # fmt: skip
    t_done = time.perf_counter()
    res.cycles += 1
    res.events += rep.events
    res.events_new += rep.events_new
    res.catalog_changes += len(changes)
    res.started += rep.started
    res.due += rep.due
    res.cancelled += rep.cancelled
    res.retried += rep.retried
    for k, v in rep.decisions.items():
        res.decisions[k] = res.decisions.get(k, 0) + v
    res.delivered += sent.delivered
    res.delivery_failed += sent.failed
    busy = bool(records or rep.due or sent.delivered or len(changes))
    if rep.events or rep.due or sent.delivered or sent.failed:
        log.info(
            "triggers cycle: %d events, %d started, %d due, decisions %s, %d delivered "
            "(open %.3f s, engine %.3f s, delivery %.3f s)",
            rep.events, rep.started, rep.due, rep.decisions, sent.delivered,
            t_open - t0, t_engine - t_open, t_done - t_engine,
        )  # fmt: skip
    return len(records), busy


def run_worker(
    ws: Workspace,
    *,
    once: bool = False,
    max_event_age: str | None = None,
    poll_seconds: float | None = None,
    from_store: bool = False,
    stop: threading.Event | None = None,
    content: ContentProvider | None = None,
    http: httpx.Client | None = None,
    clock: Callable[[], dt.datetime] = _now,
) -> WorkerResult:
    """Run the trigger worker (see the module docstring) until ``stop`` is set, or, with
    ``once``, until the feed is read and the due timers have run.

    ``content`` defaults to the running service's ``/recommend``; ``from_store`` also
    feeds events loaded by ``cip ingest`` (within ``max_event_age``); without ``http``
    (an ``httpx.Client``) webhooks go through one :class:`WebhookSender` (keep-alive
    connections, ``trigger_worker.delivery_concurrency`` threads) for the whole run.
    """
    from cip.activation.policy import parse_duration
    from cip.activation.triggers.delivery import WebhookSender

    if not ws.config.triggers:
        raise ConfigError("no triggers in cip.yaml (add a `triggers:` list; see the README)")
    cfg = ws.config.trigger_worker
    age = parse_duration(max_event_age) if max_event_age else None
    poll = poll_seconds if poll_seconds is not None else cfg.poll_seconds
    stop = stop or threading.Event()
    feed = make_feed(ws)
    own_content = content is None
    content = content or service_content(ws)
    sender = WebhookSender(cfg.delivery_concurrency) if http is None else None
    held = _Held(ws, content, age, cfg.hold_seconds)
    res = WorkerResult()
    first = True
    try:
        while not stop.is_set():
            busy = False
            try:
                n, busy = _cycle(
                    held, feed, res, now=clock(),
                    from_store=from_store and (first or not once), http=http, sender=sender,
                )  # fmt: skip
                first = False
            except ConflictError:
                held.release()
                if once:
                    raise
                res.busy += 1
                log.info("store busy; trying again in %.1f s", poll)
                n = 0
            except BaseException:
                held.release()
                raise
            if once and n < cfg.batch_size:
                break
            if held.should_release(idle=not busy):
                held.release()  # the file is free while the worker waits for the next poll
            if not once and n < cfg.batch_size:
                stop.wait(poll)
        else:
            res.stopped = "signal"
    finally:
        held.release()
        if sender is not None:
            sender.close()
        if own_content and hasattr(content, "close"):
            content.close()  # type: ignore[union-attr]
    return res


def destination_secret(ws: Workspace, name: str) -> str:
    """The signing secret (``whsec_...``) a receiver of destination ``name`` verifies with."""
    if name not in ws.config.destinations:
        known = ", ".join(sorted(ws.config.destinations)) or "none"
        raise NotFoundError(f"no destination named {name!r} in cip.yaml (destinations: {known})")
    return _secret_of(ws)(name)


def list_triggers(ws: Workspace) -> list[dict[str, Any]]:
    """The configured triggers: source, journey, channel, destination, control share."""
    out = []
    for t in ws.config.triggers:
        when = t.when.model_dump(exclude_defaults=True)
        steps = [_describe_step(s) for s in t.plan()]
        out.append(
            {
                "trigger": t.name,
                "enabled": t.enabled,
                "when": when,
                "journey": " | ".join(steps),
                "channel": t.channel,
                "destination": t.destination,
                "control_pct": t.control_pct,
                "reentry": t.reentry,
            }
        )
    return out


def _describe_step(s: Any) -> str:
    from cip.activation.triggers.definitions import SendStep, WaitStep

    if isinstance(s, WaitStep):
        return f"wait {s.wait}"
    if isinstance(s, SendStep):
        dest = f" -> {s.send.destination}" if s.send.destination else ""
        return f"send {s.send.channel}{dest}"
    return f"unless {','.join(s.unless.event)}"


def trigger_status(ws: Workspace) -> dict[str, Any]:
    """Per trigger: journeys per state, messages per decision, next due; plus the feed's lag
    and the messages decided ``sent`` but not delivered yet."""
    from cip.activation.triggers import trigger_status as status
    from cip.activation.triggers.delivery import undelivered

    with open_quiet(ws) as store:
        df = status(store)
        unsent = undelivered(store)
        try:
            lag = make_feed(ws).lag(store)
        except Exception as exc:  # noqa: BLE001 - status must show even when Redis is down
            lag = f"unavailable ({type(exc).__name__})"
    names = [t.name for t in ws.config.triggers]
    rows = df.to_dict("records")
    have = {r["trigger"] for r in rows}
    rows += [{"trigger": n} for n in names if n not in have]
    return {"triggers": [_plain(r) for r in rows], "undelivered": unsent, "feed_lag": lag}


def message_log(
    ws: Workspace, trigger: str | None = None, customer_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The latest messages (newest first), of one trigger and/or one customer."""
    from cip.activation.triggers import message_log as mlog

    if trigger and trigger not in {t.name for t in ws.config.triggers}:
        raise NotFoundError(f"no trigger named {trigger!r} in cip.yaml")
    with open_quiet(ws) as store:
        uid = _person(store, customer_id) if customer_id else None
        df = mlog(store, trigger=trigger, unified_id=uid, limit=limit)
    return [_plain(r) for r in df.to_dict("records")]


def _person(store: Store, customer_id: str) -> str:
    from cip.activation.triggers.feed import resolve_people

    got = resolve_people(store, [{"customer_id": customer_id, "event_type": "x", "ts": None}])
    return str(got["unified_id"].iloc[0])


def test_trigger(ws: Workspace, name: str, customer_id: str, now: Any = None) -> dict[str, Any]:
    """A dry run of trigger ``name`` for the customer at ``now``: journeys, events that
    would start one, and the policy's decision for each send step. Writes nothing
    but the engine's (empty) tables."""
    from cip.activation.triggers import explain

    at = to_datetime(now, what="now") if now is not None else _now()
    with open_quiet(ws) as store:
        engine = _engine(ws, store, None)
        uid = _person(store, customer_id)
        out = explain(engine, name, uid, at)
    out["customer_id"] = customer_id
    out["now"] = at.isoformat()
    return _plain(out)


def record_catalog_after_ingest(store: Store, now: dt.datetime | None = None) -> int:
    """Record the ingested ``products`` as the catalog now (price drops and restocks become
    ``product_changes``); returns how many changes. No-op without a products table."""
    from cip.activation.triggers import snapshot_catalog

    if not store.has_table("products"):
        return 0
    return len(snapshot_catalog(store, now or _now()))


def _plain(v: Any) -> Any:
    import math

    import pandas as pd

    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, pd.Timestamp | dt.datetime):
        return None if pd.isna(v) else v.isoformat()
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT or v is pd.NA:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


#: The triggers ``cip demo`` adds to a workspace without any (the README's example, no receiver:
#: the decisions go to the message log).
DEMO_TRIGGERS: list[dict[str, Any]] = [
    {
        "name": "abandoned_cart",
        "when": {"event": "add_to_cart"},
        "wait": "30m",
        "unless": {"event": ["checkout", "purchase"]},
        "channel": "email",
        "content": {"cart": True},
        "control_pct": 10,
    },
    {
        "name": "price_drop",
        "when": {"catalog": "price_drop", "min_pct": 10, "interest": ["add_to_cart"]},
        "channel": "email",
    },
    {
        "name": "back_in_stock",
        "when": {"catalog": "back_in_stock", "interest": ["add_to_cart"]},
        "channel": "push",
    },
]


def add_demo_triggers(ws: Workspace) -> bool:
    """Add :data:`DEMO_TRIGGERS` to ``cip.yaml`` when it has no ``triggers:`` key; True if added."""
    import os

    import yaml
    from cip.pipelines.config import load_config

    path = ws.config_path
    before = path.read_text()
    data = yaml.safe_load(before) or {}
    if "triggers" in data:  # the user's own (``triggers: []`` turns the demo's off)
        return False
    data["triggers"] = DEMO_TRIGGERS
    header = "".join(ln + "\n" for ln in before.splitlines() if ln.startswith("#"))[:2000]
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    os.replace(tmp, path)
    ws.config = load_config(path)
    return True


def demo_step(ws: Workspace, seed: int = 0) -> dict[str, Any]:
    """``cip demo``'s trigger step: the shop's catalog changes today (price drops, restocks),
    ingested as a second products source, then one worker pass over the recent ingested
    events (``triggers run --once --from-ingest --max-event-age 2d``)."""
    from cip.pipelines.simulator import UPDATE_SOURCE, catalog_update, update_declaration
    from cip.pipelines.workflows.setup import register_sources

    products = next((s for s in ws.config.sources if s.name == "products"), None)
    out: dict[str, Any] = {}
    if products is not None:
        path = ws.sources_dir / f"{UPDATE_SOURCE}.csv"
        out.update(catalog_update(ws.path(products.path), path, seed=seed))
        decl = update_declaration(products.model_dump(exclude_defaults=True, by_alias=True),
                                  str(path.relative_to(ws.root)))  # fmt: skip
        register_sources(ws, [decl])
        out["catalog_changes"] = ws.ingest(UPDATE_SOURCE).catalog_changes
    res = run_worker(ws, once=True, from_store=True, max_event_age="2d")
    out.update(res.as_dict())
    return out
