"""Webhook delivery against a local receiver that fails 30 % of requests (and verifies signatures)."""

from __future__ import annotations

import pandas as pd
import pytest
from _segment_data import A1, A2
from _webhook_receiver import Receiver
from cip.activation import (
    SegmentDefinition,
    WebhookDestination,
    build_segments,
    deliver_webhooks,
)
from cip.activation.signing import new_secret

SECRET = new_secret()


def _store_with_many_changes():
    """A1: 300 persons, A2: 300 persons, 200 of them new; u1..u300 all consent to e-mail."""
    from cip.profiles.store import open_store

    store = open_store("duckdb")
    ids1 = [f"u{i:03d}" for i in range(300)]
    ids2 = [f"u{i:03d}" for i in range(200, 500)]
    rows = []
    for as_of, ids in ((A1, ids1), (A2, ids2)):
        rows.append(
            pd.DataFrame(
                {
                    "unified_id": ids,
                    "as_of": pd.Series([as_of] * len(ids), dtype="datetime64[us]"),
                    "monetary": [float(i) for i in range(len(ids))],
                    "rfm_segment": "Loyal",
                }
            )
        )
    store.load_arrow("features_default", pd.concat(rows), mode="replace")
    everyone = [f"u{i:03d}" for i in range(500)]
    store.load_arrow(
        "profiles",
        pd.DataFrame(
            {
                "unified_id": everyone,
                "customer_id": everyone,
                "email": [f"{u}@example.com" for u in everyone],
                # u450..u499 never consented (NULL): never sent
                "consent_email": pd.array([True] * 450 + [None] * 50, "boolean"),
            }
        ),
        mode="replace",
    )
    return store


SEG = SegmentDefinition(
    name="loyal",
    kind="rfm",
    rfm_segments=["Loyal"],
    purpose="email",
    webhook="crm",
    score="monetary",
)


def _dest(url, **kw):
    return {
        "crm": WebhookDestination(url=url, batch_size=40, backoff_base_s=0.001, secret=SECRET, **kw)
    }


def test_every_change_arrives_at_least_once_with_30pct_failures():
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    build_segments(store, [SEG], A2)
    waits = []
    with Receiver(fail_rate=0.3, secret=SECRET) as rx:
        reps = deliver_webhooks(
            store, [SEG], _dest(rx.url, max_attempts=12), sleep=waits.append, seed=1
        )
        reps += deliver_webhooks(store, [SEG], _dest(rx.url), as_of=A1, sleep=waits.append, seed=1)
    expected = {("loyal", "2024-04-01T00:00:00", f"u{i:03d}", "entered") for i in range(300, 450)}
    expected |= {("loyal", "2024-04-01T00:00:00", f"u{i:03d}", "exited") for i in range(200)}
    expected |= {("loyal", "2024-03-01T00:00:00", f"u{i:03d}", "entered") for i in range(300)}
    got = rx.changes()
    assert set(got) == expected and len(got) == len(expected)  # de-duplicated by key
    assert rx.failures > 0.2 * rx.requests and rx.duplicates > 0  # the receiver did fail
    assert rx.rejected == 0  # every request, retries too, carried a valid signature
    # a retried batch keeps its message id: webhook-id is the batch's Idempotency-Key
    ids = [h["webhook-id"] for h, _ in rx.seen]
    assert all(h["webhook-id"] == h["idempotency-key"] for h, _ in rx.seen)
    assert len(set(ids)) == 17 and len(ids) == rx.requests > 17
    assert all(r.failed == 0 for r in reps)
    # A2: 350 changes (150 entered + 200 exited with consent, 50 without) -> 10 batches of 40
    a2 = next(r for r in reps if r.as_of == A2.to_pydatetime())
    assert (a2.batches, a2.delivered, a2.empty) == (10, 9, 1)
    assert a2.changes_sent == 350 and a2.requests > a2.delivered
    assert waits and all(0 <= w <= 0.001 * 2**11 for w in waits)  # jittered backoff, capped
    body = next(iter(rx.by_key.values()))
    row = body["changes"][0]
    assert set(row) == {
        "unified_id",
        "customer_id",
        "change",
        "previous_as_of",
        "score",
        "model_version",
        "contact",
        "reasons",
    }
    assert row["contact"] == f"{row['unified_id']}@example.com" and row["reasons"] == [
        "RFM segment Loyal"
    ]
    log = store.sql("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY 1 ORDER BY 1")
    assert log.to_dict("list") == {"status": ["delivered", "empty"], "n": [9 + 8, 1]}


def test_rerun_resends_only_undelivered_batches():
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    with Receiver(fail_rate=0.3, seed=3) as rx:
        first = deliver_webhooks(store, [SEG], _dest(rx.url, max_attempts=1), sleep=lambda s: None)
        assert first[0].failed > 0 and first[0].delivered > 0  # 8 batches, some failed once
        delivered_before = set(rx.by_key)
        n_before = rx.requests
        rx.fail_rate = 0.0
        second = deliver_webhooks(store, [SEG], _dest(rx.url), sleep=lambda s: None)
        assert second[0].already_delivered == first[0].delivered
        assert second[0].delivered == first[0].failed
        assert rx.requests - n_before == first[0].failed  # nothing delivered is sent again
        assert delivered_before < set(rx.by_key) and len(rx.by_key) == 8
        third = deliver_webhooks(store, [SEG], _dest(rx.url), sleep=lambda s: None)
        assert third[0].requests == 0 and third[0].already_delivered == 8
    assert sorted(u for _, _, u, _ in rx.changes()) == [f"u{i:03d}" for i in range(300)]


def test_refused_batches_fail_without_retry_and_withdrawn_consent_is_not_sent():
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    with Receiver(fail_rate=0.0) as rx:
        rx.refuse = True
        rep = deliver_webhooks(store, [SEG], _dest(rx.url), sleep=lambda s: None)[0]
        assert rep.failed == 8 and rx.requests == 8  # a 400 is not retried
        errors = store.sql("SELECT DISTINCT error, http_status FROM webhook_deliveries")
        assert errors.to_dict("list") == {"error": ["HTTP 400"], "http_status": [400]}
        # u000..u039 (batch 0) withdraw consent before the retry: they are never sent
        store.execute("UPDATE profiles SET consent_email = FALSE WHERE unified_id < 'u040'")
        rx.refuse = False
        rep = deliver_webhooks(store, [SEG], _dest(rx.url), sleep=lambda s: None)[0]
        assert (rep.delivered, rep.empty) == (7, 1)
    assert sorted(u for _, _, u, _ in rx.changes()) == [f"u{i:03d}" for i in range(40, 300)]


def test_network_errors_are_retried_then_logged(tmp_path):
    store = _store_with_many_changes()
    build_segments(store, [SEG], A1)
    dest = _dest("http://127.0.0.1:9/nothing-listens-here", max_attempts=2, timeout_s=0.5)
    rep = deliver_webhooks(store, [SEG], dest, sleep=lambda s: None)[0]
    assert rep.failed == 8 and rep.requests == 16
    assert set(store.sql("SELECT status FROM webhook_deliveries")["status"]) == {"failed"}


def test_webhook_needs_a_purpose():
    with pytest.raises(ValueError, match="webhook needs a purpose"):
        SegmentDefinition(name="x", kind="rfm", rfm_segments=["Loyal"], webhook="crm")
