"""Event feeds of the trigger worker: the service's event journal (durable offsets) and Redis.

:class:`JournalFeed` reads the JSONL files the service's ``/events`` endpoint
appends to (``events-*.jsonl.part`` while open, renamed ``.jsonl`` when
rotated; see ``serving.events``). How far each file has been read is a byte
offset kept in the store (``trigger_feed_offsets``), moved on only after the
engine has processed the events (:meth:`JournalFeed.commit`): a worker killed
in between reads them again, and the engine's idempotency (events journaled by
``event_id``, journeys keyed by trigger + person + window) makes the replay a
no-op. A restart therefore neither loses nor re-processes events. Only
complete lines (ending in a newline) are read, so a line being written is
read on the next pass.

:class:`RedisStreamFeed` reads a Redis Stream with a consumer group
(``XREADGROUP``; entries are acknowledged with ``XACK`` after processing, and a
restarted consumer first re-reads its own pending entries).

:func:`resolve_people` maps the events' shop identifiers to persons.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from cip.activation.triggers._tables import ensure_trigger_tables
from cip.profiles.store import Store

__all__ = [
    "OFFSETS",
    "JournalFeed",
    "RedisStreamFeed",
    "resolve_people",
    "get_watermark",
    "set_watermark",
]

log = logging.getLogger(__name__)

OFFSETS = "trigger_feed_offsets"
_OFFSETS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {OFFSETS} (feed VARCHAR NOT NULL, part VARCHAR NOT NULL, "
    "pos BIGINT NOT NULL, ts TIMESTAMP, updated_at TIMESTAMP, PRIMARY KEY (feed, part))"
)


_READY: weakref.WeakSet[Store] = weakref.WeakSet()


def _ensure(store: Store) -> None:
    """Create the engine's and the offsets' tables once per open store (a worker cycle
    reads the feed and the watermarks each time: ~20 DDL statements saved per cycle)."""
    if store in _READY:
        return
    ensure_trigger_tables(store)
    store.execute(_OFFSETS_DDL)
    if not getattr(store, "_depth", 0):  # committed, not inside a transaction that may roll back
        _READY.add(store)


def _upsert(store: Store, feed: str, rows: Sequence[tuple[str, int, dt.datetime | None]]) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction():
        for part, pos, ts in rows:
            store.execute(f"DELETE FROM {OFFSETS} WHERE feed = ? AND part = ?", [feed, part])
            store.execute(
                f"INSERT INTO {OFFSETS} (feed, part, pos, ts, updated_at) VALUES "
                "(?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
                [feed, part, int(pos), ts, now],
            )


def get_watermark(store: Store, name: str) -> dt.datetime | None:
    """A named time watermark of the worker (e.g. the last catalog change fed), or None."""
    _ensure(store)
    df = store.sql(f"SELECT ts FROM {OFFSETS} WHERE feed = ? AND part = ''", [name])
    if df.empty or pd.isna(df["ts"].iloc[0]):
        return None
    return pd.Timestamp(df["ts"].iloc[0]).to_pydatetime()


def set_watermark(store: Store, name: str, ts: dt.datetime) -> None:
    """Move a named time watermark to ``ts``."""
    _ensure(store)
    _upsert(store, name, [("", 0, ts)])


class JournalFeed:
    """The service's event journal folder, read from durable per-file offsets.

    Args:
        directory: the events folder (``<workspace>/sources/_http_events``).
        name: the feed's name in the offsets table (one per folder).
    """

    #: :meth:`commit` writes to the store: the worker calls it inside the cycle's transaction
    commits_in_store = True

    def __init__(self, directory: str | os.PathLike[str], name: str = "journal") -> None:
        self.dir = Path(directory)
        self.name = name
        self._pending: dict[str, int] = {}

    def _files(self) -> list[tuple[str, Path]]:
        if not self.dir.is_dir():
            return []
        out: dict[str, Path] = {}
        for p in self.dir.iterdir():
            n = p.name
            if n.startswith("_") or not (n.endswith(".jsonl") or n.endswith(".jsonl.part")):
                continue
            key = n.removesuffix(".part")
            if key not in out or n.endswith(".jsonl"):
                out[key] = p
        return sorted(out.items())

    def read(self, store: Store, limit: int = 20_000) -> list[dict[str, Any]]:
        """Up to about ``limit`` unread event records (oldest file first); call
        :meth:`commit` once they are processed."""
        _ensure(store)
        have = store.sql(f"SELECT part, pos FROM {OFFSETS} WHERE feed = ?", [self.name])
        done = dict(zip(have["part"].astype(str), have["pos"].astype(int), strict=True))
        records: list[dict[str, Any]] = []
        self._pending = {}
        for key, path in self._files():
            start = done.get(key, 0)
            data = _read_from(path, key, start)
            if data is None:
                continue
            end = data.rfind(b"\n") + 1
            if end <= 0:
                continue
            chunk = data[:end]
            if len(records) >= limit:
                break
            lines = chunk.split(b"\n")[:-1]
            room = limit - len(records)
            if len(lines) > room:  # stop mid-file: the offset ends after the last line taken
                lines = lines[:room]
                end = sum(len(x) + 1 for x in lines)
            for raw in lines:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    log.warning("events journal %s: skipping an unreadable line", key)
                    continue
                if isinstance(rec, dict) and "_schema" not in rec:
                    records.append(rec)
            self._pending[key] = start + end
        return records

    def commit(self, store: Store) -> None:
        """Record the offsets of the last :meth:`read` (after the engine processed it)."""
        if self._pending:
            _upsert(store, self.name, [(k, v, None) for k, v in sorted(self._pending.items())])
            self._pending = {}

    def lag(self, store: Store) -> int:
        """Bytes of complete or partial lines not read yet (0: caught up)."""
        _ensure(store)
        have = store.sql(f"SELECT part, pos FROM {OFFSETS} WHERE feed = ?", [self.name])
        done = dict(zip(have["part"].astype(str), have["pos"].astype(int), strict=True))
        total = 0
        for key, path in self._files():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            total += max(0, size - done.get(key, 0))
        return total


def _read_from(path: Path, key: str, start: int) -> bytes | None:
    """The bytes of the file from ``start`` (the file may have been renamed since listed)."""
    for p in (path, path.with_name(key), path.with_name(key + ".part")):
        try:
            with open(p, "rb") as fh:
                if os.fstat(fh.fileno()).st_size <= start:
                    return None
                fh.seek(start)
                return fh.read()
        except FileNotFoundError:
            continue
    return None


class RedisStreamFeed:
    """A Redis Stream read through a consumer group (at least once; ``XACK`` after processing).

    Args:
        client: a ``redis.Redis`` client (``decode_responses=True`` not required).
        stream: the stream key the service writes events to.
        group: the consumer group (created at the stream's start when missing).
        consumer: this worker's name in the group.
    """

    #: :meth:`commit` acknowledges in Redis: the worker calls it after the store's commit
    commits_in_store = False

    def __init__(
        self, client: Any, stream: str, group: str = "cip-triggers", consumer: str = "worker-1"
    ) -> None:
        self.r = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._ids: list[Any] = []
        self._backlog = True  # first read our own pending entries (a crash left them unacked)
        try:
            self.r.xgroup_create(stream, group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: it exists
            if "BUSYGROUP" not in str(exc):
                raise

    def read(
        self, store: Store | None = None, limit: int = 20_000, block_ms: int = 0
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` entries: first this consumer's unacknowledged ones, then new ones."""
        start = "0" if self._backlog else ">"
        got = self.r.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=limit,
            block=None if self._backlog or not block_ms else block_ms,
        )  # fmt: skip
        entries = got[0][1] if got else []
        if self._backlog and not entries:
            self._backlog = False
            return self.read(store, limit, block_ms)
        out, self._ids = [], []
        for eid, fields in entries:
            self._ids.append(eid)
            raw = fields.get(b"event") or fields.get("event")
            if raw is None:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                log.warning("redis stream %s: skipping an unreadable entry", self.stream)
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def commit(self, store: Store | None = None) -> None:
        """Acknowledge the entries of the last :meth:`read`."""
        if self._ids:
            self.r.xack(self.stream, self.group, *self._ids)
            self._ids = []

    def lag(self, store: Store | None = None) -> int:
        """Entries not yet delivered to the group plus those pending (unacknowledged)."""
        try:
            info = self.r.xinfo_groups(self.stream)
        except Exception:  # the stream is gone
            return 0
        for g in info:
            name = g.get("name") or g.get(b"name")
            if name in (self.group, self.group.encode()):
                return int(g.get("lag") or 0) + int(g.get("pending") or 0)
        return 0


def _lookup(store: Store, table: str, id_type: str | None, values: Iterable[str]) -> dict[str, str]:
    vals = sorted(set(values))
    found: dict[str, str] = {}
    for k in range(0, len(vals), 500):
        chunk = vals[k : k + 500]
        ph = ", ".join("?" for _ in chunk)
        if table == "identity_map":
            df = store.sql(
                "SELECT identifier_value AS v, min(unified_id) AS u FROM identity_map "
                f"WHERE identifier_type = ? AND unified_id IS NOT NULL AND identifier_value IN ({ph}) "
                "GROUP BY identifier_value",
                [id_type, *chunk],
            )
        else:
            df = store.sql(
                "SELECT CAST(customer_id AS VARCHAR) AS v, min(unified_id) AS u FROM profiles "
                f"WHERE CAST(customer_id AS VARCHAR) IN ({ph}) GROUP BY 1",
                chunk,
            )
        found.update(zip(df["v"].astype(str), df["u"].astype(str), strict=True))
    return found


def resolve_people(store: Store, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Event records (journal lines: ``customer_id`` / ``anonymous_id``) as an engine batch.

    The person is the unified id the identity map gives the customer id, else the
    anonymous id (``profiles.customer_id`` when there is no identity map yet); an
    event of nobody known keeps its customer id (else ``anon:<anonymous id>``) as
    the person, so its journeys wait for nothing and reach nobody until
    identity resolution knows the person.
    """
    if not records:
        return pd.DataFrame(
            columns=["event_id", "ts", "event_type", "unified_id", "item_id", "properties"]
        )
    df = pd.DataFrame.from_records(records)
    for c in ("customer_id", "anonymous_id", "item_id", "properties", "event_id"):
        if c not in df:
            df[c] = None
    cust = df["customer_id"].map(lambda v: None if v is None or pd.isna(v) else str(v))
    anon = df["anonymous_id"].map(lambda v: None if v is None or pd.isna(v) else str(v))
    by_cust: dict[str, str] = {}
    by_anon: dict[str, str] = {}
    if store.has_table("identity_map"):
        by_cust = _lookup(store, "identity_map", "customer_id", cust.dropna())
        by_anon = _lookup(store, "identity_map", "anonymous_id", anon.dropna())
    elif store.has_table("profiles"):
        by_cust = _lookup(store, "profiles", None, cust.dropna())
    uid = [by_cust.get(c) if c else None for c in cust]
    uid = [
        u or (by_anon.get(a) if a else None) or c or (f"anon:{a}" if a else None)
        for u, c, a in zip(uid, cust, anon, strict=True)
    ]
    df["unified_id"] = uid
    return df[["event_id", "ts", "event_type", "unified_id", "item_id", "properties"]]
