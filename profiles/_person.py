"""Find persons everywhere in the store: the plan shared by erasure and access requests.

A request names identifiers (``TYPE:VALUE``) and/or unified ids. Through the
identity graph it becomes, as temporary tables of the store (nothing is
written to the database file):

* ``_er_uids(unified_id)`` — the persons, plus the former ids of their
  identifiers (``birth_id``, merges) that no other person uses now;
* ``_er_nodes(node_id)`` and ``_er_ids(kind, value)`` — their identifiers,
  normalised as the identity resolver does;
* ``_er_raw(kind, raw)`` — every raw spelling of those identifiers found in
  the raw tables (from the person's own records through the graph, and by
  normalising the few candidate values a portable SQL pre-filter finds);
* ``_er_rec(source_table, record_id)`` — the person's records: every record
  of ``record_map`` mapped to them, and records mapped to nobody that carry
  one of their identifiers; ``_er_orders(source, order_id)`` their orders;
* ``_er_quar(record_id)`` — quarantined rows holding one of their identifiers.

All statements are set-based SQL that runs on DuckDB and PostgreSQL; only the
handful of candidate values go through the identity normalisers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from cip.profiles._person_sql import ID_KINDS, drop, in_list, stage
from cip.profiles.errors import DataError, NotFoundError
from cip.profiles.identity.normalise import normalise_identifier
from cip.profiles.identity.options import IdentityOptions, parse_identifier
from cip.profiles.sql import quote_ident
from cip.profiles.store import Store

__all__ = ["PersonPlan", "plan_persons", "TEMP_TABLES", "RAW_SOURCES"]

TEMP_TABLES = ("_er_given", "_er_uids", "_er_nodes", "_er_ids", "_er_raw", "_er_rec")
TEMP_TABLES += ("_er_orders", "_er_quar", "_er_cand")
#: Physical raw tables and the ``record_map.source_table`` their records map through.
RAW_SOURCES = {"customers": "customers", "events": "events", "_orders_src": "orders"}


@dataclass
class PersonPlan:
    """Who was found (ids only; the values stay in the store's temporary tables)."""

    unified_ids: list[str]
    former_ids: list[str]
    identifiers: dict[str, int]  # erased identifiers per kind
    already_erased: int = 0  # inputs known only from the tombstones
    inputs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.unified_ids and not sum(self.identifiers.values())


def _normalised(identifiers: Sequence[str], opts: IdentityOptions) -> list[tuple[str, str]]:
    out = []
    for i, text in enumerate(identifiers, 1):
        kind, value = parse_identifier(text)
        norm = normalise_identifier(kind, pd.Series([value]), **opts.normaliser_kwargs()).iloc[0]
        if pd.isna(norm):
            raise DataError(f"identifier {i} is not a valid {kind}; nothing was changed")
        out.append((kind, str(norm)))
    return list(dict.fromkeys(out))


def _frame(**cols: list) -> pa.Table:
    return pa.table({k: pa.array([str(x) for x in v], pa.string()) for k, v in cols.items()})


def _has(store: Store, *tables: str) -> bool:
    return all(store.has_table(t) for t in tables)


def _person_ids(
    store: Store, given_uids: list[str], given: list[tuple[str, str]]
) -> tuple[set[str], set[str]]:
    """Active unified ids of the inputs and the given ids that were found.

    Former ids (``birth_id``) resolve to today's persons. Without identity
    resolution the customer id is the person id of features, scores and segments.
    """
    persons: set[str] = set()
    found: set[str] = set()
    if _has(store, "identity_map"):
        persons |= set(
            store.sql(
                "SELECT DISTINCT m.unified_id FROM identity_map m JOIN _er_given g ON "
                "g.kind = m.identifier_type AND g.value = m.identifier_value "
                "WHERE m.unified_id IS NOT NULL"
            )["unified_id"].astype(str)
        )
        if given_uids:
            hit = store.sql(
                "SELECT DISTINCT unified_id, birth_id FROM identity_map WHERE unified_id IS NOT "
                f"NULL AND (unified_id IN {in_list(given_uids)} OR birth_id IN {in_list(given_uids)})"
            )
            persons |= set(hit["unified_id"].astype(str))
            found |= (set(hit["unified_id"].astype(str)) | set(hit["birth_id"].astype(str))) & set(
                given_uids
            )
            rest = [u for u in given_uids if u not in found]
            if rest:  # left behind in feature, score or segment tables only
                left = _ids_in_tables(store, rest)
                persons |= left
                found |= left
    else:
        persons |= {v for k, v in given if k == "customer_id"} | set(given_uids)
        found |= set(given_uids) & _ids_in_tables(store, given_uids)
    return persons, found


def _ids_in_tables(store: Store, uids: list[str]) -> set[str]:
    """Which of ``uids`` appear in a ``unified_id`` column of some table."""
    from cip.profiles._person_sql import base_tables, columns_of

    out: set[str] = set()
    for t in base_tables(store):
        if "unified_id" in columns_of(store, t):
            out |= set(
                store.sql(
                    f"SELECT DISTINCT CAST(unified_id AS VARCHAR) AS u FROM {quote_ident(t)} "
                    f"WHERE CAST(unified_id AS VARCHAR) IN {in_list(uids)}"
                )["u"].astype(str)
            )
    return out


def _former_ids(store: Store, persons: set[str]) -> set[str]:
    """Ids the persons' identifiers had before (births, merged ids) that nobody holds now."""
    if not persons or not _has(store, "identity_map"):
        return set()
    lst = in_list(sorted(persons))
    old = set(
        store.sql(
            f"SELECT DISTINCT birth_id AS u FROM identity_map WHERE unified_id IN {lst} "
            "AND birth_id IS NOT NULL"
        )["u"].astype(str)
    )
    if _has(store, "identity_history"):
        old |= set(
            store.sql(
                f"SELECT DISTINCT other_id AS u FROM identity_history WHERE unified_id IN {lst} "
                "AND kind = 'merge' AND other_id IS NOT NULL"
            )["u"].astype(str)
        )
    old -= persons
    if old:
        active = set(
            store.sql(
                f"SELECT DISTINCT unified_id AS u FROM identity_map WHERE unified_id IN "
                f"{in_list(sorted(old))}"
            )["u"].astype(str)
        )
        old -= active
    return old


def _candidates_sql(table: str, kinds: dict[str, list[str]], cols: set[str]) -> list[str]:
    """Portable pre-filters: distinct ``(kind, raw)`` that may normalise to an erased value."""
    parts = []
    for kind, values in kinds.items():
        if kind not in cols or not values:
            continue
        c = f"CAST({kind} AS VARCHAR)"
        if kind == "email":
            domains = sorted({v.rsplit("@", 1)[-1] for v in values})
            cond = " OR ".join(
                f"lower(trim({c})) LIKE '%@{d.replace(chr(39), '')}'" for d in domains
            )
        elif kind == "phone":
            tails = sorted({"".join(ch for ch in v if ch.isdigit())[-7:] for v in values})
            cond = f"right(regexp_replace({c}, '[^0-9]', '', 'g'), 7) IN {in_list(tails)}"
        else:
            cond = f"trim({c}) IN {in_list(values)}"
        parts.append(
            f"SELECT DISTINCT '{kind}' AS kind, {c} AS raw FROM {table} "
            f"WHERE {kind} IS NOT NULL AND ({cond})"
        )
    return parts


def _match(cands: pd.DataFrame, ids: set[tuple[str, str]], opts: IdentityOptions) -> pd.DataFrame:
    """``kind, raw, value`` of candidates whose normalised value is an erased identifier."""
    keep = []
    for kind, part in cands.groupby("kind"):
        norm = normalise_identifier(
            str(kind), part["raw"].astype("string"), **opts.normaliser_kwargs()
        ).fillna("")
        hit = pd.Series([(kind, v) in ids for v in norm], index=part.index).to_numpy()
        keep.append(part[hit].assign(value=norm[hit].astype(str).to_numpy()))
    return pd.concat(keep) if keep else cands.iloc[0:0].assign(value=[])


def _domains_with_aliases(values: list[str], opts: IdentityOptions) -> list[str]:
    aliases = {k.lower(): v.lower() for k, v in opts.email_domain_aliases.items()}
    out = set(values)
    for v in values:
        local, dom = v.rsplit("@", 1)
        out |= {f"{local}@{k}" for k, a in aliases.items() if a == dom}
    return sorted(out)


def plan_persons(
    store: Store,
    identifiers: Sequence[str] = (),
    unified_ids: Sequence[str] = (),
    *,
    options: IdentityOptions | None = None,
    tombstoned: set[tuple[str, str]] | None = None,
    hashes: dict[tuple[str, str], str] | None = None,
) -> PersonPlan:
    """Resolve the request and fill the ``_er_*`` temporary tables of ``store``.

    Args:
        store: the store (call inside ``store.transaction()`` to see one state).
        identifiers: ``TYPE:VALUE`` texts (raw values; normalised here).
        unified_ids: person ids.
        options: identity normalisation options (those ``cip unify`` uses).
        tombstoned: ``(kind, hash)`` pairs already erased; with ``hashes`` (the
            hash of each normalised input) an input found only there counts as
            already erased instead of unknown.

    Raises:
        NotFoundError: an input is neither in the store nor erased before.
        DataError: an identifier value is not valid for its type.
    """
    opts = options or IdentityOptions()
    given = _normalised(identifiers, opts)
    uids_in = list(dict.fromkeys(str(u).strip() for u in unified_ids if str(u).strip()))
    drop(store, *TEMP_TABLES)
    stage(store, "_er_given", _frame(kind=[k for k, _ in given], value=[v for _, v in given]))
    persons, found_uids = _person_ids(store, uids_in, given)
    former = _former_ids(store, persons)
    stage(store, "_er_uids", _frame(unified_id=sorted(persons | former)))
    graph = _has(store, "identity_map")
    if graph:
        store.execute(
            "CREATE TEMP TABLE _er_nodes AS SELECT DISTINCT m.node_id FROM identity_map m "
            "WHERE m.unified_id IN (SELECT unified_id FROM _er_uids) OR EXISTS (SELECT 1 FROM "
            "_er_given g WHERE g.kind = m.identifier_type AND g.value = m.identifier_value)"
        )
        store.execute(
            "CREATE TEMP TABLE _er_ids AS SELECT identifier_type AS kind, identifier_value AS value "
            "FROM identity_map WHERE node_id IN (SELECT node_id FROM _er_nodes) "
            "UNION SELECT kind, value FROM _er_given"
        )
    else:
        store.execute("CREATE TEMP TABLE _er_nodes AS SELECT CAST(NULL AS BIGINT) AS node_id")
        store.execute("CREATE TEMP TABLE _er_ids AS SELECT kind, value FROM _er_given")
    ids_df = store.sql("SELECT kind, value FROM _er_ids")
    ids = {(str(k), str(v)) for k, v in zip(ids_df["kind"], ids_df["value"], strict=True)}
    kinds = {k: sorted(v for kk, v in ids if kk == k) for k in ID_KINDS}
    kinds["email"] = _domains_with_aliases(kinds["email"], opts)
    # raw spellings: from the persons' own records (through the graph) ...
    parts = []
    if graph and _has(store, "_identity_records", "record_map"):
        for table, st in RAW_SOURCES.items():
            src = "orders" if st == "orders" else table
            for kind in ID_KINDS:
                parts.append(
                    f"SELECT DISTINCT '{kind}' AS kind, CAST(x.{kind} AS VARCHAR) AS raw FROM {src} x "
                    f"JOIN _identity_records r ON r.source_table = '{st}' AND r.record_id = "
                    f"x.record_id WHERE x.{kind} IS NOT NULL AND r.n_{kind} IN "
                    "(SELECT node_id FROM _er_nodes)"
                )
    graph_raw = store.sql(" UNION ".join(parts)) if parts else pd.DataFrame(columns=["kind", "raw"])
    # ... and every candidate spelling in the raw tables that normalises to one of them
    cand_parts = []
    for table in ("customers", "events", "_orders_src", "order_lines"):
        if store.has_table(table):
            cand_parts += _candidates_sql(table, kinds, set(ID_KINDS))
    cands = store.sql(" UNION ".join(cand_parts)) if cand_parts else graph_raw.iloc[0:0]
    matched = _match(cands, ids, opts)
    raw = pd.concat([graph_raw, matched[["kind", "raw"]]]).drop_duplicates()
    stage(store, "_er_raw", _frame(kind=list(raw["kind"]), raw=list(raw["raw"])))
    _records(store, graph)
    if not graph:  # without identity resolution the records' customer ids are the persons
        more = _record_customer_ids(store) - {v for k, v in given if k == "customer_id"}
        if more:
            extended = [*identifiers, *(f"customer_id:{c}" for c in sorted(more))]
            return plan_persons(
                store,
                extended,
                unified_ids,
                options=opts,
                tombstoned=tombstoned,
                hashes=hashes,
            )
    from cip.profiles._person_quarantine import quarantine_hits

    q_ids, q_values = quarantine_hits(store, ids, raw, opts)
    stage(store, "_er_quar", _frame(record_id=q_ids))
    plan = PersonPlan(
        unified_ids=sorted(persons),
        former_ids=sorted(former),
        identifiers={k: sum(1 for kk, _ in ids if kk == k) for k in ID_KINDS},
        inputs=len(given) + len(uids_in),
    )
    seen = q_values | set(zip(matched["kind"], matched["value"], strict=True))
    if graph:
        hit = store.sql(
            "SELECT DISTINCT g.kind, g.value FROM _er_given g JOIN identity_map m ON "
            "m.identifier_type = g.kind AND m.identifier_value = g.value"
        )
        seen |= set(zip(hit["kind"].astype(str), hit["value"].astype(str), strict=True))
    missing = [(n, kv) for n, kv in enumerate(given, 1) if kv not in seen]
    missing += [(0, ("unified_id", u)) for u in uids_in if u not in found_uids]
    for n, (kind, value) in missing:
        if (kind, (hashes or {}).get((kind, value), "")) in (tombstoned or set()):
            plan.already_erased += 1
            continue
        what = f"unified id {value!r}" if kind == "unified_id" else f"identifier {n} ({kind})"
        raise NotFoundError(f"{what} is not known in the store; nothing was changed")
    return plan


def _records(store: Store, graph: bool) -> None:
    """``_er_rec``: the persons' records; ``_er_orders``: their orders (view keys)."""
    parts = []
    if graph and _has(store, "record_map"):
        parts.append(
            "SELECT source_table, record_id FROM record_map WHERE unified_id IN "
            "(SELECT unified_id FROM _er_uids)"
        )
    if graph and _has(store, "_identity_records", "record_map"):
        nodes = " OR ".join(f"r.n_{k} IN (SELECT node_id FROM _er_nodes)" for k in ID_KINDS)
        parts.append(
            f"SELECT r.source_table, r.record_id FROM _identity_records r WHERE ({nodes}) AND NOT "
            "EXISTS (SELECT 1 FROM record_map m WHERE m.source_table = r.source_table AND "
            "m.record_id = r.record_id)"
        )
    for table, st in RAW_SOURCES.items():
        src = "orders" if st == "orders" else table
        if not store.has_table(src if src != "orders" else "_orders_src"):
            continue
        other = (
            f" AND NOT EXISTS (SELECT 1 FROM record_map m WHERE m.source_table = '{st}' AND "
            "m.record_id = x.record_id AND m.unified_id NOT IN (SELECT unified_id FROM _er_uids))"
            if _has(store, "record_map")
            else ""
        )
        parts.append(
            f"SELECT '{st}' AS source_table, x.record_id FROM {src} x WHERE ({carries('x')}){other}"
        )
    store.execute(
        "CREATE TEMP TABLE _er_rec AS SELECT DISTINCT source_table, record_id FROM ("
        + " UNION ALL ".join(parts)
        + ") u"
    )
    store.execute(
        "CREATE TEMP TABLE _er_orders AS SELECT DISTINCT o.source, o.order_id FROM orders o "
        "WHERE o.record_id IN (SELECT record_id FROM _er_rec WHERE source_table = 'orders')"
    )


def _record_customer_ids(store: Store) -> set[str]:
    parts = [
        f"SELECT DISTINCT trim(CAST(x.customer_id AS VARCHAR)) AS c FROM "
        f"{'orders' if st == 'orders' else table} x WHERE x.customer_id IS NOT NULL AND "
        f"x.record_id IN (SELECT record_id FROM _er_rec WHERE source_table = '{st}')"
        for table, st in RAW_SOURCES.items()
        if store.has_table(table)
    ]
    if not parts:
        return set()
    return set(store.sql(" UNION ".join(parts))["c"].astype(str))


def carries(alias: str) -> str:
    """SQL: the row ``alias`` holds one of the erased raw identifier values."""
    return " OR ".join(
        f"CAST({alias}.{k} AS VARCHAR) IN (SELECT raw FROM _er_raw WHERE kind = '{k}')"
        for k in ID_KINDS
    )
