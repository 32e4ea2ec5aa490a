"""Standard Webhooks signatures: sign, verify, and the per-destination secrets.

Every webhook request carries the three headers of the Standard Webhooks
specification (https://www.standardwebhooks.com):

* ``webhook-id`` — the message id: the batch's idempotency key, the same on
  every retry of that batch, so a receiver can de-duplicate;
* ``webhook-timestamp`` — the unix time (seconds) of this attempt;
* ``webhook-signature`` — ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``.

A secret is shown as ``whsec_<base64 of 32 random bytes>``; the HMAC key is the
decoded bytes. Each destination has its own secret: ``secret: ${ENV}`` in its
``cip.yaml`` entry, or else ``secrets/webhooks/<destination>.key`` in the
workspace, created on first use and readable by the owner only (0600).
Secrets are never logged. Any Standard Webhooks library verifies these
requests (e.g. ``standardwebhooks.Webhook(secret).verify(body, headers)``);
:func:`verify_signature` does the same without a dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from cip.profiles.errors import ConfigError

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_S",
    "SignatureError",
    "check_webhook_name",
    "new_secret",
    "secret_key",
    "webhook_secret",
    "sign",
    "signature_headers",
    "verify_signature",
]

SECRET_PREFIX = "whsec_"
#: How far a receiver accepts ``webhook-timestamp`` from its own clock (the spec's 5 minutes).
TOLERANCE_S = 300
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SignatureError(ValueError):
    """A webhook request whose signature headers do not verify."""


def new_secret() -> str:
    """A fresh secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; a malformed one is a ConfigError (never quoted)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("a webhook secret must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(f"a webhook secret must hold 24 to 64 bytes, this one has {len(key)}")
    return key


def check_webhook_name(name: str) -> str:
    """``name`` if it can name a destination (and its key file), else a ConfigError."""
    if not _NAME.match(name):
        raise ConfigError(
            f"webhook name {name[:70]!r}: use letters, digits, '_', '-' or '.' (at most 64)"
        )
    return name


def webhook_secret(secrets_dir: str | os.PathLike[str], destination: str) -> str:
    """The secret of ``destination`` in ``secrets_dir`` (``<destination>.key``), made on first use.

    The file is created with mode 0600 (owner only); an existing file is read
    as it is, so receivers configured with it keep verifying.
    """
    path = Path(secrets_dir) / f"{check_webhook_name(destination)}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(new_secret() + "\n")
    secret = path.read_text().strip()
    try:
        secret_key(secret)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one request."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent now (or at ``timestamp``)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received request; raises :class:`SignatureError` saying what is wrong.

    ``headers`` may be any case; the signature header may hold several
    space-separated signatures (secret rotation): one matching ``v1`` is enough.
    """
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = int(ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not unix seconds") from None
    age = (time.time() if now is None else now) - sent
    if age > tolerance_s:
        raise SignatureError(f"webhook-timestamp is {age:.0f} s old (tolerance {tolerance_s} s)")
    if age < -tolerance_s:
        raise SignatureError("webhook-timestamp is in the future")
    expected = sign(secret, msg_id, sent, body).encode()
    for candidate in sigs.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no matching signature (wrong secret or a changed body)")
