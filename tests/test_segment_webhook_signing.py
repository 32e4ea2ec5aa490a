"""Signed webhooks (Standard Webhooks), their secrets and Retry-After.

The official ``standardwebhooks`` library is the reference: it must verify our
signatures, and our verifier must agree with it on what is rejected.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import stat
import time

import httpx
import pytest
from _segment_data import A1
from _webhook_receiver import Receiver
from cip.activation import (
    SignatureError,
    WebhookDestination,
    build_segments,
    deliver_webhooks,
    retry_after_seconds,
    verify_signature,
    webhook_secret,
)
from cip.activation.signing import new_secret, secret_key, sign, signature_headers
from cip.pipelines.cli import main
from cip.profiles.errors import ConfigError
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from test_segment_webhooks import SEG, _store_with_many_changes

BODY = b'{"type": "segment.changes", "changes": [{"unified_id": "u001"}]}'


def test_our_signatures_are_the_official_librarys():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    ts = int(time.time())
    official = Webhook(secret)
    at = dt.datetime.fromtimestamp(ts, dt.UTC)
    assert sign(secret, "msg_1", ts, BODY) == official.sign("msg_1", at, BODY.decode())
    headers = signature_headers(secret, "msg_1", BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert official.verify(BODY, headers) == json.loads(BODY)
    verify_signature(secret, {k.upper(): v for k, v in headers.items()}, BODY)  # any case
    # a rotated secret: several signatures, one match is enough (for both verifiers)
    other = sign(new_secret(), "msg_1", int(headers["webhook-timestamp"]), BODY)
    rotated = {**headers, "webhook-signature": f"{other} {headers['webhook-signature']}"}
    official.verify(BODY, rotated)
    verify_signature(secret, rotated, BODY)


def _rejected_by_both(secret: str, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(SignatureError) as exc:
        verify_signature(secret, headers, body)
    return str(exc.value)


def test_tampered_body_wrong_secret_and_stale_timestamps_are_rejected():
    secret = new_secret()
    good = signature_headers(secret, "msg_1", BODY)
    tampered = BODY.replace(b"u001", b"u002")
    assert "changed body" in _rejected_by_both(secret, good, tampered)
    assert "wrong secret" in _rejected_by_both(new_secret(), good, BODY)
    old = signature_headers(secret, "msg_1", BODY, int(time.time()) - 600)
    assert "old" in _rejected_by_both(secret, old, BODY)
    future = signature_headers(secret, "msg_1", BODY, int(time.time()) + 600)
    assert "future" in _rejected_by_both(secret, future, BODY)
    other_id = {**good, "webhook-id": "msg_2"}  # the id is signed too
    _rejected_by_both(secret, other_id, BODY)
    missing = {k: v for k, v in good.items() if k != "webhook-signature"}
    assert "missing" in _rejected_by_both(secret, missing, BODY)
    with pytest.raises(SignatureError, match="unix seconds"):
        verify_signature(secret, {**good, "webhook-timestamp": "yesterday"}, BODY)


def test_secret_files_are_made_once_owner_only_and_checked(tmp_path):
    folder = tmp_path / "secrets" / "webhooks"
    s1 = webhook_secret(folder, "crm")
    path = folder / "crm.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webhook_secret(folder, "crm") == s1 and len(secret_key(s1)) == 32
    assert webhook_secret(folder, "shop-2.eu") != s1  # one secret per destination
    with pytest.raises(ConfigError, match="webhook name"):
        webhook_secret(folder, "../escape")
    path.write_text("whsec_not base64!\n")
    with pytest.raises(ConfigError, match="crm.key: a webhook secret must be whsec_ followed by"):
        webhook_secret(folder, "crm")
    with pytest.raises(ConfigError, match="24 to 64 bytes, this one has 3"):
        secret_key("whsec_YWJj")


def test_configured_secrets_are_validated_and_never_shown():
    secret = new_secret()
    dest = WebhookDestination(url="https://example.com/hook", secret=secret)
    assert secret not in repr(dest) and secret[6:] not in str(dest)
    with pytest.raises(ValidationError, match="must start with 'whsec_'") as exc:
        WebhookDestination(url="https://example.com/hook", secret="hunter2-secret")
    assert "hunter2" not in str(exc.value).split("[type=")[0]  # the message never quotes it
    with pytest.raises(ValidationError, match="set by the sender"):
        WebhookDestination(url="https://example.com/hook", headers={"Webhook-Signature": "x"})


def test_every_request_verifies_and_tampered_or_stale_replays_are_refused(tmp_path):
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    folder = tmp_path / "secrets" / "webhooks"
    dest = {"crm": WebhookDestination(url="http://127.0.0.1:1/x", batch_size=40)}
    with pytest.raises(ConfigError, match="webhook 'crm' has no signing secret"):
        deliver_webhooks(store, [SEG], dest)
    secret = webhook_secret(folder, "crm")  # what `cip segments webhook-secret crm` prints
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        dest = {"crm": WebhookDestination(url=rx.url, batch_size=40)}
        rep = deliver_webhooks(store, [SEG], dest, secrets_dir=folder)[0]
        assert (rep.delivered, rep.failed, rx.rejected, len(rx.by_key)) == (8, 0, 0, 8)
        headers, body = rx.seen[0]
        send = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        assert httpx.post(rx.url, content=body, headers=send).status_code == 200  # a replay
        forged = body.replace(b'"change":"entered"', b'"change":"exited"', 1)
        assert forged != body
        assert httpx.post(rx.url, content=forged, headers=send).status_code == 401
        stale = signature_headers(secret, send["webhook-id"], body, int(time.time()) - 400)
        assert httpx.post(rx.url, content=body, headers=stale).status_code == 401
        assert rx.rejected == 2 and rx.duplicates == 1
    # a receiver holding another secret refuses every batch; a 401 is not retried
    store.execute("DELETE FROM webhook_deliveries")
    with Receiver(fail_rate=0.0, secret=new_secret()) as rx:
        dest = {"crm": WebhookDestination(url=rx.url, batch_size=40)}
        rep = deliver_webhooks(store, [SEG], dest, secrets_dir=folder)[0]
        assert (rep.failed, rx.requests, rx.rejected, len(rx.by_key)) == (8, 8, 8, 0)


def test_retry_after_reads_seconds_and_http_dates():
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0  # past: now
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:05 -0000", now) == 5.0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(bad, now) is None


def test_retry_after_is_honoured_then_capped_over_http(tmp_path):
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    secret = new_secret()
    when = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True
    )
    waits: list[float] = []
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        rx.answers = [(503, {"Retry-After": "2"}), (429, {"Retry-After": when})]
        dest = {"crm": WebhookDestination(url=rx.url, batch_size=40, secret=secret)}
        rep = deliver_webhooks(store, [SEG], dest, sleep=waits.append)[0]
        assert rep.delivered == 8 and rep.requests == 10 and rx.rejected == 0
        assert waits[0] == 2.0 and 25 <= waits[1] <= 30 and len(waits) == 2
        # asked to wait an hour (more than retry_after_max_s): this run stops trying that batch
        store.execute("DELETE FROM webhook_deliveries")
        rx.answers = [(429, {"Retry-After": "3600"})]
        waits.clear()
        dest = {"crm": WebhookDestination(url=rx.url, batch_size=40, secret=secret)}
        rep = deliver_webhooks(store, [SEG], dest, sleep=waits.append)[0]
        assert (rep.failed, rep.delivered, rep.requests, waits) == (1, 7, 8, [])
    err = store.sql("SELECT error FROM webhook_deliveries WHERE status = 'failed'")["error"]
    assert err.tolist() == ["HTTP 429, Retry-After 3600 s"]


CONFIG = """\
version: 1
segments:
  include_defaults: true
  definitions:
    - {name: big, kind: rule, purpose: email, webhook: crm,
       conditions: [{field: monetary, op: ">=", value: 800}]}
  webhooks:
    crm: {url: "https://crm.example.com/hook"}
    erp: {url: "https://erp.example.com/hook", secret: "${CIP_TEST_ERP_SECRET}"}
"""


def test_cli_shows_each_destinations_secret(tmp_workspace, capsys, monkeypatch):
    env_secret = new_secret()
    monkeypatch.setenv("CIP_TEST_ERP_SECRET", env_secret)
    tmp_workspace.config_path.write_text(CONFIG)
    root = str(tmp_workspace.root)

    def run(*args):
        capsys.readouterr()
        code = main(["--workspace", root, "segments", "webhook-secret", *args])
        return code, capsys.readouterr()

    code, cap = run("crm")
    key = tmp_workspace.root / "secrets" / "webhooks" / "crm.key"
    assert code == 0 and cap.out.strip() == key.read_text().strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(secret_key(cap.out.strip())) == 32
    assert run("crm")[1].out == cap.out  # stable
    code, cap = run("erp")
    assert code == 0 and cap.out.strip() == env_secret
    assert not (key.parent / "erp.key").exists()  # the configured secret wins
    code, cap = run("nope")
    assert code != 0 and cap.err.count("\n") == 1
    assert "no webhook named 'nope'" in cap.err and "crm, erp" in cap.err
    tmp_workspace.config_path.write_text(CONFIG.replace("    erp:", "    e/rp:"))
    code, cap = run("crm")
    assert code != 0 and "webhook name 'e/rp'" in cap.err
