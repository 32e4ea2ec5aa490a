"""``/events``: per-event validation and the durable, fsync'ed events log.

Accepted events are appended to ``<events_dir>/events-<time>-<pid>.jsonl.part``
(one JSON object per line, written and ``fsync``'ed before the response) and the
file is renamed to ``.jsonl`` when it is ``rotate_seconds`` old, at shutdown, or
at the next start-up when its process died. The workspace source
``http_events`` (registered by ``cip serve``) reads ``*.jsonl``, so the next
``cip ingest`` loads every event, never a half-written line; re-ingesting a
file is idempotent (record ids are content hashes).

``_schema.jsonl`` holds one placeholder line naming every column (the source
filters it out with ``where: _schema IS NULL``), so ingestion works before the
first event arrives. Keys of null values are left out of event lines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cip.profiles.contracts import CHANNELS, CONSENT_PURPOSES
from cip.serving.schemas import EventIn

__all__ = [
    "EVENT_COLUMNS",
    "SOURCE_NAME",
    "source_declaration",
    "ValidEvent",
    "validate_events",
    "EventSink",
    "RedisEventStream",
]

log = logging.getLogger(__name__)

SOURCE_NAME = "http_events"
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "event_type",
    "customer_id",
    "anonymous_id",
    "session_id",
    "item_id",
    "order_id",
    "channel",
    "rating",
    "properties",
)
#: Events about an item that need ``item_id``; their items feed the session.
ITEM_EVENTS = frozenset({"product_view", "add_to_cart", "remove_from_cart"})
SESSION_EVENTS = frozenset({"product_view", "add_to_cart", "purchase", "review"})
_MAX_PROPERTIES = 4096
_MAX_FUTURE = timedelta(minutes=5)
_MIN_TS = datetime(2000, 1, 1)


def source_declaration(events_dir_rel: str = "sources/_http_events") -> dict[str, Any]:
    """The ``cip.yaml`` source entry that loads the HTTP events into ``events``."""
    return {
        "name": SOURCE_NAME,
        "table": "events",
        "path": f"{events_dir_rel}/*.jsonl",
        "format": "jsonl",
        "where": "_schema IS NULL",
        "columns": {c: c for c in EVENT_COLUMNS},
    }


@dataclass(frozen=True)
class ValidEvent:
    """An accepted event, normalised (``ts`` naive UTC)."""

    index: int
    record: dict[str, Any]

    @property
    def visitors(self) -> list[tuple[str, str]]:
        r = self.record
        return [(k, r[k]) for k in ("anonymous_id", "customer_id") if r.get(k)]


def _parse_ts(text: str | None, now: datetime) -> datetime | str:
    if text is None or text == "":
        return now
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return f"ts {text[:40]!r} is not an ISO 8601 timestamp"
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    if ts > now + _MAX_FUTURE:
        return "ts is in the future"
    if ts < _MIN_TS:
        return "ts is before 2000-01-01"
    return ts


def _check(e: EventIn, now: datetime) -> dict[str, Any] | str:
    et = e.event_type.strip().lower()
    if not et or len(et) > 40 or not et.replace("_", "").isalnum():
        return "event_type must be a word like product_view (letters, digits, _)"
    if not (e.customer_id or e.anonymous_id):
        return "an event needs customer_id or anonymous_id"
    if et in ITEM_EVENTS and not e.item_id:
        return f"{et} needs item_id"
    ts = _parse_ts(e.ts, now)
    if isinstance(ts, str):
        return ts
    if e.channel is not None and e.channel not in CHANNELS:
        return f"channel must be one of {', '.join(CHANNELS)}"
    if e.rating is not None and not (math.isfinite(e.rating) and 1 <= e.rating <= 5):
        return "rating must be between 1 and 5"
    props = None
    if e.properties is not None:
        try:
            props = json.dumps(e.properties, allow_nan=False, sort_keys=True)
        except ValueError:
            return "properties must be plain JSON (no NaN or Infinity)"
        if len(props) > _MAX_PROPERTIES:
            return f"properties over {_MAX_PROPERTIES} characters"
    if et == "consent":
        p = e.properties or {}
        if p.get("purpose") not in CONSENT_PURPOSES or not isinstance(p.get("granted"), bool):
            return (
                "a consent event needs properties {purpose: one of "
                f"{', '.join(CONSENT_PURPOSES)}, granted: true|false}}"
            )
    rec = {
        "event_id": e.event_id or f"http-{uuid.uuid4().hex}",
        "ts": ts.isoformat(sep=" ", timespec="microseconds"),
        "event_type": et,
        "customer_id": e.customer_id,
        "anonymous_id": e.anonymous_id,
        "session_id": e.session_id,
        "item_id": e.item_id,
        "order_id": e.order_id,
        "channel": e.channel,
        "rating": e.rating,
        "properties": props,
    }
    return {k: v for k, v in rec.items() if v is not None}


def validate_events(
    events: Sequence[EventIn], now: datetime | None = None
) -> tuple[list[ValidEvent], list[tuple[int, str]]]:
    """Split a batch into accepted events and ``(index, reason)`` rejections."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    ok: list[ValidEvent] = []
    bad: list[tuple[int, str]] = []
    ids: set[str] = set()
    for i, e in enumerate(events):
        res = _check(e, now)
        if isinstance(res, str):
            bad.append((i, res))
        elif res["event_id"] in ids:
            bad.append((i, "duplicate event_id in this batch"))
        else:
            ids.add(res["event_id"])
            ok.append(ValidEvent(i, res))
    return ok, bad


class EventSink:
    """Append-only, fsync'ed JSONL log of accepted events with atomic rotation.

    Args:
        directory: the events folder (created).
        rotate_seconds: age after which the open file is closed and published.
        stream: also called with every appended batch (e.g. :class:`RedisEventStream`);
            an ``OSError`` it raises fails the request (the client retries; the trigger
            worker de-duplicates by ``event_id``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        rotate_seconds: float = 60.0,
        stream: Callable[[Sequence[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.stream = stream
        self.rotate_seconds = float(rotate_seconds)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._part: Path | None = None
        self._opened = 0.0
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ensure_schema_file(self.dir)
        self.recover()

    @staticmethod
    def ensure_schema_file(directory: str | os.PathLike[str]) -> Path:
        """Write the placeholder line naming every column (idempotent)."""
        p = Path(directory) / "_schema.jsonl"
        if not p.exists():
            Path(directory).mkdir(parents=True, exist_ok=True)
            line = {"_schema": "cip-http-events-1", **dict.fromkeys(EVENT_COLUMNS)}
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(line) + "\n")
            os.replace(tmp, p)
        return p

    def recover(self) -> int:
        """Publish ``.part`` files left by processes that are gone; returns how many."""
        n = 0
        for part in self.dir.glob("*.jsonl.part"):
            pid = _pid_of(part)
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue
            os.replace(part, part.with_suffix(""))
            n += 1
        if n:
            _fsync_dir(self.dir)
            log.info("published %d events file(s) left by a previous process", n)
        return n

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Write the records durably (one ``write`` and ``fsync``) before returning."""
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        with self._lock:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
            if time.monotonic() - self._opened >= self.rotate_seconds:
                self._rotate()
        if self.stream is not None:
            self.stream(records)  # after the file: the journal stays the record of truth

    def rotate_if_due(self) -> None:
        with self._lock:
            if self._fd is not None and time.monotonic() - self._opened >= self.rotate_seconds:
                self._rotate()

    def close(self) -> None:
        """Publish the open file (service shutdown)."""
        with self._lock:
            if self._fd is not None:
                self._rotate()

    def _open(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._part = self.dir / f"events-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl.part"
        self._fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._opened = time.monotonic()
        _fsync_dir(self.dir)

    def _rotate(self) -> None:
        assert self._fd is not None and self._part is not None
        os.fsync(self._fd)
        os.close(self._fd)
        os.replace(self._part, self._part.with_suffix(""))
        _fsync_dir(self.dir)
        self._fd, self._part = None, None


class RedisEventStream:
    """Appends event batches to a Redis Stream (``XADD <key> * event <json>``), one round trip.

    Redis errors become ``OSError`` so ``/events`` answers 503 and the client retries.
    """

    def __init__(self, url: str, key: str, client: Any = None) -> None:
        import redis

        self.key = key
        self._errors = (redis.RedisError,)
        self.r = client or redis.Redis.from_url(url, socket_timeout=2.0)

    def __call__(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            pipe = self.r.pipeline(transaction=False)
            for rec in records:
                pipe.xadd(self.key, {"event": json.dumps(rec, separators=(",", ":"))})
            pipe.execute()
        except self._errors as exc:
            raise OSError(f"event stream {self.key}: {type(exc).__name__}") from None


def _pid_of(part: Path) -> int | None:
    bits = part.name.split("-")
    try:
        return int(bits[2])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
