"""Privacy primitives: salted identifier hashes, tombstones, the audit log, PII-safe logging.

* :func:`hash_identifier` — a keyed hash (HMAC-SHA256 with the workspace's
  secret salt) of a *normalised* identifier. Tombstones and logs hold these,
  never the values.
* ``_tombstones(identifier_type, identifier_hash, erased_at)`` — what erasure
  leaves behind, so an old file ingested again does not bring the person back.
* ``_audit_log(ts, actor, action, detail)`` — who did what when and how many
  rows; never identifiers.
* :class:`Suppressor` — recognises, while ingesting, the rows that carry a
  tombstoned identifier (hashes compared in SQL), so they are not loaded again.
* :func:`stated_refusals` — who refused a consent purpose by a statement (no
  statement is not a refusal).
* :class:`RedactingFilter` — a logging filter that masks anything shaped like
  an e-mail address or a phone number, as a last line of defence.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from cip.profiles.store import Store
from cip.profiles.tables import AUDIT_LOG, TOMBSTONES, ensure_tables

__all__ = [
    "load_salt",
    "hash_identifier",
    "hash_values",
    "ensure_privacy_tables",
    "add_tombstones",
    "audit",
    "stated_refusals",
    "RedactingFilter",
    "redact",
]


def load_salt(path: str | os.PathLike[str]) -> bytes:
    """The workspace's secret salt (created on first use, readable by the owner only)."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(p.read_text().strip())


def hash_identifier(identifier_type: str, value: str, salt: bytes) -> str:
    """HMAC-SHA256 of ``type:value`` (the value already normalised), hex, 32 chars."""
    msg = f"{identifier_type}:{value}".encode()
    return hmac.new(salt, msg, hashlib.sha256).hexdigest()[:32]


def hash_values(identifier_type: str, values: list[str], salt: bytes) -> list[str]:
    """:func:`hash_identifier` over distinct values (the caller deduplicates)."""
    return [hash_identifier(identifier_type, v, salt) for v in values]


def ensure_privacy_tables(store: Store) -> None:
    """Create ``_tombstones`` and ``_audit_log`` if missing (schemas in :mod:`profiles.tables`)."""
    ensure_tables(store, TOMBSTONES, AUDIT_LOG)


def add_tombstones(store: Store, hashed: list[tuple[str, str]]) -> int:
    """Record (identifier_type, identifier_hash) pairs; returns how many were new."""
    ensure_privacy_tables(store)
    pairs = sorted(set(hashed))
    if not pairs:
        return 0
    from cip.profiles._person_sql import drop, stage

    now = datetime.now(UTC).replace(tzinfo=None)
    stage(
        store,
        "_new_tombstones",
        pa.table(
            {
                "identifier_type": pa.array([t for t, _ in pairs], pa.string()),
                "identifier_hash": pa.array([h for _, h in pairs], pa.string()),
            }
        ),
    )
    try:
        before = store.count("_tombstones")
        store.execute(
            "INSERT INTO _tombstones SELECT n.identifier_type, n.identifier_hash, "
            "CAST(? AS TIMESTAMP) FROM _new_tombstones n WHERE NOT EXISTS (SELECT 1 FROM "
            "_tombstones t WHERE t.identifier_type = n.identifier_type "
            "AND t.identifier_hash = n.identifier_hash)",
            [now],
        )
        return store.count("_tombstones") - before
    finally:
        drop(store, "_new_tombstones")


def audit(store: Store, action: str, detail: dict[str, Any], actor: str | None = None) -> None:
    """Append to the audit log (``detail`` must hold counts, never identifiers)."""
    ensure_privacy_tables(store)
    who = actor or os.environ.get("CIP_ACTOR") or os.environ.get("USER") or "unknown"
    store.execute(
        "INSERT INTO _audit_log VALUES (?, ?, ?, ?)",
        [datetime.now(UTC).replace(tzinfo=None), who, action, json.dumps(detail, default=str)],
    )


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.:-])(?:\+|00)?\d(?: ?\d){8,14}(?![\w.:-])")


def stated_refusals(store: Any, purpose: str) -> set[str]:
    """Unified ids whose latest statement for ``purpose`` refused it.

    ``profiles`` holds ``consent_<purpose>`` false also for a person who never made a
    statement; such a row has a null ``consent_<purpose>_at`` and is not a refusal. A
    ``profiles`` table without the timestamp column is taken as it is. Empty when
    ``store`` has no ``profiles`` table or no such consent column.
    """
    if not store.has_table("profiles"):
        return set()
    cols = set(store.sql('SELECT * FROM "profiles" LIMIT 0').columns)
    col = f"consent_{purpose}"
    if not {col, "unified_id"} <= cols:
        return set()
    stated = f" AND {col}_at IS NOT NULL" if f"{col}_at" in cols else ""
    df = store.sql(f'SELECT unified_id FROM "profiles" WHERE {col} IS FALSE{stated}')
    return set(df["unified_id"].astype(str))


def redact(text: str) -> str:
    """Mask e-mail addresses and phone-number-like digit runs in ``text``."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class RedactingFilter(logging.Filter):
    """Masks e-mails and phone numbers in every log record passing through."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


def __getattr__(name: str) -> Any:
    if name == "Suppressor":  # imported lazily: it needs the identity normalisers
        from cip.profiles._suppress import Suppressor

        return Suppressor
    raise AttributeError(f"module 'cip.profiles.privacy' has no attribute {name!r}")
