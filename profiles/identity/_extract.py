"""Read raw records from the store and turn them into identifier nodes and edges.

All heavy work runs in a private in-memory DuckDB connection over Arrow
tables: identifier values are normalised once per distinct raw value, records
become rows of node ids (``_identity_records``), and every pair of identifiers
in a record becomes an edge (deduplicated, with counts, first/last seen and the
latest record as evidence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import duckdb
import pyarrow as pa
from cip.profiles.identity.normalise import (
    ID_TYPES,
    e164,
    email_sql,
    id_sql,
    phone_clean_sql,
    phone_digits_sql,
)
from cip.profiles.identity.options import IdentityOptions
from cip.profiles.store import Store, scratch_duckdb

__all__ = ["PERSON_TABLES", "RECORDS", "NODE_COLS", "Extract", "local_db", "read_raw", "extract"]

#: Raw tables whose records belong to persons (``orders`` is the view).
PERSON_TABLES: tuple[str, ...] = ("customers", "orders", "events")
RECORDS = "_identity_records"
NODE_COLS = [f"n_{t}" for t in ID_TYPES]


@contextmanager
def local_db(memory_limit: str = "2GB") -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB (spilling to a temporary folder) for the heavy lifting."""
    con = scratch_duckdb(memory_limit)
    con.execute("SET preserve_insertion_order = false")
    try:
        yield con
    finally:
        con.close()


def read_raw(store: Store, *, only_new: bool) -> pa.Table:
    """Person-linked raw records (all, or those not yet in ``_identity_records``)."""
    parts = []
    for t in PERSON_TABLES:
        where = (
            f"WHERE NOT EXISTS (SELECT 1 FROM {RECORDS} r WHERE r.source_table = '{t}' "
            f"AND r.record_id = x.record_id)"
            if only_new
            else ""
        )
        ids = ", ".join(f"CAST(x.{c} AS VARCHAR) AS {c}" for c in ID_TYPES)
        parts.append(
            f"SELECT '{t}' AS source_table, x.record_id, x.source, "
            f"COALESCE(x.ts, x.ingested_at) AS ts, {ids} FROM {t} x {where}"
        )
    tbl = store.arrow(" UNION ALL ".join(parts))
    if store.dialect == "postgres":  # TEXT arrives as large_string via pandas; unify types
        tbl = tbl.cast(
            pa.schema(
                [
                    pa.field("source_table", pa.string()),
                    pa.field("record_id", pa.string()),
                    pa.field("source", pa.string()),
                    pa.field("ts", pa.timestamp("us")),
                ]
                + [pa.field(c, pa.string()) for c in ID_TYPES]
            )
        )
    return tbl


@dataclass
class Extract:
    """Nodes, edges and record rows derived from one batch of raw records."""

    records: pa.Table  # source_table, record_id, source, ts, n_<type>...
    nodes: pa.Table  # node_id, identifier_type, identifier_value, first/last seen, count, is_new
    edges: pa.Table  # node_a, node_b, record_count, first_seen, last_seen, evidence_*
    invalid: dict[str, int]  # records with a non-empty but invalid value, per type


def extract(
    con: duckdb.DuckDBPyConnection,
    raw: pa.Table,
    opts: IdentityOptions,
    lookup: Callable[[pa.Table], pa.Table],
    next_id: int,
) -> Extract:
    """Normalise ``raw`` and map it onto nodes.

    ``lookup`` takes a table ``identifier_type, identifier_value`` and returns
    the stored nodes among them (``node_id, identifier_type, identifier_value``);
    values not stored get new node ids from ``next_id`` on.
    """
    con.register("raw", raw)
    invalid: dict[str, int] = {}
    kw = opts.normaliser_kwargs()
    for rank, t in enumerate(ID_TYPES):
        distinct = f"SELECT DISTINCT {t} AS raw FROM raw WHERE {t} IS NOT NULL"
        if t == "phone":
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE phone_clean AS SELECT raw, "
                f"{phone_clean_sql('c', kw['region'])} AS cleaned FROM "
                f"(SELECT raw, {phone_digits_sql('raw')} AS c FROM ({distinct}))"
            )
            # a candidate equal to a stored E.164 node was validated by an earlier run
            # (same normalisation options): only new numbers go through phonenumbers
            all_cands = con.sql(
                "SELECT DISTINCT 'phone' AS identifier_type, cleaned AS identifier_value "
                "FROM phone_clean WHERE cleaned IS NOT NULL"
            ).to_arrow_table()
            con.register("known_phones", lookup(all_cands))
            cands = con.sql(
                "SELECT DISTINCT cleaned FROM phone_clean c WHERE cleaned IS NOT NULL AND NOT "
                "EXISTS (SELECT 1 FROM known_phones k WHERE k.identifier_value = c.cleaned)"
            ).df()["cleaned"]
            checked = pa.table(
                {
                    "cleaned": pa.array(cands.to_numpy(dtype=object), pa.string()),
                    "value": pa.array(
                        e164(
                            cands, region=kw["region"], validation=kw["phone_validation"]
                        ).to_numpy(dtype=object, na_value=None),
                        pa.string(),
                    ),
                }
            )
            con.register("new_phones", checked)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE phone_lookup AS SELECT cleaned, value FROM "
                "new_phones UNION ALL SELECT identifier_value, identifier_value FROM known_phones"
            )
            con.unregister("new_phones")
            con.unregister("known_phones")
            select = (
                "SELECT p.raw, CAST(l.value AS VARCHAR) AS value FROM phone_clean p "
                "LEFT JOIN phone_lookup l USING (cleaned)"
            )
        elif t == "email":
            expr = email_sql(
                "raw",
                strip_plus=kw["email_strip_plus"],
                dot_providers=kw["email_dot_providers"],
                domain_aliases=kw["email_domain_aliases"],
            )
            select = f"SELECT raw, {expr} AS value FROM ({distinct})"
        else:
            select = f"SELECT raw, {id_sql('raw')} AS value FROM ({distinct})"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE norm_{t} AS "
            f"SELECT raw, value, '{t}' AS identifier_type, {rank} AS rank FROM ({select})"
        )
        invalid[t] = int(
            con.execute(
                f"SELECT count(*) FROM raw r JOIN norm_{t} n ON r.{t} = n.raw "
                f"WHERE n.value IS NULL AND trim(r.{t}) <> ''"
            ).fetchall()[0][0]
        )
    union = " UNION ALL ".join(
        f"SELECT rank, identifier_type, value FROM norm_{t} WHERE value IS NOT NULL"
        for t in ID_TYPES
    )
    values = con.sql(
        f"SELECT DISTINCT identifier_type, value AS identifier_value, rank FROM ({union})"
    ).to_arrow_table()
    con.register("batch_values", values)
    con.register("known", lookup(values.select(["identifier_type", "identifier_value"])))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_nodes AS
        SELECT coalesce(k.node_id, {int(next_id) - 1} + row_number() OVER (
                   PARTITION BY k.node_id IS NULL ORDER BY v.rank, v.identifier_value)) AS node_id,
               v.identifier_type, v.identifier_value, k.node_id IS NULL AS is_new
        FROM batch_values v LEFT JOIN known k
          ON k.identifier_type = v.identifier_type AND k.identifier_value = v.identifier_value
        """
    )
    con.unregister("batch_values")
    joins = "\n".join(
        f"LEFT JOIN (SELECT n.raw, b.node_id FROM norm_{t} n JOIN batch_nodes b "
        f"ON b.identifier_type = '{t}' AND b.identifier_value = n.value) l{i} ON r.{t} = l{i}.raw"
        for i, t in enumerate(ID_TYPES)
    )
    picks = ", ".join(f"l{i}.node_id AS n_{t}" for i, t in enumerate(ID_TYPES))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE batch_records AS SELECT r.source_table, r.record_id, "
        f"r.source, r.ts, {picks} FROM raw r {joins}"
    )
    occ = " UNION ALL ".join(f"SELECT {c} AS node_id, ts FROM batch_records" for c in NODE_COLS)
    nodes = con.sql(
        f"""
        SELECT b.node_id, b.identifier_type, b.identifier_value, s.first_seen, s.last_seen,
               s.record_count, b.is_new
        FROM batch_nodes b JOIN (
            SELECT node_id, min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS record_count
            FROM ({occ}) WHERE node_id IS NOT NULL GROUP BY node_id) s USING (node_id)
        ORDER BY b.node_id
        """
    ).to_arrow_table()
    pairs = " UNION ALL ".join(
        f"SELECT least({x}, {y}) AS a, greatest({x}, {y}) AS b, ts, source_table, record_id "
        f"FROM batch_records WHERE {x} IS NOT NULL AND {y} IS NOT NULL"
        for x, y in combinations(NODE_COLS, 2)
    )
    edges = con.sql(
        f"""
        SELECT a AS node_a, b AS node_b, count(*) AS record_count, min(ts) AS first_seen,
               max(ts) AS last_seen,
               max(struct_pack(t := ts, s := source_table, r := record_id)) AS ev
        FROM ({pairs}) GROUP BY a, b ORDER BY a, b
        """
    ).to_arrow_table()
    ev = edges.column("ev").combine_chunks()
    edges = edges.drop_columns(["ev"])
    edges = edges.append_column("evidence_table", ev.field("s")).append_column(
        "evidence_record_id", ev.field("r")
    )
    records = con.sql("SELECT * FROM batch_records").to_arrow_table()
    for name in ("raw", "known"):
        con.unregister(name)
    return Extract(records=records, nodes=nodes, edges=edges, invalid=invalid)
