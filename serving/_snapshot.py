"""Read what the service needs from the store into memory, holding the store briefly.

DuckDB allows one writing process: the service must not keep the workspace's
DuckDB file open while the pipeline writes. A snapshot therefore attaches the
file read-only, copies the handful of tables the service reads into an
in-memory DuckDB database (``CREATE TABLE ... AS SELECT`` inside DuckDB, no
Python per row), and detaches at once; with PostgreSQL it copies the same
queries' results over one short connection. Everything else is derived from
the in-memory copy, which also answers segment pages.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from cip.profiles.errors import CIPError
from cip.profiles.sql import quote_ident, quote_literal
from cip.profiles.store import DuckDBStore, open_store
from cip.serving.settings import ServingSettings

__all__ = ["copy_store", "store_signature", "PROFILE_COLUMNS"]

log = logging.getLogger(__name__)

#: Profile columns the service reads (consent for personalisation, profiling and
#: the export purposes of segment pages, and the contact ids pages release).
PROFILE_COLUMNS: tuple[str, ...] = (
    "unified_id",
    "customer_id",
    "email",
    "phone",
    "consent_personalization",
    "consent_personalization_at",
    "consent_profiling",
    "consent_profiling_at",
    "consent_email",
    "consent_sms",
    "consent_push",
)


def _queries(tables: set[str], profile_cols: list[str], p: str) -> dict[str, str]:
    """Target table -> SELECT over the source (table names prefixed with ``p``)."""
    q: dict[str, str] = {}
    if "products" in tables:
        q["products"] = (
            "SELECT DISTINCT ON (item_id) CAST(item_id AS VARCHAR) AS item_id, title, category, "
            f"price, in_stock FROM {p}products WHERE item_id IS NOT NULL "
            "ORDER BY item_id, ingested_at DESC"
        )
    if "identity_map" in tables:
        q["id_map"] = (
            "SELECT identifier_type, identifier_value, min(unified_id) AS unified_id "
            f"FROM {p}identity_map WHERE identifier_type IN ('customer_id', 'anonymous_id') "
            "AND unified_id IS NOT NULL GROUP BY identifier_type, identifier_value"
        )
    if "order_lines" in tables:
        if "record_map" in tables and "orders" in tables:
            q["purchases"] = (
                "SELECT DISTINCT CAST(rm.unified_id AS VARCHAR) AS person, "
                "CAST(l.item_id AS VARCHAR) AS item_id "
                f"FROM {p}order_lines l JOIN {p}orders o ON o.source = l.source "
                f"AND o.order_id = l.order_id JOIN {p}record_map rm "
                "ON rm.source_table = 'orders' AND rm.record_id = o.record_id "
                "WHERE coalesce(l.status, o.status, 'completed') = 'completed' "
                "AND l.item_id IS NOT NULL"
            )
        else:
            q["purchases"] = (
                "SELECT DISTINCT CAST(customer_id AS VARCHAR) AS person, "
                f"CAST(item_id AS VARCHAR) AS item_id FROM {p}order_lines "
                "WHERE coalesce(status, 'completed') = 'completed' "
                "AND customer_id IS NOT NULL AND item_id IS NOT NULL"
            )
    if "profiles" in tables and profile_cols:
        q["profiles"] = f"SELECT {', '.join(profile_cols)} FROM {p}profiles"
    if "erased" in tables:
        q["erased"] = f"SELECT DISTINCT CAST(unified_id AS VARCHAR) AS unified_id FROM {p}erased"
    if "_tombstones" in tables:
        q["_tombstones"] = f"SELECT DISTINCT identifier_type, identifier_hash FROM {p}_tombstones"
    if "scores" in tables:
        q["scores"] = f"SELECT * FROM {p}scores WHERE as_of = (SELECT max(as_of) FROM {p}scores)"
    if "segment_builds" in tables and "segment_members" in tables:
        q["segment_builds"] = f"SELECT * FROM {p}segment_builds"
        q["segment_members"] = (
            f"SELECT m.* FROM {p}segment_members m JOIN (SELECT segment, as_of FROM "
            "(SELECT segment, as_of, row_number() OVER (PARTITION BY segment "
            f"ORDER BY as_of DESC) AS rn FROM {p}segment_builds) x WHERE rn <= 2) b "
            "ON b.segment = m.segment AND b.as_of = m.as_of"
        )
    return q


def copy_store(settings: ServingSettings) -> tuple[DuckDBStore, dict[str, float]]:
    """An in-memory copy of the tables the service reads; returns it with timings.

    Raises:
        CIPError: the store is locked by a writer or unreachable (the caller
            keeps the previous snapshot and retries later).
    """
    mem = DuckDBStore(":memory:")
    t0 = time.perf_counter()
    if settings.store_backend == "duckdb":
        path = Path(settings.store_path or "cip.duckdb")
        if path.exists():
            _copy_duckdb(mem, path)
    else:
        _copy_postgres(mem, settings)
    return mem, {"copy_seconds": time.perf_counter() - t0}


def _copy_duckdb(mem: DuckDBStore, path: Path) -> None:
    con = mem.con
    try:
        con.execute(f"ATTACH {quote_literal(path)} AS src (READ_ONLY)")
    except Exception as exc:  # duckdb raises IOException / others on a lock conflict
        raise CIPError(f"cannot read the store {path} now: {str(exc).splitlines()[0]}") from None
    try:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src' "
                "AND table_schema = 'main'"
            ).fetchall()
        }
        pcols = []
        if "profiles" in tables:
            have = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
                    "'src' AND table_schema = 'main' AND table_name = 'profiles'"
                ).fetchall()
            }
            pcols = [c for c in PROFILE_COLUMNS if c in have]
        for name, sql in _queries(tables, pcols, "src.").items():
            con.execute(f"CREATE TABLE {quote_ident(name)} AS {sql}")
    finally:
        con.execute("DETACH src")


def _copy_postgres(mem: DuckDBStore, settings: ServingSettings) -> None:
    if not settings.store_url:
        raise CIPError("the postgres store needs a url")
    src = open_store("postgres", url=settings.store_url, schema=settings.store_schema)
    try:
        tables = set(src.table_names())
        tables |= set(
            src.sql(
                "SELECT table_name FROM information_schema.views WHERE table_schema = ?",
                [settings.store_schema],
            )["table_name"]
        )
        pcols = []
        if "profiles" in tables:
            have = set(src.sql("SELECT * FROM profiles WHERE FALSE").columns)
            pcols = [c for c in PROFILE_COLUMNS if c in have]
        for name, sql in _queries(tables, pcols, "").items():
            mem.load_arrow(name, src.arrow(sql), mode="replace")
    finally:
        src.close()


def store_signature(settings: ServingSettings) -> Any:
    """A cheap value that changes when the store changes (file times or PG write counters)."""
    if settings.store_backend == "duckdb":
        p = Path(settings.store_path or "cip.duckdb")
        sig = []
        for f in (p, Path(str(p) + ".wal")):
            try:
                st = os.stat(f)
                sig.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)
    try:
        src = open_store("postgres", url=settings.store_url, schema=settings.store_schema)
    except CIPError:
        return None
    try:
        row = src.sql(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) AS w, count(*) AS t "
            "FROM pg_stat_user_tables WHERE schemaname = ?",
            [settings.store_schema],
        ).iloc[0]
        return (int(row["w"]), int(row["t"]))
    finally:
        src.close()
