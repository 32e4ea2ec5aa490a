"""API keys with scopes, and the ASGI middleware that enforces them.

Keys are random tokens (``cip_<id>_<secret>``, 256 bits of secret) shown once
at creation. The keys file (``keys.json`` in the workspace, mode 0600) holds only
``sha256(salt || key)`` with a random per-file salt, the key's id, name, scope
and dates: a leaked file gives no usable key. Scopes:

* ``shop`` — ``/recommend``, ``/similar_items``, ``/events``;
* ``campaign`` — ``/score``, ``/segments``, ``/segment_members``, ``/admin/reload``;
* ``admin`` — everything, including ``/admin/forget``.

Health, metrics and the OpenAPI document stay open. A missing or unknown key is
401, a key of the wrong scope 403. The middleware also gives every request an
id (``X-Request-ID``, echoed in the response and in every log line of the
request) and writes one access-log line per request without identifiers.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cip.profiles.errors import ConfigError, NotFoundError

__all__ = [
    "SCOPES",
    "ROUTE_SCOPES",
    "ApiKey",
    "KeyStore",
    "AuthMiddleware",
    "request_id",
    "RequestIdFilter",
]

log = logging.getLogger("cip.serving.access")

SCOPES: tuple[str, ...] = ("shop", "campaign", "admin")
#: Path -> scopes allowed to call it (``admin`` may call everything).
ROUTE_SCOPES: dict[str, frozenset[str]] = {
    "/recommend": frozenset({"shop", "admin"}),
    "/similar_items": frozenset({"shop", "admin"}),
    "/events": frozenset({"shop", "admin"}),
    "/score": frozenset({"campaign", "admin"}),
    "/segments": frozenset({"campaign", "admin"}),
    "/segment_members": frozenset({"campaign", "admin"}),
    "/admin/reload": frozenset({"campaign", "admin"}),
    "/admin/forget": frozenset({"admin"}),
}
_OPEN = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"})
_OPEN_PREFIXES = ("/static_content/", "/assets/")
MAX_BODY = 4 * 1024 * 1024
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("cip_request_id", default="-")


def request_id() -> str:
    """The id of the request being served (``-`` outside a request)."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` so handlers can format ``%(request_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the key itself)."""

    id: str
    name: str
    scope: str
    hash: str
    created_at: str
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("hash")
        return d


class KeyStore:
    """The keys file: create, list, revoke, and verify presented keys."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._salt = b""
        self._keys: list[ApiKey] = []
        self._by_hash: dict[str, ApiKey] = {}
        self.mtime = 0.0
        self.reload()

    def reload(self) -> KeyStore:
        """(Re-)read the file; a missing file means no keys (every call is refused)."""
        if not self.path.exists():
            self._salt, self._keys, self.mtime = b"", [], 0.0
        else:
            try:
                raw = json.loads(self.path.read_text())
                self._salt = bytes.fromhex(raw["salt"])
                self._keys = [ApiKey(**k) for k in raw.get("keys", [])]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}: not a valid keys file ({exc})") from None
            self.mtime = self.path.stat().st_mtime
        self._by_hash = {k.hash: k for k in self._keys if k.revoked_at is None}
        return self

    def _hash(self, key: str) -> str:
        return hashlib.sha256(self._salt + key.encode()).hexdigest()

    def verify(self, key: str | None) -> ApiKey | None:
        """The active key matching ``key``, or None."""
        if not key or not self._by_hash or len(key) > 200:
            return None
        return self._by_hash.get(self._hash(key))

    def list_keys(self) -> list[ApiKey]:
        return list(self._keys)

    def create(self, scope: str, name: str | None = None) -> tuple[str, ApiKey]:
        """Make a new key; returns ``(the key, its record)``. The key is not stored."""
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
        if not self._salt:
            self._salt = secrets.token_bytes(16)
        kid = secrets.token_hex(4)
        while any(k.id == kid for k in self._keys):
            kid = secrets.token_hex(4)
        key = f"cip_{kid}_{secrets.token_urlsafe(32)}"
        rec = ApiKey(
            id=kid,
            name=name or f"{scope}-{kid}",
            scope=scope,
            hash=self._hash(key),
            created_at=_now(),
        )
        self._keys.append(rec)
        self._save()
        return key, rec

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke by id (or by name when unique); revoked keys stop working at once."""
        hits = [k for k in self._keys if k.id == key_id or k.name == key_id]
        if not hits:
            raise NotFoundError(f"no API key with id or name {key_id!r} (see `cip keys list`)")
        if len(hits) > 1:
            raise ConfigError(f"{len(hits)} keys are named {key_id!r}; revoke by id")
        old = hits[0]
        new = ApiKey(**{**old.__dict__, "revoked_at": old.revoked_at or _now()})
        self._keys = [new if k is old else k for k in self._keys]
        self._save()
        return new

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "salt": self._salt.hex(), "keys": [k.__dict__ for k in self._keys]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.reload()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer``."""
    k = headers.get(b"x-api-key")
    if k:
        return k.decode("latin-1").strip()
    a = headers.get(b"authorization", b"").decode("latin-1").strip()
    if a[:7].lower() == "bearer ":
        return a[7:].strip()
    return None


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Any]


class AuthMiddleware:
    """ASGI middleware: request ids, API-key scopes, body limits, one access-log line.

    Args:
        app: the wrapped ASGI app.
        keys: callable returning the current :class:`KeyStore` (None while starting).
        access_log: write one INFO line per request (a bool or a callable returning one).
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Callable[[], KeyStore | None],
        access_log: Callable[[], bool] | bool = True,
    ) -> None:
        self.app = app
        self.keys = keys
        self.access_log = access_log

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _RID.match(rid):
            rid = secrets.token_hex(8)
        token = _request_id.set(rid)
        t0 = time.perf_counter()
        status = {"code": 500}
        who = "-"

        held: dict[str, Any] = {}

        async def send_with_id(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid.encode())]
                if msg["status"] == 400:  # rewritten once complete, see _readable_400
                    held["start"], held["body"] = msg, []
                    return
            elif msg["type"] == "http.response.body" and "start" in held:
                held["body"].append(msg.get("body", b""))
                if msg.get("more_body"):
                    return
                start, body = _readable_400(held.pop("start"), b"".join(held.pop("body")))
                await send(start)
                msg = {"type": "http.response.body", "body": body}
            await send(msg)

        try:
            path = scope["path"].rstrip("/") or "/"
            if path in _OPEN or path.startswith(_OPEN_PREFIXES):
                who = ""  # health and metrics: not worth an access-log line
                await self.app(scope, receive, send_with_id)
                return
            store = self.keys()
            if store is None:
                await _json(send_with_id, 503, "the service is starting; retry shortly")
                return
            key = store.verify(presented_key(headers))
            if key is None:
                await _json(
                    send_with_id,
                    401,
                    "missing or unknown API key: send it in the X-API-Key header "
                    "(or Authorization: Bearer)",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            who = key.id
            allowed = ROUTE_SCOPES.get(path)
            if allowed is not None and key.scope not in allowed:
                need = " or ".join(sorted(allowed - {"admin"}) or ["admin"])
                await _json(
                    send_with_id, 403, f"this key has scope {key.scope!r}; {path} needs {need}"
                )
                return
            if scope.get("method") == "POST":
                ctype = headers.get(b"content-type", b"application/json").decode("latin-1")
                if ctype.split(";")[0].strip().lower() not in ("application/json", ""):
                    await _json(send_with_id, 415, "send the request body as application/json")
                    return
                body = await _read_body(receive)
                if body is None:
                    await _json(send_with_id, 413, f"request body over {MAX_BODY} bytes")
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        finally:
            on = self.access_log() if callable(self.access_log) else self.access_log
            if on and who:
                log.info(
                    "%s %s %d %.1fms key=%s rid=%s",
                    scope.get("method"),
                    scope["path"][:100],
                    status["code"],
                    (time.perf_counter() - t0) * 1000,
                    who,
                    rid,
                )
            _request_id.reset(token)


def _readable_400(start: dict, body: bytes) -> tuple[dict, bytes]:
    """Make pydantic's error list one readable ``detail`` string (the documented 400 shape).

    ``{"error": "1 validation error ...", "detail": [{"loc": ["n"], "msg": ...}]}``
    becomes ``{"error": "invalid request: n: Input should be ...", "detail": "n: ..."}``.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return start, body
    if not isinstance(data, dict) or not isinstance(data.get("detail"), list):
        return start, body
    parts = []
    for d in data["detail"]:
        if isinstance(d, dict):
            loc = ".".join(str(x) for x in d.get("loc", ())) or "body"
            parts.append(f"{loc}: {d.get('msg', '')}")
    detail = "; ".join(parts)[:2000]
    new = json.dumps({"error": f"invalid request: {detail}", "detail": detail}).encode()
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(new)).encode()))
    return {**start, "headers": headers}, new


async def _read_body(receive: Callable) -> bytes | None:
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, original: Callable) -> Callable[[], Awaitable[dict]]:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _json(
    send: Callable, code: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
