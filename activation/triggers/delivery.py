"""Delivery of decided messages: one signed webhook per message, ``sent_at`` in the log.

Every message the policy decided ``sent`` and that names a destination is
POSTed as JSON to the destination (see :func:`message_payload` for the body),
signed the Standard Webhooks way (:mod:`cip.activation.signing`) with the
message id as ``webhook-id`` and ``Idempotency-Key``. A 2xx answer records
``sent_at``; anything else leaves the message pending and the next pass sends
it again (the same id: receivers de-duplicate by it). A worker killed between
a receiver's 2xx and the ``sent_at`` update sends that message once more,
with the same id: *exactly once after de-duplication by message id*.

A person erased (or whose consent was withdrawn) after the decision is not
sent: consent and erasure are read again at delivery, and such a message's
decision becomes ``no_consent`` (the reason says so).

The worker posts through a :class:`WebhookSender`: a thread pool kept for the
whole run, each thread with its own keep-alive connection per receiver
(standard library ``http.client``: a quarter of the CPU of an ``httpx`` request,
which at hundreds of messages a second is most of the worker's time). Given an
``httpx.Client`` (or when a proxy is configured in the environment, or with
more than one attempt per pass), delivery goes through ``httpx`` as segment
webhooks do.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from cip.activation._webhook_http import post_batch
from cip.activation.signing import signature_headers
from cip.activation.triggers._people import load_people
from cip.activation.triggers._tables import MESSAGES
from cip.activation.webhooks import WebhookDestination
from cip.profiles.store import Store

__all__ = [
    "DeliveryPass",
    "WebhookSender",
    "deliver_messages",
    "message_payload",
    "undelivered",
    "CONTACT_OF",
]

log = logging.getLogger(__name__)

#: The identifier a channel reaches the person by.
CONTACT_OF = {"email": "email", "sms": "phone", "push": "customer_id", "webhook": None}


@dataclass
class DeliveryPass:
    """What one :func:`deliver_messages` call did (counts only)."""

    pending: int = 0
    delivered: int = 0
    failed: int = 0
    withdrawn: int = 0
    failed_destinations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WebhookSender:
    """Signed webhook POSTs over keep-alive connections, ``concurrency`` at a time.

    One thread pool for the sender's life; each thread keeps one connection per
    (scheme, host, port) and opens it again after any error. One attempt per
    :meth:`post`: a message that fails waits for the next delivery pass.
    """

    def __init__(self, concurrency: int = 16) -> None:
        self.concurrency = max(1, int(concurrency))
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cip-webhook")
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _conn(
        self, scheme: str, host: str, port: int, timeout: float
    ) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        key = (scheme, host, port)
        c = conns.get(key)
        if c is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            c = cls(host, port, timeout=timeout)
            conns[key] = c
            with self._lock:
                self._all.append(c)
        c.timeout = timeout
        return c

    def _drop(self, scheme: str, host: str, port: int) -> None:
        c = self._local.__dict__.get("conns", {}).pop((scheme, host, port), None)
        if c is not None:
            c.close()

    def post(
        self, dest: WebhookDestination, secret: str, msg_id: str, body: bytes
    ) -> tuple[str, int | None, str | None]:
        """POST one message; ``("delivered" | "failed", status code, error)``."""
        u = urlsplit(dest.url)
        scheme = u.scheme or "http"
        host = u.hostname or "localhost"
        port = u.port or (443 if scheme == "https" else 80)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        headers = {
            **dest.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": msg_id,
            **signature_headers(secret, msg_id, body, int(time.time())),
        }
        for fresh in (False, True):  # a kept connection the receiver closed: one reconnect
            c = self._conn(scheme, host, port, dest.timeout_s)
            try:
                c.request("POST", path, body=body, headers=headers)
                resp = c.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(scheme, host, port)
                if fresh or isinstance(exc, TimeoutError):
                    return "failed", None, type(exc).__name__
                continue
            if resp.will_close:
                self._drop(scheme, host, port)
            code = resp.status
            if 200 <= code < 300:
                return "delivered", code, None
            return "failed", code, f"HTTP {code}"
        return "failed", None, "unreachable"  # pragma: no cover - the loop always returns

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()


def _proxied() -> bool:
    """Whether the environment asks for an HTTP proxy (httpx honours it, http.client not)."""
    return bool(urllib.request.getproxies())


def _j(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def message_payload(row: Mapping[str, Any], contacts: Mapping[str, str | None]) -> dict[str, Any]:
    """The JSON a destination receives for one message row (and the person's contacts)."""
    channel = str(row["channel"])
    contact_type = CONTACT_OF.get(channel)
    return {
        "type": "trigger.message",
        "message_id": row["message_id"],
        "trigger": row["trigger"],
        "step": int(row["step"]),
        "channel": channel,
        "person": {
            "unified_id": row["unified_id"],
            "customer_id": contacts.get("customer_id"),
            "contact": {contact_type: contacts.get(contact_type)} if contact_type else {},
        },
        "items": _j(row["items"], []),
        "model_versions": _j(row["model_versions"], {}),
        "reason": row["reason"],
        "context": _j(row["context"], {}),
        "decided_at": _iso(row["decided_at"]),
    }


def _prepare(
    store: Store,
    row: dict[str, Any],
    destinations: Mapping[str, WebhookDestination],
    people: Mapping[str, Any],
    down: set[str],
    rep: DeliveryPass,
) -> tuple[str, WebhookDestination, str, bytes] | None:
    """The (destination, its config, message id, body) to post, or None (skipped)."""
    name = str(row["destination"])
    if name in down:
        return None
    dest = destinations.get(name)
    if dest is None:
        log.warning("messages for unknown destination %r left pending", name)
        down.add(name)
        return None
    person = people.get(str(row["unified_id"]))
    purpose = str(row["purpose"] or row["channel"])
    if person is not None and (person.erased or person.consent.get(purpose) is False):
        store.execute(
            f"UPDATE {MESSAGES} SET decision = 'no_consent', reason = ? "
            "WHERE message_id = ? AND sent_at IS NULL",
            [f"{purpose} consent withdrawn or person erased before delivery", row["message_id"]],
        )
        rep.withdrawn += 1
        return None
    contacts = dict(person.contacts) if person is not None else {}
    body = json.dumps(message_payload(row, contacts), sort_keys=True, default=str)
    return name, dest, str(row["message_id"]), body.encode()


def _mark_sent(store: Store, ids: list[str]) -> None:
    if not ids:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        store.execute(
            f"UPDATE {MESSAGES} SET sent_at = CAST(? AS TIMESTAMP) "
            f"WHERE message_id IN ({', '.join('?' for _ in part)})",
            [now, *part],
        )


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    try:
        return v.isoformat()
    except AttributeError:
        return str(v)


def deliver_messages(
    store: Store,
    destinations: Mapping[str, WebhookDestination],
    secret_of: Callable[[str], str],
    *,
    salt: bytes,
    client: httpx.Client | None = None,
    limit: int = 2000,
    attempts: int = 1,
    concurrency: int = 8,
    chunk: int = 200,
    sleep: Callable[[float], None] = time.sleep,
    sender: WebhookSender | None = None,
) -> DeliveryPass:
    """Send the decided, unsent messages with a destination (oldest first, at most ``limit``).

    ``secret_of(name)`` gives a destination's signing secret. Each message gets
    ``attempts`` tries in this pass; a message that fails waits for the next pass,
    and after a chunk in which nothing reached a destination its other messages wait
    too (a receiver that is down is not hammered).
    Messages go ``concurrency`` at a time (``sender``'s when given: the worker keeps
    one for its run); ``sent_at`` is written once per ``chunk`` messages (a crash in
    between resends those, with the same ids).
    """
    rep = DeliveryPass()
    rows = store.sql(
        f'SELECT message_id, "trigger", unified_id, step, channel, destination, purpose, reason, '
        f"items, context, model_versions, decided_at FROM {MESSAGES} "
        "WHERE decision = 'sent' AND sent_at IS NULL AND destination IS NOT NULL "
        f"ORDER BY decided_at, message_id LIMIT {int(limit)}"
    )
    rep.pending = len(rows)
    if rows.empty:
        return rep
    people = load_people(store, rows["unified_id"].astype(str), salt=salt)
    use_httpx = client is not None or attempts > 1 or _proxied()
    own_http = use_httpx and client is None
    http_client = (
        (client or httpx.Client(limits=httpx.Limits(max_connections=concurrency)))
        if use_httpx
        else None
    )
    own_sender = not use_httpx and sender is None
    snd = None if use_httpx else (sender or WebhookSender(concurrency))
    rng = random.Random()
    down: set[str] = set()
    secrets: dict[str, str] = {}

    def post(item: tuple[str, WebhookDestination, str, bytes]) -> tuple[str, Any]:
        name, dest, mid, body = item
        if snd is not None:
            return name, snd.post(dest, secrets[name], mid, body)
        one = dest.model_copy(update={"max_attempts": max(1, attempts)})
        return name, post_batch(http_client, one, secrets[name], mid, body, rng, sleep)[:3]  # type: ignore[arg-type]

    pool = snd.pool if snd is not None else ThreadPoolExecutor(max_workers=concurrency)
    try:
        records = rows.to_dict("records")
        for k in range(0, len(records), chunk):
            todo = []
            for row in records[k : k + chunk]:
                item = _prepare(store, row, destinations, people, down, rep)
                if item is not None:
                    todo.append(item)
                    if item[0] not in secrets:
                        secrets[item[0]] = secret_of(item[0])
            done, ok, bad = [], set(), {}
            for (name, (status, code, err)), (_, _, mid, _) in zip(
                pool.map(post, todo), todo, strict=True
            ):
                if status == "delivered":
                    done.append(mid)
                    ok.add(name)
                else:
                    rep.failed += 1
                    bad[name] = err or code
            for name, why in bad.items():  # nothing got through: the receiver is down
                if name not in ok:
                    log.warning("destination %s: not delivered (%s); retried later", name, why)
                    down.add(name)
            _mark_sent(store, done)
            rep.delivered += len(done)
    finally:
        if snd is None:
            pool.shutdown(wait=True)
        if own_sender and snd is not None:
            snd.close()
        if own_http and http_client is not None:
            http_client.close()
    rep.failed_destinations = sorted(down)
    return rep


def undelivered(store: Store) -> int:
    """Messages decided ``sent`` to a destination and not delivered yet."""
    if not store.has_table(MESSAGES):
        return 0
    return int(
        store.sql(
            f"SELECT count(*) AS n FROM {MESSAGES} WHERE decision = 'sent' AND sent_at IS NULL "
            "AND destination IS NOT NULL"
        )["n"].iloc[0]
    )
