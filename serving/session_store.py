"""The online session store: recent items and consent statements per visitor.

``/events`` writes here at once, ``/recommend`` reads here, so a visitor's
product views steer the next recommendation without waiting for the pipeline.
Two implementations share one interface:

* :class:`MemorySessionStore` — in-process (the default; one per worker).
* :class:`RedisSessionStore` — Redis, shared by every worker and host.

Visitors are keyed by ``(identifier type, value)`` (``anonymous_id`` or
``customer_id``), stored as a keyed hash (HMAC-SHA256 with the workspace salt,
:func:`profiles.privacy.hash_identifier`): neither store holds a raw
identifier, and erasure deletes by the same hash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cip.profiles.privacy import hash_identifier

__all__ = [
    "SessionStore",
    "MemorySessionStore",
    "RedisSessionStore",
    "open_session_store",
    "Visitor",
]

log = logging.getLogger(__name__)

#: ``(identifier type, value)``, e.g. ``("anonymous_id", "c-123")``.
Visitor = tuple[str, str]
#: Consent statements outlive browsing sessions.
CONSENT_TTL_SECONDS = 30 * 24 * 3600


class SessionStore(Protocol):
    """What the service needs from a session store."""

    def add_items(self, pairs: Iterable[tuple[Visitor, str]]) -> None:
        """Append ``(visitor, item_id)`` pairs in time order (latest last)."""

    def recent_items(self, visitors: Sequence[Visitor], n: int) -> list[str]:
        """Up to ``n`` most recent items of the visitors, latest first (repeats kept)."""

    def set_consent(self, visitors: Sequence[Visitor], purpose: str, granted: bool) -> None:
        """Record a consent statement made in this session."""

    def consent(self, visitors: Sequence[Visitor], purpose: str) -> bool | None:
        """``False`` if any visitor refused, ``True`` if one granted, else ``None``."""

    def forget(self, visitors: Sequence[Visitor]) -> int:
        """Delete everything about the visitors; returns how many sessions existed."""

    def close(self) -> None: ...


class _Base:
    def __init__(self, salt: bytes, max_items: int, ttl_seconds: int) -> None:
        self.salt = salt
        self.max_items = int(max_items)
        self.ttl = int(ttl_seconds)

    def key(self, visitor: Visitor) -> str:
        kind, value = visitor
        return hash_identifier(kind, str(value).strip(), self.salt)


class MemorySessionStore(_Base):
    """In-process store: LRU-bounded, TTL on read, thread-safe.

    Args:
        salt: the workspace salt (visitor keys are hashed with it).
        max_items: items kept per visitor.
        ttl_seconds: a session without events for this long is gone.
        max_sessions: least recently used sessions are evicted beyond this.
    """

    def __init__(
        self,
        salt: bytes,
        max_items: int = 50,
        ttl_seconds: int = 1800,
        max_sessions: int = 200_000,
    ) -> None:
        super().__init__(salt, max_items, ttl_seconds)
        self.max_sessions = int(max_sessions)
        self._items: OrderedDict[str, tuple[float, deque[str]]] = OrderedDict()
        self._consent: dict[str, tuple[float, dict[str, bool]]] = {}
        self._lock = threading.Lock()

    def add_items(self, pairs: Iterable[tuple[Visitor, str]]) -> None:
        now = time.monotonic()
        with self._lock:
            for visitor, item in pairs:
                k = self.key(visitor)
                rec = self._items.pop(k, None)
                items = rec[1] if rec and now - rec[0] <= self.ttl else deque(maxlen=self.max_items)
                items.append(str(item))
                self._items[k] = (now, items)
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def recent_items(self, visitors: Sequence[Visitor], n: int) -> list[str]:
        now = time.monotonic()
        out: list[str] = []
        with self._lock:
            for v in visitors:
                k = self.key(v)
                rec = self._items.get(k)
                if rec is None:
                    continue
                if now - rec[0] > self.ttl:
                    del self._items[k]
                    continue
                out.extend(reversed(rec[1]))
        return out[:n]

    def set_consent(self, visitors: Sequence[Visitor], purpose: str, granted: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for v in visitors:
                k = self.key(v)
                _, d = self._consent.get(k, (now, {}))
                d[purpose] = bool(granted)
                self._consent[k] = (now, d)

    def consent(self, visitors: Sequence[Visitor], purpose: str) -> bool | None:
        now = time.monotonic()
        seen: list[bool] = []
        with self._lock:
            for v in visitors:
                rec = self._consent.get(self.key(v))
                if rec and now - rec[0] <= CONSENT_TTL_SECONDS and purpose in rec[1]:
                    seen.append(rec[1][purpose])
        return _combine(seen)

    def forget(self, visitors: Sequence[Visitor]) -> int:
        n = 0
        with self._lock:
            for v in visitors:
                k = self.key(v)
                n += int(self._items.pop(k, None) is not None)
                self._consent.pop(k, None)
        return n

    def forget_hashed(self, keys: Iterable[str]) -> int:
        """Delete sessions by visitor hash (erasures seen in the journal); returns how many."""
        n = 0
        with self._lock:
            for k in keys:
                n += int(self._items.pop(k, None) is not None)
                self._consent.pop(k, None)
        return n

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        with self._lock:
            self._items.clear()
            self._consent.clear()


class RedisSessionStore(_Base):
    """Redis store: a capped list per visitor (``LPUSH``/``LTRIM``/``EXPIRE``) and a consent hash.

    Keys: ``<prefix>s:<hash>`` (items, latest first) and ``<prefix>c:<hash>``
    (purpose -> ``1``/``0``). Redis being unreachable degrades to "no session"
    (logged), never to a failed request.
    """

    def __init__(
        self,
        url: str,
        salt: bytes,
        max_items: int = 50,
        ttl_seconds: int = 1800,
        prefix: str = "cip:",
        client: Any = None,
    ) -> None:
        super().__init__(salt, max_items, ttl_seconds)
        import redis

        self.prefix = prefix
        self._errors = (redis.RedisError, OSError)
        self.r = client or redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )

    def _k(self, kind: str, visitor: Visitor) -> str:
        return f"{self.prefix}{kind}:{self.key(visitor)}"

    def add_items(self, pairs: Iterable[tuple[Visitor, str]]) -> None:
        grouped: dict[str, list[str]] = {}
        for visitor, item in pairs:
            grouped.setdefault(self._k("s", visitor), []).append(str(item))
        if not grouped:
            return
        try:
            with self.r.pipeline(transaction=False) as p:
                for k, items in grouped.items():
                    p.lpush(k, *items)
                    p.ltrim(k, 0, self.max_items - 1)
                    p.expire(k, self.ttl)
                p.execute()
        except self._errors as exc:
            log.warning("session store (redis) write failed: %s", type(exc).__name__)

    def recent_items(self, visitors: Sequence[Visitor], n: int) -> list[str]:
        if not visitors:
            return []
        try:
            with self.r.pipeline(transaction=False) as p:
                for v in visitors:
                    p.lrange(self._k("s", v), 0, n - 1)
                res = p.execute()
        except self._errors as exc:
            log.warning("session store (redis) read failed: %s", type(exc).__name__)
            return []
        return [x.decode() for items in res for x in items][:n]

    def set_consent(self, visitors: Sequence[Visitor], purpose: str, granted: bool) -> None:
        try:
            with self.r.pipeline(transaction=False) as p:
                for v in visitors:
                    k = self._k("c", v)
                    p.hset(k, purpose, "1" if granted else "0")
                    p.expire(k, CONSENT_TTL_SECONDS)
                p.execute()
        except self._errors as exc:
            log.warning("session store (redis) consent write failed: %s", type(exc).__name__)

    def consent(self, visitors: Sequence[Visitor], purpose: str) -> bool | None:
        if not visitors:
            return None
        try:
            with self.r.pipeline(transaction=False) as p:
                for v in visitors:
                    p.hget(self._k("c", v), purpose)
                res = p.execute()
        except self._errors as exc:
            log.warning("session store (redis) consent read failed: %s", type(exc).__name__)
            return None
        return _combine([x == b"1" for x in res if x is not None])

    def forget(self, visitors: Sequence[Visitor]) -> int:
        if not visitors:
            return 0
        keys_s = [self._k("s", v) for v in visitors]
        keys_c = [self._k("c", v) for v in visitors]
        n = int(self.r.exists(*keys_s))
        self.r.delete(*keys_s, *keys_c)
        return n

    def forget_hashed(self, keys: Iterable[str]) -> int:
        """Delete sessions by visitor hash; returns how many existed (0 if Redis is down)."""
        names = [f"{self.prefix}{kind}:{k}" for k in keys for kind in ("s", "c")]
        if not names:
            return 0
        try:
            n = int(self.r.exists(*names[::2]))
            self.r.delete(*names)
        except self._errors as exc:
            log.warning("session store (redis) erasure failed: %s", type(exc).__name__)
            return 0
        return n

    def close(self) -> None:
        self.r.close()


def _combine(seen: list[bool]) -> bool | None:
    if not seen:
        return None
    return all(seen)


def open_session_store(
    kind: str,
    salt: bytes,
    *,
    redis_url: str | None = None,
    max_items: int = 50,
    ttl_seconds: int = 1800,
    prefix: str = "cip:",
) -> SessionStore:
    """The configured store: ``memory`` or ``redis`` (``redis_url`` required)."""
    if kind == "redis":
        if not redis_url:
            from cip.profiles.errors import ConfigError

            raise ConfigError("the redis session store needs serving.redis_url")
        return RedisSessionStore(redis_url, salt, max_items, ttl_seconds, prefix)
    return MemorySessionStore(salt, max_items, ttl_seconds)
