"""Privacy primitives: keyed hashes, tombstones, audit log, log redaction."""

from __future__ import annotations

import logging

from cip.profiles.privacy import (
    RedactingFilter,
    add_tombstones,
    audit,
    hash_identifier,
    load_salt,
    redact,
)
from cip.profiles.store import open_store


def test_salt_is_created_once_and_private(tmp_path) -> None:
    p = tmp_path / "salt"
    s1, s2 = load_salt(p), load_salt(p)
    assert s1 == s2 and len(s1) == 32 and (p.stat().st_mode & 0o777) == 0o600
    h = hash_identifier("email", "ann@example.com", s1)
    assert h == hash_identifier("email", "ann@example.com", s1) and len(h) == 32
    assert h != hash_identifier("email", "ann@example.com", load_salt(tmp_path / "other"))
    assert h != hash_identifier("phone", "ann@example.com", s1)


def test_tombstones_are_deduplicated_and_audit_holds_no_values() -> None:
    store = open_store("duckdb")
    assert add_tombstones(store, [("email", "h1"), ("phone", "h2")]) == 2
    assert add_tombstones(store, [("email", "h1")]) == 0
    audit(store, "forget", {"rows_deleted": 3}, actor="ops")
    row = store.sql("SELECT actor, action, detail FROM _audit_log").iloc[0]
    assert (row.actor, row.action, row.detail) == ("ops", "forget", '{"rows_deleted": 3}')


def test_redaction_masks_emails_and_phones_but_not_dates_or_counts() -> None:
    text = (
        "mail Ann.Lee+x@Example.co.uk tel +44 7700 900123 or 07700900123; "
        "at 2024-01-01 10:00:00 loaded 10000000 rows, run u_0123456789abcdef"
    )
    assert redact(text) == (
        "mail <email> tel <phone> or <phone>; at 2024-01-01 10:00:00 "
        "loaded 10000000 rows, run u_0123456789abcdef"
    )


def test_redacting_filter_rewrites_log_records(caplog) -> None:
    log = logging.getLogger("cip.test.redact")
    log.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="cip.test.redact"):
        log.info("erased %s", "bob@example.com")
    assert caplog.messages == ["erased <email>"]
