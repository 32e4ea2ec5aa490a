"""``record_map`` and ``profiles``, built by portable SQL inside the store.

Both tables are derived from ``_identity_records`` (each raw record's node ids)
and ``identity_map`` (node -> unified_id), so they are rebuilt in the database
engine (DuckDB or PostgreSQL) without moving records through Python.

Record -> person: a record belongs to the person of its most trusted linked
identifier (customer_id, else email, phone, loyalty_id, anonymous_id); a
record whose identifiers are all invalid or blocked belongs to nobody.

Survivorship of traits: per trait, the most recent non-null value wins
(``customers.ts``, else ``ingested_at``); a per-trait list of sources, when
configured, ranks sources first. Consent: per purpose the most recent statement
wins, from ``customers.consent_<purpose>`` and from ``events`` with
``event_type = 'consent'`` and properties ``{"purpose": ..., "granted": bool}``;
on a tie a withdrawal wins. No statement means no consent (False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cip.profiles.contracts import CONSENT_PURPOSES
from cip.profiles.identity.normalise import ID_TYPES
from cip.profiles.sql import quote_literal
from cip.profiles.store import Store

__all__ = [
    "TRAITS",
    "replace_table_as",
    "record_map_sql",
    "affected_records_sql",
    "profiles_sql",
    "prepare_dialect",
]

TRAITS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "date_of_birth",
    "address",
    "city",
    "postcode",
    "country",
)
_PLURAL = {
    "customer_id": "customer_ids",
    "email": "emails",
    "phone": "phones",
    "loyalty_id": "loyalty_ids",
    "anonymous_id": "anonymous_ids",
}


def replace_table_as(store: Store, name: str, select: str) -> None:
    """Stage ``select`` as a table, then swap it in (call inside ``store.transaction()``)."""
    stage = f"_stage_{name}"
    store.execute(f"DROP TABLE IF EXISTS {stage}")
    store.execute(f"CREATE TABLE {stage} AS {select}")
    store.execute(f"DROP TABLE IF EXISTS {name}")
    store.execute(f"ALTER TABLE {stage} RENAME TO {name}")


def prepare_dialect(store: Store) -> None:
    """Helpers the profile SQL needs (PostgreSQL: a JSON parse that returns NULL on bad input)."""
    if store.dialect == "postgres":
        store.execute(
            "CREATE OR REPLACE FUNCTION cip_try_json(t text) RETURNS json AS $$ "
            "BEGIN RETURN t::json; EXCEPTION WHEN others THEN RETURN NULL; END; "
            "$$ LANGUAGE plpgsql IMMUTABLE"
        )


def record_map_sql(restrict: str | None = None) -> str:
    """Record -> person; ``restrict`` names a table of ``(source_table, record_id)`` to limit to."""
    joins = " ".join(
        f"LEFT JOIN identity_map m{i} ON m{i}.node_id = r.n_{t}" for i, t in enumerate(ID_TYPES)
    )
    uid = "COALESCE(" + ", ".join(f"m{i}.unified_id" for i in range(len(ID_TYPES))) + ")"
    only = (
        f" AND EXISTS (SELECT 1 FROM {restrict} x WHERE x.source_table = r.source_table "
        f"AND x.record_id = r.record_id)"
        if restrict
        else ""
    )
    return (
        f"SELECT r.source_table, r.record_id, {uid} AS unified_id "
        f"FROM _identity_records r {joins} WHERE {uid} IS NOT NULL{only}"
    )


def affected_records_sql(changed: str) -> str:
    """Records holding any node of table ``changed`` (``node_id``)."""
    cond = " OR ".join(f"r.n_{t} IN (SELECT node_id FROM {changed})" for t in ID_TYPES)
    return f"SELECT r.source_table, r.record_id FROM _identity_records r WHERE {cond}"


def _json_field(dialect: str, key: str) -> str:
    if dialect == "postgres":
        return f"(cip_try_json(e.properties) ->> '{key}')"
    return f"(CASE WHEN json_valid(e.properties) THEN json_extract_string(e.properties, '$.{key}') END)"


def _bool(expr: str) -> str:
    return (
        f"(CASE lower({expr}) WHEN 'true' THEN TRUE WHEN '1' THEN TRUE WHEN 'yes' THEN TRUE "
        f"WHEN 'false' THEN FALSE WHEN '0' THEN FALSE WHEN 'no' THEN FALSE END)"
    )


def _trait_cte(trait: str, sources: Sequence[str]) -> str:
    prio = "0"
    if sources:
        whens = " ".join(f"WHEN {quote_literal(s)} THEN {i}" for i, s in enumerate(sources))
        prio = f"CASE source {whens} ELSE {len(sources)} END"
    return (
        f"t_{trait} AS (SELECT unified_id, {trait} FROM (SELECT unified_id, {trait}, "
        f"ROW_NUMBER() OVER (PARTITION BY unified_id ORDER BY {prio}, _ts DESC NULLS LAST, "
        f"record_id DESC) AS rn FROM cust WHERE {trait} IS NOT NULL) x WHERE rn = 1)"
    )


def profiles_sql(
    dialect: str,
    survivorship: Mapping[str, Sequence[str]] | None = None,
    *,
    now: str,
    restrict: str | None = None,
) -> str:
    """The ``SELECT`` that builds ``profiles`` (one row per person).

    ``restrict`` names a table of ``unified_id`` to build those persons only.
    """
    survivorship = survivorship or {}
    only = f" AND {{col}} IN (SELECT unified_id FROM {restrict})" if restrict else ""

    def where(col: str) -> str:
        return only.format(col=col)

    ids = ",\n".join(
        f"array_agg(identifier_value ORDER BY last_seen DESC, identifier_value) "
        f"FILTER (WHERE identifier_type = '{t}') AS {_PLURAL[t]}"
        for t in ID_TYPES
    )
    purposes = ", ".join(quote_literal(p) for p in CONSENT_PURPOSES)
    cust_stmts = " UNION ALL ".join(
        f"SELECT unified_id, '{p}' AS purpose, consent_{p} AS granted, _ts AS ts FROM cust "
        f"WHERE consent_{p} IS NOT NULL"
        for p in CONSENT_PURPOSES
    )
    consent_cols = ",\n".join(
        f"bool_or(granted) FILTER (WHERE purpose = '{p}') AS consent_{p}, "
        f"max(ts) FILTER (WHERE purpose = '{p}') AS consent_{p}_at"
        for p in CONSENT_PURPOSES
    )
    traits = ",\n".join(_trait_cte(t, survivorship.get(t, ())) for t in TRAITS)
    trait_joins = " ".join(f"LEFT JOIN t_{t} USING (unified_id)" for t in TRAITS)
    primaries = ", ".join(f"i.{_PLURAL[t]}[1] AS {t}" for t in ID_TYPES if t != "anonymous_id")
    lists = ", ".join(f"i.{_PLURAL[t]}" for t in ID_TYPES)
    consent_sel = ", ".join(
        f"COALESCE(c.consent_{p}, FALSE) AS consent_{p}, c.consent_{p}_at" for p in CONSENT_PURPOSES
    )
    return f"""
WITH persons AS (
  SELECT DISTINCT unified_id FROM identity_map WHERE unified_id IS NOT NULL{where("unified_id")}
), rec AS (
  SELECT m.unified_id, r.source, r.source_table, r.ts
  FROM record_map m JOIN _identity_records r
    ON r.source_table = m.source_table AND r.record_id = m.record_id
  WHERE TRUE{where("m.unified_id")}
), per_source AS (
  SELECT unified_id, source, min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS n,
         count(*) FILTER (WHERE source_table = 'customers') AS nc,
         count(*) FILTER (WHERE source_table = 'orders') AS no,
         count(*) FILTER (WHERE source_table = 'events') AS ne
  FROM rec GROUP BY unified_id, source
), stats AS (
  SELECT unified_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
         CAST(sum(n) AS BIGINT) AS record_count, count(*) AS source_count,
         CAST(sum(nc) AS BIGINT) AS customer_records, CAST(sum(no) AS BIGINT) AS order_records,
         CAST(sum(ne) AS BIGINT) AS event_records
  FROM per_source GROUP BY unified_id
), i AS (
  SELECT unified_id, {ids},
         bool_or(identifier_type <> 'anonymous_id') AS known
  FROM identity_map WHERE unified_id IS NOT NULL{where("unified_id")} GROUP BY unified_id
), cust AS MATERIALIZED (
  SELECT m.unified_id, c.*, COALESCE(c.ts, c.ingested_at) AS _ts
  FROM customers c JOIN record_map m
    ON m.source_table = 'customers' AND m.record_id = c.record_id
  WHERE TRUE{where("m.unified_id")}
), {traits},
stmts AS (
  {cust_stmts}
  UNION ALL
  SELECT m.unified_id, {_json_field(dialect, "purpose")} AS purpose,
         {_bool(_json_field(dialect, "granted"))} AS granted, e.ts
  FROM events e JOIN record_map m ON m.source_table = 'events' AND m.record_id = e.record_id
  WHERE e.event_type = 'consent'{where("m.unified_id")}
), latest AS (
  SELECT unified_id, purpose, granted, ts FROM (
    SELECT unified_id, purpose, granted, ts, ROW_NUMBER() OVER (
      PARTITION BY unified_id, purpose ORDER BY ts DESC NULLS LAST, granted ASC) AS rn
    FROM stmts WHERE purpose IN ({purposes}) AND granted IS NOT NULL) x
  WHERE rn = 1
), cons AS (
  SELECT unified_id, {consent_cols} FROM latest GROUP BY unified_id
)
SELECT p.unified_id, {primaries}, {lists}, COALESCE(i.known, FALSE) AS known,
       {", ".join(f"t_{t}.{t}" for t in TRAITS)},
       s.first_seen, s.last_seen, COALESCE(s.record_count, 0) AS record_count,
       COALESCE(s.source_count, 0) AS source_count,
       COALESCE(s.customer_records, 0) AS customer_records,
       COALESCE(s.order_records, 0) AS order_records,
       COALESCE(s.event_records, 0) AS event_records,
       {consent_sel},
       CAST({quote_literal(now)} AS TIMESTAMP) AS updated_at
FROM persons p
LEFT JOIN stats s USING (unified_id)
LEFT JOIN i USING (unified_id)
{trait_joins}
LEFT JOIN cons c USING (unified_id)
"""
