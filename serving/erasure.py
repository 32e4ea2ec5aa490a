"""Erasure as the service sees it: a set of keyed hashes it refuses to serve.

Three inputs, merged into one :class:`ErasureIndex`:

* the store's ``_tombstones(identifier_type, identifier_hash)`` and
  ``erased(unified_id)`` tables (read at each reload);
* the erasure journal (``serving/erasures.jsonl`` in the workspace): lines of
  ``{"type", "hash"}`` appended by :func:`record_erasure` — by ``cip forget``
  or the ``/admin/forget`` endpoint. Every worker watches its modification
  time each second, so an erasure takes effect in every process at once,
  without waiting for the store's writer lock.

Hashes are :func:`profiles.privacy.hash_identifier` of the normalised value
with the workspace salt; the journal never holds a raw identifier.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cip.profiles.privacy import hash_identifier

__all__ = ["ErasureIndex", "record_erasure", "normalise_id"]

log = logging.getLogger(__name__)


def normalise_id(value: str) -> str:
    """Ids (customer, anonymous, unified) are compared trimmed."""
    return str(value).strip()


class ErasureIndex:
    """Membership test: was ``(type, value)`` erased?"""

    def __init__(self, salt: bytes, hashes: Iterable[tuple[str, str]] = ()) -> None:
        self.salt = salt
        self.hashes: frozenset[tuple[str, str]] = frozenset(hashes)

    def __len__(self) -> int:
        return len(self.hashes)

    def hash(self, kind: str, value: str) -> tuple[str, str]:
        return kind, hash_identifier(kind, normalise_id(value), self.salt)

    def is_erased(self, kind: str, value: str | None) -> bool:
        if value is None or not self.hashes:
            return False
        return self.hash(kind, value) in self.hashes

    def erased_values(self, kind: str, values: Iterable[str]) -> list[str]:
        """The ``values`` of type ``kind`` that were erased."""
        if not self.hashes:
            return []
        return [v for v in values if self.hash(kind, v) in self.hashes]

    def merged(self, more: Iterable[tuple[str, str]]) -> ErasureIndex:
        return ErasureIndex(self.salt, self.hashes | frozenset(more))


def read_journal(path: str | os.PathLike[str]) -> set[tuple[str, str]]:
    """The ``(type, hash)`` pairs of the journal (a missing file is empty)."""
    p = Path(path)
    if not p.exists():
        return set()
    out: set[tuple[str, str]] = set()
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.add((str(d["type"]), str(d["hash"])))
        except (ValueError, KeyError, TypeError):
            log.warning("erasure journal %s: line %d is not valid, skipped", p.name, n)
    return out


def record_erasure(
    journal: str | os.PathLike[str],
    salt: bytes,
    *,
    unified_ids: Iterable[str] = (),
    identifiers: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Append erased people to the journal (hashes only; fsync'ed); returns the pairs.

    Args:
        journal: the journal file (``ServingSettings.erasure_journal``).
        salt: the workspace salt.
        unified_ids: erased profile ids.
        identifiers: erased ``(type, value)`` identifiers (``customer_id``,
            ``anonymous_id``...), values already normalised as in the store.
    """
    pairs = [("unified_id", u) for u in unified_ids] + list(identifiers)
    hashed = [(t, hash_identifier(t, normalise_id(v), salt)) for t, v in pairs]
    if not hashed:
        return []
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    data = "".join(json.dumps({"type": t, "hash": h, "at": now}) + "\n" for t, h in hashed)
    p = Path(journal)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashed
