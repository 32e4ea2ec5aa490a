"""Webhook destination: segment changes POSTed in JSON batches, at least once.

Per (destination, segment, build) the changes are split once into numbered
batches; the plan is frozen in ``webhook_batches`` (person ids and change only)
and each batch has a row in ``webhook_deliveries`` with a deterministic
``Idempotency-Key`` (SHA-256 of destination, segment, as_of, the build's
change digest and the batch index). A batch is sent until a 2xx answer, with
exponential backoff and full jitter between attempts (``sleep = U(0, min(cap,
base * 2**attempt))``, Brooker, "Exponential Backoff And Jitter", AWS
Architecture Blog 2015); a re-run sends only the batches not yet delivered. A
crash between a receiver's 2xx and the log update resends that batch, which is
why receivers de-duplicate by the key. Consent for the segment's purpose and
erasure are applied when a batch is sent, so a withdrawn or erased person is
never sent later.

Every request is signed the Standard Webhooks way (:mod:`cip.activation.signing`):
``webhook-id`` is the batch's key (the same on every retry), ``webhook-timestamp``
the attempt's time, ``webhook-signature`` the HMAC of both and the body with the
destination's secret. A 429 or 5xx answer's ``Retry-After`` (seconds or an HTTP
date, RFC 9110 10.2.3) replaces the backoff when it asks for at most
``retry_after_max_s``; a longer wait ends this run's attempts at that batch (it
stays ``failed`` and the next delivery sends it).

A destination with ``recommend: {block, n}`` adds ``recommended_items`` to every
change: the caller passes, per destination, a function from person ids to item
ids (``deliver_webhooks(..., recommend=...)``) that answers only for persons
who consented to personalisation; the others get ``null``. The items are
computed when a batch is (re)sent, like consent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import pandas as pd
from cip.activation._tables import BATCHES, DELIVERIES, ensure_tables, to_timestamp
from cip.activation._webhook_http import post_batch, retry_after_seconds
from cip.activation.definitions import SegmentDefinition
from cip.activation.export import member_rows_sql
from cip.activation.signing import secret_key, webhook_secret
from cip.profiles.errors import ConfigError
from cip.profiles.store import Store
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "WebhookDestination",
    "WebhookRecommend",
    "DeliveryReport",
    "deliver_webhooks",
    "idempotency_key",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)
_OURS = frozenset({"content-type", "idempotency-key", "webhook-id", "webhook-timestamp"})


class WebhookRecommend(BaseModel):
    """``recommend: {block, n}`` of a destination: a block's top ``n`` items per change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: str
    n: int = Field(6, ge=1, le=100)


#: person ids -> their recommended item ids (persons without consent left out)
Recommend = Callable[[list[str]], dict[str, list[str]]]


class WebhookDestination(BaseModel):
    """A configured receiver of segment changes (``segments.webhooks.<name>`` in cip.yaml).

    ``secret`` (``whsec_...``, best given as ``${ENV}``) signs the requests;
    without it the workspace keeps one in ``secrets/webhooks/<name>.key``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    batch_size: int = Field(500, ge=1, le=10_000)
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    retry_after_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(None, repr=False)
    #: add ``recommended_items`` (a block's top n, personalisation consent only) to each change
    recommend: WebhookRecommend | None = None

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                secret_key(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(k for k in v if k.lower() in _OURS or k.lower() == "webhook-signature")
        if clash:
            raise ValueError(f"headers {clash} are set by the sender (signature, ids)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {v[:30]!r}")
        return v


@dataclass
class DeliveryReport:
    """Outcome for one destination, segment and build (counts only)."""

    destination: str
    segment: str
    as_of: dt.datetime
    batches: int = 0
    delivered: int = 0
    already_delivered: int = 0
    empty: int = 0
    failed: int = 0
    requests: int = 0
    changes_sent: int = 0
    recommended: int = 0  # changes sent with recommended_items (destinations with recommend)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def idempotency_key(
    destination: str, segment: str, as_of: dt.datetime, digest: str, batch_index: int
) -> str:
    """The deterministic key of one batch."""
    raw = f"{destination}|{segment}|{as_of.isoformat()}|{digest}|{batch_index}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def deliver_webhooks(
    store: Store,
    definitions: Sequence[SegmentDefinition],
    destinations: Mapping[str, WebhookDestination],
    as_of: Any = None,
    *,
    secrets_dir: str | os.PathLike[str] | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    seed: int | None = None,
    recommend: Mapping[str, Recommend | None] | None = None,
) -> list[DeliveryReport]:
    """Send the changes of every segment with a ``webhook`` to its destination.

    With ``as_of`` only that build is sent; otherwise each segment's latest
    build plus every earlier build with batches still undelivered. Requests
    are signed with the destination's ``secret``, else with the one kept in
    ``secrets_dir`` (``<name>.key``, made on first use); a destination with
    neither is a ConfigError (nothing is sent unsigned).

    ``recommend`` maps a destination with ``recommend: {block, n}`` to a
    function of person ids -> item ids (it must leave out persons without
    consent to personalisation); every change of that destination carries
    ``recommended_items`` (``null`` for a person it has none for, and for
    everyone when the destination's entry is ``None``, e.g. no fitted blocks).
    """
    ensure_tables(store, (DELIVERIES, BATCHES))
    rng = random.Random(seed)
    own = client is None
    http = client or httpx.Client()
    reports = []
    try:
        for d in definitions:
            if not d.webhook:
                continue
            if d.webhook not in destinations:
                raise ConfigError(f"segment {d.name!r}: unknown webhook {d.webhook!r}")
            dest = destinations[d.webhook]
            secret = _secret(d.webhook, dest, secrets_dir)
            rec = _recommender(d.webhook, dest, recommend)
            for ts, digest in _builds(store, d.webhook, d.name, as_of):
                _plan(store, d.webhook, dest, d.name, ts, digest)
                rep = DeliveryReport(d.webhook, d.name, ts)
                _send(store, http, d, dest, secret, rep, digest, rng, sleep, rec)
                reports.append(rep)
    finally:
        if own:
            http.close()
    return reports


def _recommender(
    name: str, dest: WebhookDestination, recommend: Mapping[str, Recommend | None] | None
) -> Recommend | bool:
    """The destination's item function; ``False`` without ``recommend:``, ``True`` for nulls."""
    if dest.recommend is None:
        return False
    fn = (recommend or {}).get(name)
    if fn is None:
        log.warning(
            "webhook %s: no recommendations available (block %s): recommended_items is null",
            name,
            dest.recommend.block,
        )
        return True
    return fn


def _with_items(j: str, items: list[str] | None) -> str:
    """A change's JSON object with ``recommended_items`` appended."""
    return j.rstrip()[:-1] + ', "recommended_items": ' + json.dumps(items) + "}"


def _secret(name: str, dest: WebhookDestination, secrets_dir: str | os.PathLike[str] | None) -> str:
    if dest.secret is not None:
        return dest.secret
    if secrets_dir is None:
        raise ConfigError(
            f"webhook {name!r} has no signing secret: give it secret: ${{ENV}} in cip.yaml "
            "or deliver with the workspace's secrets folder"
        )
    return webhook_secret(secrets_dir, name)


def _builds(store: Store, dest: str, segment: str, as_of: Any) -> list[tuple[dt.datetime, str]]:
    if not store.has_table("segment_builds"):
        return []
    if as_of is not None:
        df = store.sql(
            "SELECT as_of, digest FROM segment_builds WHERE segment = ? "
            "AND as_of = CAST(? AS TIMESTAMP)",
            [segment, to_timestamp(as_of)],
        )
    else:
        df = store.sql(
            "SELECT b.as_of, b.digest FROM segment_builds b WHERE b.segment = ? AND (b.as_of = "
            "(SELECT max(l.as_of) FROM segment_builds l WHERE l.segment = b.segment) OR EXISTS "
            "(SELECT 1 FROM webhook_deliveries w WHERE w.destination = ? AND w.segment = b.segment "
            "AND w.as_of = b.as_of AND w.digest = b.digest AND w.status IN ('pending', 'failed'))) "
            "ORDER BY b.as_of",
            [segment, dest],
        )
    return [(to_timestamp(r.as_of), str(r.digest)) for r in df.itertuples()]


def _plan(
    store: Store,
    dest_name: str,
    dest: WebhookDestination,
    segment: str,
    ts: dt.datetime,
    digest: str,
) -> None:
    """Freeze the batches of one build (once per build digest)."""
    key = [dest_name, segment, ts]
    have = store.sql(
        "SELECT count(*) AS n FROM webhook_deliveries WHERE destination = ? AND segment = ? "
        "AND as_of = CAST(? AS TIMESTAMP) AND digest = ?",
        [*key, digest],
    )["n"].iloc[0]
    if have:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction():
        # a rebuild changed this build's changes: the old plan is stale
        store.execute(
            "DELETE FROM webhook_batches WHERE destination = ? AND segment = ? "
            "AND as_of = CAST(? AS TIMESTAMP)",
            key,
        )
        store.execute(
            "UPDATE webhook_deliveries SET status = 'superseded', updated_at = CAST(? AS TIMESTAMP) "
            "WHERE destination = ? AND segment = ? AND as_of = CAST(? AS TIMESTAMP) "
            "AND status IN ('pending', 'failed')",
            [now, *key],
        )
        store.execute(
            "INSERT INTO webhook_batches (destination, segment, as_of, digest, batch_index, "
            "unified_id, change) SELECT CAST(? AS VARCHAR), segment, as_of, CAST(? AS VARCHAR), "
            "CAST(floor((row_number() OVER (ORDER BY change, unified_id) - 1) / "
            "CAST(? AS DOUBLE PRECISION)) AS BIGINT), unified_id, change FROM segment_changes "
            "WHERE segment = ? AND as_of = CAST(? AS TIMESTAMP)",
            [dest_name, digest, dest.batch_size, segment, ts],
        )
        counts = store.sql(
            "SELECT batch_index, count(*) AS n FROM webhook_batches WHERE destination = ? "
            "AND segment = ? AND as_of = CAST(? AS TIMESTAMP) GROUP BY batch_index "
            "ORDER BY batch_index",
            key,
        )
        if counts.empty:
            return
        idx = counts["batch_index"].astype("int64")
        rows = pd.DataFrame(
            {
                "destination": dest_name,
                "segment": segment,
                "as_of": pd.Series([ts] * len(idx), dtype="datetime64[us]"),
                "digest": digest,
                "batch_index": idx,
                "idempotency_key": [
                    idempotency_key(dest_name, segment, ts, digest, int(i)) for i in idx
                ],
                "n_changes": counts["n"].astype("int64"),
                "status": "pending",
                "attempts": pd.Series([0] * len(idx), dtype="int64"),
                "http_status": pd.Series([None] * len(idx), dtype="Int64"),
                "error": pd.Series([None] * len(idx), dtype="string"),
                "updated_at": pd.Series([now] * len(idx), dtype="datetime64[us]"),
            }
        )
        store.load_arrow("webhook_deliveries", rows)


def _row_json(dialect: str) -> str:
    cols = ["unified_id", "customer_id", "change", "previous_as_of", "score", "model_version"]
    if dialect == "postgres":
        pairs = ", ".join(f"'{c}', r.{c}" for c in cols)
        return f"json_build_object({pairs}, 'contact', r.contact, 'reasons', r.reasons::json)::text"
    pairs = ", ".join(f"{c} := r.{c}" for c in cols)
    return (
        f"CAST(to_json(struct_pack({pairs}, contact := r.contact, "
        "reasons := CAST(r.reasons AS JSON))) AS VARCHAR)"
    )


def _payload_rows(
    store: Store, d: SegmentDefinition, dest: str, ts: dt.datetime, digest: str, batches: list[int]
) -> pd.DataFrame:
    assert d.purpose
    select, params, _, _ = member_rows_sql(store, d.name, ts, d.purpose, "all")
    contact = {"email": "email", "sms": "phone", "push": "customer_id"}[d.purpose]
    ph = ", ".join("?" for _ in batches)
    return store.sql(
        f"SELECT wb.batch_index, wb.unified_id, {_row_json(store.dialect)} AS j "
        "FROM webhook_batches wb "
        f"JOIN (SELECT x.*, x.{contact} AS contact FROM ({select}) x) r "
        "ON r.unified_id = wb.unified_id AND r.change = wb.change "
        "WHERE wb.destination = ? AND wb.segment = ? AND wb.as_of = CAST(? AS TIMESTAMP) "
        f"AND wb.digest = ? AND wb.batch_index IN ({ph}) "
        "ORDER BY wb.batch_index, wb.change, wb.unified_id",
        [*params, dest, d.name, ts, digest, *batches],
    )


def _send(
    store: Store,
    http: httpx.Client,
    d: SegmentDefinition,
    dest: WebhookDestination,
    secret: str,
    rep: DeliveryReport,
    digest: str,
    rng: random.Random,
    sleep: Callable[[float], None],
    rec: Recommend | bool = False,
) -> None:
    log_rows = store.sql(
        "SELECT batch_index, idempotency_key, status, attempts FROM webhook_deliveries "
        "WHERE destination = ? AND segment = ? AND as_of = CAST(? AS TIMESTAMP) AND digest = ? "
        "ORDER BY batch_index",
        [rep.destination, d.name, rep.as_of, digest],
    )
    rep.batches = len(log_rows)
    rep.already_delivered = int((log_rows["status"].isin(["delivered", "empty"])).sum())
    todo = log_rows[log_rows["status"].isin(["pending", "failed"])]
    if todo.empty:
        return
    rows = _payload_rows(store, d, rep.destination, rep.as_of, digest, todo["batch_index"].tolist())
    if rec is not False:
        uids = [str(u) for u in rows["unified_id"].unique()]
        got = rec(uids) if callable(rec) and uids else {}
        items = [got.get(str(u)) for u in rows["unified_id"]]
        rows = rows.assign(
            j=[_with_items(j, i) for j, i in zip(rows["j"], items, strict=True)],
            has_items=[i is not None for i in items],
        )
    grouped = {int(k): g["j"].tolist() for k, g in rows.groupby("batch_index")}
    recommended = (
        {int(k): int(g["has_items"].sum()) for k, g in rows.groupby("batch_index")}
        if "has_items" in rows
        else {}
    )
    for b in todo.itertuples():
        items = grouped.get(int(b.batch_index), [])
        if not items:
            _record(store, b.idempotency_key, "empty", int(b.attempts), None, None)
            rep.empty += 1
            continue
        head = {
            "type": "segment.changes",
            "destination": rep.destination,
            "segment": d.name,
            "as_of": rep.as_of.isoformat(),
            "purpose": d.purpose,
            "batch_index": int(b.batch_index),
            "batch_count": rep.batches,
            "idempotency_key": b.idempotency_key,
        }
        body = json.dumps(head)[:-1] + ', "changes": [' + ",".join(items) + "]}"
        status, code, err, n = post_batch(
            http, dest, secret, b.idempotency_key, body.encode(), rng, sleep
        )
        rep.requests += n
        _record(store, b.idempotency_key, status, int(b.attempts) + n, code, err)
        if status == "delivered":
            rep.delivered += 1
            rep.changes_sent += len(items)
            rep.recommended += recommended.get(int(b.batch_index), 0)
        else:
            rep.failed += 1
            log.warning(
                "webhook %s: batch %d of segment %s not delivered after %d attempts (%s)",
                rep.destination,
                b.batch_index,
                d.name,
                n,
                err,
            )


def _record(
    store: Store, key: str, status: str, attempts: int, code: int | None, err: str | None
) -> None:
    store.execute(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, http_status = ?, error = ?, "
        "updated_at = CAST(? AS TIMESTAMP) WHERE idempotency_key = ?",
        [status, attempts, code, err, dt.datetime.now(dt.UTC).replace(tzinfo=None), key],
    )
