"""What the policy needs from the store: person states, recent sends, suppression lists.

Consent and contacts come from ``profiles`` (``consent_<purpose>``: the most
recent statement per purpose; no statement = no consent). A person is
*erased* when one of their identifiers is tombstoned (``_tombstones``), and
*suppressed* on a channel when a contact identifier's keyed hash is on the
``message_suppressions`` list for that channel (or ``*``). Hashes use the
workspace salt (:func:`profiles.privacy.hash_identifier`), so neither table
holds an identifier in clear.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import pandas as pd
from cip.activation.policy import CHANNELS, PersonState
from cip.activation.triggers._tables import MESSAGES, SUPPRESSIONS, ensure_trigger_tables
from cip.profiles.contracts import CONSENT_PURPOSES
from cip.profiles.errors import ConfigError
from cip.profiles.privacy import hash_identifier
from cip.profiles.store import Store

__all__ = ["load_people", "erased_ids", "recent_sends", "add_suppression", "TIMEZONE_TRAITS"]

#: Profile columns read as the person's IANA time zone, first present wins.
TIMEZONE_TRAITS: tuple[str, ...] = ("timezone", "time_zone", "tz")
_CONTACTS = ("customer_id", "email", "phone", "loyalty_id")


def _chunks(ids: Sequence[str], n: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(ids), n):
        yield list(ids[i : i + n])


def _in(values: Sequence[str]) -> str:
    return ", ".join("?" for _ in values)


def erased_ids(store: Store, unified_ids: Iterable[str], *, salt: bytes) -> set[str]:
    """The person ids erasure tombstoned (``("unified_id", id)`` hashes in ``_tombstones``)."""
    if not store.has_table("_tombstones"):  # nothing was ever erased: no hashing
        return set()
    by_hash = {hash_identifier("unified_id", u, salt): u for u in {str(x) for x in unified_ids}}
    hit = _hits(store, "_tombstones", set(by_hash), "identifier_hash")
    return {by_hash[h] for h in hit}


def load_people(store: Store, unified_ids: Iterable[str], *, salt: bytes) -> dict[str, PersonState]:
    """The policy state of each person (``known=False`` for persons without a profile;
    ``erased`` for persons whose id or a contact identifier is tombstoned)."""
    ids = sorted({str(u) for u in unified_ids})
    gone = erased_ids(store, ids, salt=salt)
    out = {u: PersonState(unified_id=u, known=False, erased=u in gone) for u in ids}
    if not ids or not store.has_table("profiles"):
        return out
    pcols = set(store.sql("SELECT * FROM profiles WHERE FALSE").columns)
    contacts = [c for c in _CONTACTS if c in pcols]
    consent = [p for p in CONSENT_PURPOSES if f"consent_{p}" in pcols]
    tz_col = next((c for c in TIMEZONE_TRAITS if c in pcols), None)
    cols = ["unified_id", *contacts, *(f"consent_{p}" for p in consent)]
    cols += [tz_col] if tz_col else []
    sel = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' if c in contacts else f'"{c}"' for c in cols)
    frames = [
        store.sql(f"SELECT {sel} FROM profiles WHERE unified_id IN ({_in(chunk)})", chunk)
        for chunk in _chunks(ids)
    ]
    prof = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    hashes: dict[tuple[str, str], str] = {}
    for row in prof.itertuples(index=False):
        for c in contacts:
            v = getattr(row, c)
            if isinstance(v, str) and v:
                hashes[(c, v)] = hash_identifier(c, v, salt)
    tomb = _hits(store, "_tombstones", set(hashes.values()), "identifier_hash")
    supp = _suppressions(store, set(hashes.values()))
    for row in prof.itertuples(index=False):
        rec = row._asdict()
        uid = str(rec["unified_id"])
        mine = {c: rec[c] if isinstance(rec[c], str) and rec[c] else None for c in contacts}
        my_hashes = {hashes[(c, v)] for c, v in mine.items() if v is not None}
        tz = rec.get(tz_col) if tz_col else None
        out[uid] = PersonState(
            unified_id=uid,
            consent={p: rec[f"consent_{p}"] is True for p in consent},
            contacts=mine,
            timezone=tz if isinstance(tz, str) and tz else None,
            erased=bool(my_hashes & tomb) or uid in gone,
            suppressed=frozenset(ch for h in my_hashes for ch in supp.get(h, ())),
            known=True,
        )
    return out


def _hits(store: Store, table: str, hashes: set[str], col: str) -> set[str]:
    if not hashes or not store.has_table(table):
        return set()
    found: set[str] = set()
    for chunk in _chunks(sorted(hashes)):
        df = store.sql(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IN ({_in(chunk)})", chunk)
        found.update(df[col].astype(str))
    return found


def _suppressions(store: Store, hashes: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    if not hashes or not store.has_table(SUPPRESSIONS):
        return out
    for chunk in _chunks(sorted(hashes)):
        df = store.sql(
            f"SELECT channel, identifier_hash FROM {SUPPRESSIONS} "
            f"WHERE identifier_hash IN ({_in(chunk)})",
            chunk,
        )
        for ch, h in zip(df["channel"], df["identifier_hash"], strict=True):
            out[str(h)].add(str(ch))
    return out


def recent_sends(
    store: Store, unified_ids: Iterable[str], since: dt.datetime
) -> dict[tuple[str, str], list[dt.datetime]]:
    """``(unified_id, channel) -> [decided_at, ...]`` of messages sent after ``since``."""
    ids = sorted({str(u) for u in unified_ids})
    out: dict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
    if not ids or not store.has_table(MESSAGES):
        return out
    for chunk in _chunks(ids):
        df = store.sql(
            f"SELECT unified_id, channel, decided_at FROM {MESSAGES} WHERE decision = 'sent' "
            f"AND decided_at > CAST(? AS TIMESTAMP) AND unified_id IN ({_in(chunk)})",
            [since, *chunk],
        )
        for uid, ch, ts in zip(df["unified_id"], df["channel"], df["decided_at"], strict=True):
            out[(str(uid), str(ch))].append(pd.Timestamp(ts).to_pydatetime())
    return out


def add_suppression(
    store: Store,
    channel: str,
    identifier_type: str,
    value: str,
    *,
    salt: bytes,
    reason: str = "",
    now: dt.datetime | None = None,
) -> bool:
    """Put a contact on the suppression list of ``channel`` (``*``: every channel).

    ``value`` must be written as in ``profiles`` (normalised by identity: e-mails
    lower-case, phones in E.164); e-mails are lower-cased and stripped here.
    Returns False when it was already listed.
    """
    if channel != "*" and channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}; expected *, {', '.join(CHANNELS)}")
    if identifier_type not in _CONTACTS:
        raise ConfigError(
            f"unknown identifier type {identifier_type!r}; expected {', '.join(_CONTACTS)}"
        )
    v = value.strip().lower() if identifier_type == "email" else value.strip()
    ensure_trigger_tables(store)
    at = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    n = store.execute(
        f"INSERT INTO {SUPPRESSIONS} VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
        [channel, identifier_type, hash_identifier(identifier_type, v, salt), reason, at],
    )
    return n != 0
