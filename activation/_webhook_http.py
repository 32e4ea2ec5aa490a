"""One webhook batch over HTTP: signed POSTs, retries with backoff, ``Retry-After``.

Each attempt is signed anew (a fresh ``webhook-timestamp``, so a batch retried
minutes later still verifies) with the same ``webhook-id``. A 2xx answer
delivers the batch; 408, 425, 429, 5xx and network errors are retried after
``U(0, min(backoff_max_s, backoff_base_s * 2**attempt))`` seconds (full
jitter), or after the answer's ``Retry-After`` when it gives one; any other
4xx is the receiver refusing the batch and is not retried.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from cip.activation.signing import signature_headers

if TYPE_CHECKING:
    from cip.activation.webhooks import WebhookDestination

__all__ = ["post_batch", "retry_after_seconds"]

_RETRY = frozenset({408, 425, 429})


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    ``"120"`` is 120 s; ``"Wed, 21 Oct 2015 07:28:00 GMT"`` is the time until
    that moment (``now`` defaults to the current UTC time; a past date is 0).
    None for a missing or unreadable value.
    """
    if value is None or not value.strip():
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates: RFC 5322 says UTC
        when = when.replace(tzinfo=dt.UTC)
    ref = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - ref).total_seconds())


def post_batch(
    http: httpx.Client,
    dest: WebhookDestination,
    secret: str,
    key: str,
    body: bytes,
    rng: random.Random,
    sleep: Callable[[float], None],
) -> tuple[str, int | None, str | None, int]:
    """POST one batch with retries; returns (status, last code, last error, attempts)."""
    base = {**dest.headers, "Content-Type": "application/json", "Idempotency-Key": key}
    code: int | None = None
    err: str | None = None
    for attempt in range(dest.max_attempts):
        retry_after = None
        headers = {**base, **signature_headers(secret, key, body, int(time.time()))}
        try:
            resp = http.post(dest.url, content=body, headers=headers, timeout=dest.timeout_s)
        except httpx.HTTPError as exc:
            code, err = None, type(exc).__name__
        else:
            code = resp.status_code
            if 200 <= code < 300:
                return "delivered", code, None, attempt + 1
            err = f"HTTP {code}"
            if code < 500 and code not in _RETRY:
                return "failed", code, err, attempt + 1  # the receiver refuses it: do not insist
            retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            if retry_after is not None and retry_after > dest.retry_after_max_s:
                # asked to come back later than we wait in one run: the next delivery sends it
                return "failed", code, f"{err}, Retry-After {retry_after:.0f} s", attempt + 1
        if attempt + 1 < dest.max_attempts:
            cap = min(dest.backoff_max_s, dest.backoff_base_s * 2**attempt)
            sleep(rng.uniform(0, cap) if retry_after is None else retry_after)
    return "failed", code, err, dest.max_attempts
