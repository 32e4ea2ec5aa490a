"""Erasure (right to be forgotten): remove persons from every table of the store at once.

:func:`erase_persons` resolves the request through the identity graph
(:mod:`profiles._person`): an e-mail finds the person, whose every identifier
and every record of ``record_map`` is then erased. In **one transaction** and
with set-based SQL only, it deletes

* the person's raw records (``customers``, orders and their lines, ``events``)
  and quarantined rows holding any of their identifiers (raw or normalised);
* their identity graph (``identity_map`` nodes, ``identity_links``, blocked
  entries, ``identity_history``, forbidden links, ``_identity_records``,
  ``record_map``) and ``profiles``;
* every row keyed by their unified ids in any other table (``features_*``,
  labels, ``scores``, ``segment_members``, ``segment_changes``,
  ``webhook_batches``, ...);

removes their identifier values from records of *other* persons that carry
them (set to NULL), adds tombstones (keyed hashes of the normalised values and
of every spelling seen, never the values) so re-ingesting an old file does not
bring them back (see :class:`profiles.privacy.Suppressor`), and appends an
audit row of counts. A final scan counts any value left in any text column.

Deleted rows stay in DuckDB's free blocks until the file is rewritten:
:func:`rewrite_duckdb` copies the database to a fresh file and swaps it in.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cip.profiles._compact import rewrite_duckdb, vacuum_postgres
from cip.profiles._person import TEMP_TABLES, PersonPlan, carries, plan_persons
from cip.profiles._person_sql import (
    ID_KINDS,
    base_tables,
    columns_of,
    drop,
    text_columns,
    values_withheld,
)
from cip.profiles.identity.normalise import phone_clean_sql, phone_digits_sql
from cip.profiles.identity.options import IdentityOptions
from cip.profiles.privacy import add_tombstones, audit, ensure_privacy_tables, hash_identifier
from cip.profiles.sql import quote_ident, quote_literal
from cip.profiles.store import Store

__all__ = ["ErasureReport", "erase_persons", "rewrite_duckdb", "vacuum_postgres", "leftovers"]

log = logging.getLogger(__name__)

_RAW = ("customers", "events", "_orders_src", "order_lines")
_OWN = {"_tombstones", "_audit_log"}


@dataclass
class ErasureReport:
    """What one erasure did: counts only (the values never leave the store)."""

    erasure_id: str
    persons: int
    former_ids: int
    identifiers: dict[str, int]
    rows_deleted: dict[str, int]
    values_removed: dict[str, int]  # rows of other persons that held an erased value
    tombstones_added: int
    already_erased: int
    leftovers: dict[str, int] = field(default_factory=dict)
    #: counts returned by the ``on_erased`` hook (online store, files), no identifiers
    cleanup: dict[str, Any] = field(default_factory=dict)
    #: in memory only, for the online store and the serving journal (never logged)
    _unified_ids: list[str] = field(default_factory=list, repr=False)
    _identifiers: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_unified_ids")
        d.pop("_identifiers")
        d["rows_total"] = sum(self.rows_deleted.values())
        return d

    @property
    def unified_ids(self) -> list[str]:
        return list(self._unified_ids)

    @property
    def identifiers_erased(self) -> list[tuple[str, str]]:
        return list(self._identifiers)


def _run(store: Store, counts: dict[str, int], label: str, sql: str) -> None:
    n = store.execute(sql)
    if n > 0:
        counts[label] = counts.get(label, 0) + n


def _null_out(store: Store, table: str, counts: dict[str, int]) -> None:
    """Remove erased values from the remaining rows (records of other persons)."""
    sets = ", ".join(
        f"{k} = CASE WHEN CAST({k} AS VARCHAR) IN (SELECT raw FROM _er_raw WHERE kind = '{k}') "
        f"THEN NULL ELSE {k} END"
        for k in ID_KINDS
    )
    _run(store, counts, table, f"UPDATE {table} SET {sets} WHERE {carries(table)}")


def _raw_tables(store: Store, deleted: dict[str, int], nulled: dict[str, int]) -> None:
    rec = "SELECT record_id FROM _er_rec WHERE source_table = '{}'"
    keep = "m.unified_id NOT IN (SELECT unified_id FROM _er_uids)"
    has_map = store.has_table("record_map")
    store.execute(
        "CREATE TEMP TABLE _er_keep AS SELECT DISTINCT o.source, o.order_id FROM orders o "
        + (
            f"JOIN record_map m ON m.source_table = 'orders' AND m.record_id = o.record_id WHERE {keep}"
            if has_map
            else "WHERE FALSE"
        )
    )
    for t in ("customers", "events"):
        _run(store, deleted, t, f"DELETE FROM {t} WHERE record_id IN ({rec.format(t)})")
        _null_out(store, t, nulled)
    _run(
        store,
        deleted,
        "orders",
        f"DELETE FROM _orders_src WHERE record_id IN ({rec.format('orders')})",
    )
    _null_out(store, "_orders_src", nulled)
    in_orders = "EXISTS (SELECT 1 FROM {t} o WHERE o.source = l.source AND o.order_id = l.order_id)"
    _run(
        store,
        deleted,
        "order_lines",
        f"DELETE FROM order_lines l WHERE {in_orders.format(t='_er_orders')} OR "
        f"(({carries('l')}) AND NOT {in_orders.format(t='_er_keep')})",
    )
    _null_out(store, "order_lines", nulled)
    drop(store, "_er_keep")


def _identity(store: Store, deleted: dict[str, int]) -> None:
    nodes = "(SELECT node_id FROM _er_nodes)"
    uids = "(SELECT unified_id FROM _er_uids)"
    recs = "EXISTS (SELECT 1 FROM _er_rec e WHERE e.source_table = {a}.source_table AND e.record_id = {a}.record_id)"
    if store.has_table("_identity_records"):
        _run(
            store,
            deleted,
            "_identity_records",
            "DELETE FROM _identity_records r WHERE " + recs.format(a="r"),
        )
        for k in ID_KINDS:
            store.execute(f"UPDATE _identity_records SET n_{k} = NULL WHERE n_{k} IN {nodes}")
    if store.has_table("record_map"):
        _run(
            store,
            deleted,
            "record_map",
            f"DELETE FROM record_map m WHERE unified_id IN {uids} OR " + recs.format(a="m"),
        )
    if store.has_table("identity_map"):
        _run(store, deleted, "identity_map", f"DELETE FROM identity_map WHERE node_id IN {nodes}")
    if store.has_table("identity_links"):
        _run(
            store,
            deleted,
            "identity_links",
            f"DELETE FROM identity_links WHERE node_a IN {nodes} OR node_b IN {nodes}",
        )
        for c in ("evidence_record_id", "evidence_pair_record_id"):
            store.execute(
                f"UPDATE identity_links SET {c} = NULL WHERE {c} IN (SELECT record_id FROM _er_rec)"
            )
    if store.has_table("identity_blocked"):
        _run(
            store,
            deleted,
            "identity_blocked",
            f"DELETE FROM identity_blocked WHERE node_id IN {nodes}",
        )
        _blocked_lists(store)
    if store.has_table("identity_history"):
        _run(
            store,
            deleted,
            "identity_history",
            f"DELETE FROM identity_history h WHERE unified_id IN {uids} OR other_id IN {uids} "
            "OR evidence_record_id IN (SELECT record_id FROM _er_rec) OR EXISTS (SELECT 1 FROM "
            "_er_ids i WHERE i.kind = h.identifier_type AND i.value = h.identifier_value)",
        )
    if store.has_table("identity_forbidden"):
        refs = "(SELECT kind || ':' || value FROM _er_ids)"
        _run(
            store,
            deleted,
            "identity_forbidden",
            f"DELETE FROM identity_forbidden WHERE a IN {refs} OR b IN {refs}",
        )


def _blocked_lists(store: Store) -> None:
    """Drop the persons' ids from the comma-separated ``identity_blocked.unified_ids``."""
    for u in store.sql("SELECT unified_id FROM _er_uids")["unified_id"].astype(str):
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", u):
            continue
        store.execute(
            "UPDATE identity_blocked SET unified_ids = trim(BOTH ',' FROM replace(replace("
            f"',' || unified_ids || ',', ',{u},', ','), ',,', ',')) "
            f"WHERE ',' || unified_ids || ',' LIKE '%,{u},%'"
        )


def _other_tables(store: Store, deleted: dict[str, int], done: set[str]) -> None:
    """Every other table: rows keyed by the persons' ids or holding their identifiers."""
    for t in base_tables(store):
        if t in done or t in _OWN or t.startswith("_er_"):
            continue
        cols = set(columns_of(store, t))
        conds = [
            f"CAST({c} AS VARCHAR) IN (SELECT unified_id FROM _er_uids)"
            for c in ("unified_id", "other_id", "person")
            if c in cols
        ]
        conds += [
            f"CAST({k} AS VARCHAR) IN (SELECT raw FROM _er_raw WHERE kind = '{k}') OR "
            f"CAST({k} AS VARCHAR) IN (SELECT value FROM _er_ids WHERE kind = '{k}')"
            for k in ID_KINDS
            if k in cols
        ]
        if {"identifier_type", "identifier_value"} <= cols:
            conds.append(
                f"EXISTS (SELECT 1 FROM _er_ids i WHERE i.kind = {quote_ident(t)}.identifier_type "
                f"AND i.value = {quote_ident(t)}.identifier_value)"
            )
        if conds:
            _run(store, deleted, t, f"DELETE FROM {quote_ident(t)} WHERE " + " OR ".join(conds))


def _tombstones(store: Store, salt: bytes, region: str) -> list[tuple[str, str]]:
    """Hashes of the normalised identifiers, the cleaned form of every phone spelling, the ids.

    Ingestion normalises phones in SQL only (the cleaned ``+<cc>...`` candidate),
    so each spelling's cleaned form is tombstoned too: a re-ingested old file is
    recognised whatever ``phonenumbers`` would have made of it.
    """
    ids = store.sql("SELECT kind, value FROM _er_ids")
    pairs = set(zip(ids["kind"].astype(str), ids["value"].astype(str), strict=True))
    # each e-mail spelling as written (lower-cased): still recognised if the e-mail
    # normalisation options change later
    emails = store.sql("SELECT DISTINCT lower(trim(raw)) AS v FROM _er_raw WHERE kind = 'email'")
    pairs |= {("email", str(v)) for v in emails["v"] if isinstance(v, str) and v}
    phones = store.sql("SELECT raw FROM _er_raw WHERE kind = 'phone'")
    if len(phones):
        import duckdb

        con = duckdb.connect()
        try:
            con.register("r", phones)
            clean = phone_clean_sql("(" + phone_digits_sql("raw") + ")", region)
            forms = con.sql(f"SELECT DISTINCT {clean} AS f FROM r").df()["f"]
        finally:
            con.close()
        pairs |= {("phone", f) for f in forms if isinstance(f, str)}
    uids = store.sql("SELECT unified_id FROM _er_uids")["unified_id"].astype(str)
    pairs |= {("unified_id", u) for u in uids}
    return sorted((k, hash_identifier(k, v, salt)) for k, v in pairs)


def leftovers(store: Store) -> dict[str, int]:
    """Rows of any table whose text columns still hold an erased value (uses ``_er_*``).

    A value counts as a whole token (not inside a longer id), case-insensitively.
    """
    vals = store.sql(
        "SELECT value AS v FROM _er_ids UNION SELECT raw FROM _er_raw "
        "UNION SELECT unified_id FROM _er_uids"
    )["v"].astype(str)
    needles = sorted({v.strip() for v in vals if len(v.strip()) >= 5})
    if not needles:
        return {}
    alts = "|".join(re.escape(v) for v in needles)
    rx = quote_literal(f"(^|[^A-Za-z0-9])({alts})($|[^A-Za-z0-9])")
    out: dict[str, int] = {}
    for t in base_tables(store):
        cols = text_columns(store, t)
        if t in _OWN or not cols:
            continue
        if store.dialect == "postgres":
            cond = " OR ".join(f"CAST({quote_ident(c)} AS TEXT) ~* {rx}" for c in cols)
        else:
            cond = " OR ".join(
                f"regexp_matches(CAST({quote_ident(c)} AS VARCHAR), {rx}, 'i')" for c in cols
            )
        n = int(store.sql(f"SELECT count(*) AS n FROM {quote_ident(t)} WHERE {cond}")["n"].iloc[0])
        if n:
            out[t] = n
    return out


def erase_persons(
    store: Store,
    identifiers: Sequence[str] = (),
    unified_ids: Sequence[str] = (),
    *,
    salt: bytes,
    options: IdentityOptions | None = None,
    actor: str | None = None,
    verify: bool = True,
    on_erased: Callable[[ErasureReport], dict[str, Any]] | None = None,
) -> ErasureReport:
    """Erase the persons named by ``identifiers`` (``TYPE:VALUE``) and ``unified_ids``.

    Everything happens in one transaction: on any error nothing is erased.
    An input already erased earlier (found only in the tombstones) is counted
    in ``already_erased``; an input found nowhere raises
    :class:`~profiles.errors.NotFoundError`.

    Args:
        store: the store (DuckDB or PostgreSQL).
        identifiers: ``TYPE:VALUE`` texts as the requester gave them.
        unified_ids: person ids.
        salt: the workspace salt of the keyed hashes (tombstones, serving).
        options: the identity normalisation options ``cip unify`` uses.
        actor: who asked (audit log); default ``$CIP_ACTOR`` or ``$USER``.
        verify: scan every text column afterwards and report leftovers.
        on_erased: called with the report after the deletions, before the commit,
            to erase what lives outside the store (online sessions, files); it
            returns counts for the audit row. If it raises, nothing is committed,
            so running the erasure again redoes everything.
    """
    ensure_privacy_tables(store)
    stones = store.sql("SELECT identifier_type, identifier_hash FROM _tombstones")
    tombstoned = set(zip(stones["identifier_type"], stones["identifier_hash"], strict=True))
    hashes = _input_hashes(identifiers, unified_ids, salt, options)
    erasure_id = uuid.uuid4().hex[:12]
    deleted: dict[str, int] = {}
    nulled: dict[str, int] = {}
    with values_withheld("the erasure"), store.transaction():
        plan: PersonPlan = plan_persons(
            store, identifiers, unified_ids, options=options, tombstoned=tombstoned, hashes=hashes
        )
        if store.has_table("customers"):
            _raw_tables(store, deleted, nulled)
        if store.has_table("quarantine"):
            _run(
                store,
                deleted,
                "quarantine",
                "DELETE FROM quarantine WHERE record_id IN (SELECT record_id FROM _er_quar)",
            )
        _identity(store, deleted)
        done = set(_RAW) | {"quarantine", "_identity_records", "record_map", "identity_map"}
        done |= {"identity_links", "identity_blocked", "identity_history", "identity_forbidden"}
        _other_tables(store, deleted, done)
        pairs = _tombstones(store, salt, (options or IdentityOptions()).default_region)
        added = add_tombstones(store, pairs)
        left = leftovers(store) if verify else {}
        ids = store.sql("SELECT kind, value FROM _er_ids")
        report = ErasureReport(
            erasure_id=erasure_id,
            persons=len(plan.unified_ids),
            former_ids=len(plan.former_ids),
            identifiers={k: v for k, v in plan.identifiers.items() if v},
            rows_deleted=dict(sorted(deleted.items())),
            values_removed=dict(sorted(nulled.items())),
            tombstones_added=added,
            already_erased=plan.already_erased,
            leftovers=left,
            _unified_ids=plan.unified_ids + plan.former_ids,
            _identifiers=list(zip(ids["kind"].astype(str), ids["value"].astype(str), strict=True)),
        )
        if on_erased is not None:
            report.cleanup = on_erased(report)
        audit(store, "forget", report.as_dict(), actor=actor)
        drop(store, *TEMP_TABLES)  # on an error the rollback removes them
    log.info(
        "erasure %s: %d person(s), %d rows deleted, %d tombstones added, %d leftovers",
        erasure_id,
        report.persons,
        sum(deleted.values()),
        added,
        sum(left.values()),
    )
    return report


def _input_hashes(
    identifiers: Sequence[str],
    unified_ids: Sequence[str],
    salt: bytes,
    options: IdentityOptions | None,
) -> dict[tuple[str, str], str]:
    """Hash of each normalised input (to recognise inputs erased before)."""
    from cip.profiles._person import _normalised

    opts = options or IdentityOptions()
    pairs = _normalised(identifiers, opts) + [("unified_id", str(u).strip()) for u in unified_ids]
    return {(k, v): hash_identifier(k, v, salt) for k, v in pairs}
