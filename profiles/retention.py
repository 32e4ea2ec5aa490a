"""Retention: no table keeps rows longer than its configured maximum age.

A *policy* maps a retention key to a maximum age in days. Each key covers one
or more physical tables and the column that dates a row:

==============  =================================================  =============================
key             tables                                             dated by
==============  =================================================  =============================
``customers``   ``customers``                                      ``ts`` (else ``ingested_at``)
``orders``      orders-only sources (``_orders_src``), ``order_lines``   ``ts``
``events``      ``events``                                         ``ts``
``quarantine``  ``quarantine``                                     ``ingested_at``
``features``    every feature table (``features_*``)               ``as_of``
``scores``      ``scores``                                         ``as_of``
``segments``    ``segment_members``, ``segment_changes``,           ``as_of``
                ``segment_builds``, ``webhook_batches``,
                ``webhook_deliveries``
==============  =================================================  =============================

A row is expired when its date is older than ``now - days``. :func:`apply_retention`
deletes the expired rows of every covered table in **one transaction** (all or
nothing) and also drops the identity resolver's bookkeeping of deleted raw
records (``_identity_records``, ``record_map``), so nothing points at a record
that is gone. What identity resolution learnt from them (which identifiers
belong together, ``identity_map`` / ``identity_links``) stays until
``cip unify --full`` recomputes the graph from the records that are left.

Ingestion honours the same policy (:func:`cutoffs` gives ``ingest_source`` its
``expire_before``), so re-ingesting an old export does not bring expired rows back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cip.profiles.errors import ConfigError
from cip.profiles.sql import quote_ident
from cip.profiles.store import ORDERS_SRC, Store

__all__ = [
    "RETENTION_TABLES",
    "RetentionReport",
    "apply_retention",
    "cutoffs",
    "check_policy",
    "ingest_cutoff",
]

#: retention key -> ((physical table, date expression), ...); ``features`` is found at run time
RETENTION_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (("customers", "coalesce(ts, ingested_at)"),),
    "orders": ((ORDERS_SRC, "ts"), ("order_lines", "ts")),
    "events": (("events", "ts"),),
    "quarantine": (("quarantine", "ingested_at"),),
    "features": (),
    "scores": (("scores", "as_of"),),
    "segments": (
        ("segment_members", "as_of"),
        ("segment_changes", "as_of"),
        ("segment_builds", "as_of"),
        ("webhook_batches", "as_of"),
        ("webhook_deliveries", "as_of"),
    ),
}

#: a source's target table -> the retention key that dates its rows
_KEY_OF_TARGET = {
    "customers": "customers",
    "orders": "orders",
    "order_lines": "orders",
    "events": "events",
}

#: raw retention keys -> the ``source_table`` name the identity resolver records them under
_IDENTITY_SOURCE = {"customers": "customers", "orders": "orders", "events": "events"}
_FEATURE_TABLE = re.compile(r"^features_[A-Za-z0-9_]+$")


@dataclass
class RetentionReport:
    """What :func:`apply_retention` deleted (counts per physical table, no values)."""

    now: datetime
    cutoffs: dict[str, datetime]
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "cutoffs": {k: v.isoformat() for k, v in self.cutoffs.items()},
            "deleted": dict(self.deleted),
            "total": self.total,
        }


def check_policy(policy: dict[str, int]) -> dict[str, int]:
    """Validate a policy: known keys, whole positive day counts; returns it unchanged."""
    unknown = sorted(set(policy) - set(RETENTION_TABLES))
    if unknown:
        raise ConfigError(
            f"retention: unknown table {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(RETENTION_TABLES)}"
        )
    bad = {k: v for k, v in policy.items() if not isinstance(v, int) or v <= 0}
    if bad:
        raise ConfigError(f"retention: maximum ages must be positive whole days, got {bad}")
    return policy


def cutoffs(policy: dict[str, int], now: datetime | None = None) -> dict[str, datetime]:
    """Retention key -> the oldest date still kept (naive UTC, as the store holds times)."""
    check_policy(policy)
    ref = _naive_utc(now)
    return {k: ref - timedelta(days=days) for k, days in policy.items()}


def ingest_cutoff(limits: dict[str, datetime], target_table: str) -> datetime | None:
    """The cut-off (from :func:`cutoffs`) for rows a source loads into ``target_table``."""
    key = _KEY_OF_TARGET.get(target_table)
    return limits.get(key) if key else None


def _naive_utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(tzinfo=None)
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now


def _tables(store: Store, key: str) -> list[tuple[str, str]]:
    if key == "features":
        return [
            (t, "as_of")
            for t in sorted(store.table_names())
            if _FEATURE_TABLE.match(t) and "as_of" in _columns(store, t)
        ]
    return [(t, col) for t, col in RETENTION_TABLES[key] if store.has_table(t)]


def _columns(store: Store, table: str) -> set[str]:
    return set(store.sql(f"SELECT * FROM {quote_ident(table)} LIMIT 0").columns)


def apply_retention(
    store: Store, policy: dict[str, int], *, now: datetime | None = None
) -> RetentionReport:
    """Delete every row older than its table's maximum age, in one transaction.

    Parameters
    ----------
    store:
        The workspace store (DuckDB or PostgreSQL).
    policy:
        Retention key -> maximum age in days (see the module docstring); keys
        not in the policy are kept forever.
    now:
        The reference time (default: the current UTC time).

    Returns
    -------
    RetentionReport
        The cut-off per key and the rows deleted per physical table (0 included).
    """
    limits = cutoffs(policy, now)
    report = RetentionReport(_naive_utc(now), limits)
    with store.transaction():
        for key, cutoff in limits.items():
            for table, col in _tables(store, key):
                report.deleted[table] = store.execute(
                    f"DELETE FROM {quote_ident(table)} WHERE {col} < ?", [cutoff]
                )
        _forget_identity_records(store, [k for k in limits if k in _IDENTITY_SOURCE], report)
    return report


def _forget_identity_records(store: Store, keys: list[str], report: RetentionReport) -> None:
    """Drop the resolver's rows of raw records that no longer exist."""
    for bookkeeping in ("_identity_records", "record_map"):
        if not keys or not store.has_table(bookkeeping):
            continue
        n = 0
        for key in keys:
            src = _IDENTITY_SOURCE[key]
            n += store.execute(
                f"DELETE FROM {bookkeeping} WHERE source_table = '{src}' AND NOT EXISTS "
                f"(SELECT 1 FROM {src} x WHERE x.record_id = {bookkeeping}.record_id)"
            )
        report.deleted[bookkeeping] = n
