"""API keys with scopes, and the ASGI middleware that enforces them.

Keys are random tokens (``cip_<id>_<secret>``, 256 bits of secret) shown once
at creation. The keys file (``keys.json`` in the workspace, mode 0600) holds only
``sha256(salt || key)`` with a random per-file salt, the key's id, name, scope
and dates: a leaked file gives no usable key. Scopes:

* ``shop`` — ``/recommend``, ``/similar_items``, ``/events``;
* ``campaign`` — ``/score``, ``/segments``, ``/segment_members``, ``/admin/reload``;
* ``admin`` — everything, including ``/admin/forget``;
* ``browser`` — a *publishable* key (``pk_<id>_<secret>``) for web pages: only
  ``/recommend`` and ``/events``, and only from the origins it was created with
  (``cip keys create --scope browser --origin https://shop.example``). It is not a
  secret (it sits in the page), so a browser key is refused without an allowed
  ``Origin`` header, and CORS answers (preflights included) name only allowed
  origins. A page may send it as ``?key=`` with a ``text/plain`` JSON body, which
  is what ``navigator.sendBeacon`` can send. A shop key never goes into a page.

Health, metrics, the OpenAPI document and the tracker files under ``/web/`` stay open. A missing or unknown key is
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
    "BROWSER_PATHS",
    "normalise_origins",
    "SCOPES",
    "ROUTE_SCOPES",
    "ApiKey",
    "KeyStore",
    "AuthMiddleware",
    "request_id",
    "RequestIdFilter",
]

log = logging.getLogger("cip.serving.access")

SCOPES: tuple[str, ...] = ("shop", "campaign", "admin", "browser")
#: Path -> scopes allowed to call it (``admin`` may call everything).
ROUTE_SCOPES: dict[str, frozenset[str]] = {
    "/recommend": frozenset({"shop", "admin", "browser"}),
    "/similar_items": frozenset({"shop", "admin"}),
    "/events": frozenset({"shop", "admin", "browser"}),
    "/score": frozenset({"campaign", "admin"}),
    "/segments": frozenset({"campaign", "admin"}),
    "/segment_members": frozenset({"campaign", "admin"}),
    "/admin/reload": frozenset({"campaign", "admin"}),
    "/admin/forget": frozenset({"admin"}),
}
_OPEN = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"})
_OPEN_PREFIXES = ("/static_content/", "/assets/", "/web/")
#: Paths a browser key may call, hence the only ones answering CORS preflights.
BROWSER_PATHS = frozenset(p for p, s in ROUTE_SCOPES.items() if "browser" in s)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
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
    #: Origins (``scheme://host[:port]``) a ``browser`` key may be used from.
    origins: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.origins is not None:
            object.__setattr__(self, "origins", tuple(self.origins))

    def public(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("hash")
        if d["origins"] is None:
            d.pop("origins")
        else:
            d["origins"] = list(d["origins"])
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
        self.browser_origins = frozenset(
            o for k in self._by_hash.values() if k.scope == "browser" for o in k.origins or ()
        )
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

    def create(
        self, scope: str, name: str | None = None, origins: list[str] | None = None
    ) -> tuple[str, ApiKey]:
        """Make a new key; returns ``(the key, its record)``. The key is not stored.

        A ``browser`` key needs ``origins`` (``https://shop.example``, no path);
        other scopes take none.
        """
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
        allowed = normalise_origins(origins or [])
        if scope == "browser" and not allowed:
            raise ConfigError(
                "a browser key needs at least one --origin (the shop's page origin, "
                "e.g. https://shop.example)"
            )
        if scope != "browser" and allowed:
            raise ConfigError("--origin applies to browser keys only (--scope browser)")
        if not self._salt:
            self._salt = secrets.token_bytes(16)
        kid = secrets.token_hex(4)
        while any(k.id == kid for k in self._keys):
            kid = secrets.token_hex(4)
        prefix = "pk" if scope == "browser" else "cip"
        key = f"{prefix}_{kid}_{secrets.token_urlsafe(32)}"
        rec = ApiKey(
            id=kid,
            name=name or f"{scope}-{kid}",
            scope=scope,
            hash=self._hash(key),
            created_at=_now(),
            origins=tuple(allowed) if scope == "browser" else None,
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
        keys = [dict(k.__dict__) for k in self._keys]
        for k in keys:
            if k["origins"] is None:
                k.pop("origins")
            else:
                k["origins"] = list(k["origins"])
        data = {"version": 1, "salt": self._salt.hex(), "keys": keys}
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


def normalise_origins(origins: list[str]) -> list[str]:
    """Check and normalise origins (``https://shop.example[:port]``, lower case, no slash).

    Raises:
        ConfigError: an origin is not ``scheme://host[:port]``.
    """
    out: list[str] = []
    for o in origins:
        o2 = o.strip().rstrip("/").lower()
        if not _ORIGIN.match(o2):
            raise ConfigError(
                f"origin {o!r} is not scheme://host[:port] (e.g. https://shop.example); "
                "no path, no wildcard"
            )
        if o2 not in out:
            out.append(o2)
    return out


def _query_key(scope: dict) -> str | None:
    """A publishable key sent as ``?key=pk_...`` (pages and ``sendBeacon``; never secrets)."""
    qs = scope.get("query_string") or b""
    for part in qs.split(b"&"):
        if part.startswith(b"key=pk_"):
            return part[4:].decode("latin-1")
    return None


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
        cors: dict[str, str] = {}
        origin = headers.get(b"origin", b"").decode("latin-1").strip().lower() or None

        async def send_with_id(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                extra = [(b"x-request-id", rid.encode())]
                if cors:
                    extra += _cors_headers(cors["origin"])
                msg["headers"] = [*msg.get("headers", []), *extra]
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
            if path in _OPEN or path.startswith(_OPEN_PREFIXES) or path == "/web":
                who = ""  # health and metrics: not worth an access-log line
                await self.app(scope, receive, send_with_id)
                return
            store = self.keys()
            if store is None:
                await _json(send_with_id, 503, "the service is starting; retry shortly")
                return
            if scope.get("method") == "OPTIONS" and origin:
                # CORS preflight: carries no key, so it is answered for the browser paths
                # and the origins of the active browser keys only
                who = "preflight"
                if path in BROWSER_PATHS and origin in store.browser_origins:
                    cors["origin"] = origin
                    await _json(send_with_id, 204, "")
                else:
                    await _json(send_with_id, 403, f"origin {origin[:100]} is not allowed here")
                return
            key = store.verify(presented_key(headers) or _query_key(scope))
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
            browser = key.scope == "browser"
            if browser:
                if origin is None or origin not in (key.origins or ()):
                    await _json(
                        send_with_id,
                        403,
                        f"this browser key is not allowed from origin {(origin or 'none')[:100]} "
                        "(add it with `cip keys create --scope browser --origin ...`)",
                    )
                    return
                cors["origin"] = origin
            allowed = ROUTE_SCOPES.get(path)
            if allowed is not None and key.scope not in allowed:
                need = " or ".join(sorted(allowed - {"admin", "browser"}) or ["admin"])
                await _json(
                    send_with_id, 403, f"this key has scope {key.scope!r}; {path} needs {need}"
                )
                return
            if browser and allowed is None:  # anything not listed (new endpoints): refused
                await _json(send_with_id, 403, f"a browser key cannot call {path[:100]}")
                return
            if scope.get("method") == "POST":
                ctype = headers.get(b"content-type", b"application/json").decode("latin-1")
                kind = ctype.split(";")[0].strip().lower()
                if browser and kind == "text/plain":  # sendBeacon / simple CORS requests
                    hs = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
                    scope = {**scope, "headers": [*hs, (b"content-type", b"application/json")]}
                elif kind not in ("application/json", ""):
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


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", b"POST, OPTIONS"),
        (b"access-control-allow-headers", b"content-type, x-api-key, x-request-id"),
        (b"access-control-expose-headers", b"x-request-id"),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
    ]


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
    body = json.dumps({"error": message}).encode() if code != 204 else b""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
