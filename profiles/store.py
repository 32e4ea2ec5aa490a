"""The profile store: canonical tables in DuckDB (embedded default) or PostgreSQL.

The store is a thin layer over a SQL connection. Heavy work stays in the
database engine; pandas/Arrow are the hand-off formats. Every multi-statement
write runs inside :meth:`Store.transaction`, so a crash leaves the store as it
was (stage, then swap).

``orders`` is a view: the union of orders-only sources (physical table
``_orders_src``) and orders aggregated from ``order_lines``, so a line-level
export and an orders export are equally valid and never disagree.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
from cip.profiles.contracts import SCHEMAS, TableSchema
from cip.profiles.errors import CIPError, ConfigError, NotFoundError
from cip.profiles.sql import checked_ident, quote_ident

__all__ = [
    "Store",
    "DuckDBStore",
    "PostgresStore",
    "open_store",
    "physical_table",
    "scratch_duckdb",
]

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ORDERS_SRC = "_orders_src"


def physical_table(table: str) -> str:
    """The physical table a source targeting ``table`` writes into."""
    return ORDERS_SRC if table == "orders" else table


_q = checked_ident


def scratch_duckdb(memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB for driver-side work beside a store (UTC, no progress bar).

    ``memory_limit`` (e.g. ``"6GB"``; ``None``: DuckDB's default, 80 % of the RAM) bounds
    it; past the limit it spills to a folder of its own under the system's temporary
    folder, which DuckDB removes when the connection is closed.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    spill = Path(tempfile.gettempdir()) / f"cip-duckdb-{uuid.uuid4().hex[:12]}"
    con.execute(f"SET temp_directory = '{spill.as_posix()}'")
    return con


def _orders_view_sql(dialect: str) -> str:
    line_cols = SCHEMAS["orders"].names
    agg = {
        "source": "l.source",
        "record_id": "md5(l.source || ':order_lines:' || l.order_id)",
        "source_record_id": "l.order_id",
        "ingested_at": "max(l.ingested_at)",
        "order_id": "l.order_id",
        "ts": "min(l.ts)",
        "customer_id": "max(l.customer_id)",
        "email": "max(l.email)",
        "phone": "max(l.phone)",
        "loyalty_id": "max(l.loyalty_id)",
        "anonymous_id": "max(l.anonymous_id)",
        "amount": "sum(l.quantity * l.unit_price)",
        "currency": "max(l.currency)",
        "status": "max(coalesce(l.status, 'completed'))",
        "channel": "max(l.channel)",
        "delivery_days": "CAST(NULL AS DOUBLE PRECISION)"
        if dialect == "postgres"
        else "CAST(NULL AS DOUBLE)",
    }
    derived = ", ".join(f"{agg[c]} AS {quote_ident(c)}" for c in line_cols)
    cols = ", ".join(quote_ident(c) for c in line_cols)
    return (
        f"CREATE OR REPLACE VIEW orders AS "
        f"SELECT {cols} FROM {ORDERS_SRC} "
        f"UNION ALL "
        f"SELECT {derived} FROM order_lines l "
        f"WHERE NOT EXISTS (SELECT 1 FROM {ORDERS_SRC} o "
        f"WHERE o.order_id = l.order_id AND o.source = l.source) "
        f"GROUP BY l.source, l.order_id"
    )


class Store:
    """Common interface of the store backends."""

    backend: str = "abstract"
    dialect: str = "duckdb"
    #: memory bound of the driver-side DuckDB that works beside this store (ingest's
    #: staging, statements run on the driver); ``None``: DuckDB's default
    scratch_memory_limit: str | None = None

    # -- primitives every backend implements ---------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run a statement; returns the affected row count where known (else -1)."""
        raise NotImplementedError

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query and return its result as a pandas DataFrame."""
        raise NotImplementedError

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run a query and return its result as an Arrow table."""
        raise NotImplementedError

    def table_names(self) -> list[str]:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic unit of writes (thread-safe); a nested call joins the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._outermost_transaction():
                    yield self
            finally:
                self._depth = 0

    def _outermost_transaction(self) -> contextlib.AbstractContextManager[Any]:
        """The engine's own transaction: commit when the block ends, undo on an error."""
        raise NotImplementedError

    def load_arrow(self, table: str, data: pa.Table | pd.DataFrame, *, mode: str = "append") -> int:
        """Write ``data`` into ``table``; ``mode`` is ``append``, ``replace`` or ``create``.

        ``replace`` swaps the whole table atomically (stage, then rename) and
        creates it with the data's schema; ``append`` requires the table.
        """
        raise NotImplementedError

    def ibis(self) -> Any:
        """An Ibis backend over the same database (for portable feature queries)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------
    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def count(self, table: str) -> int:
        if not self.has_table(table):
            raise NotFoundError(f"table {table!r} does not exist in the store")
        return int(self.sql(f"SELECT count(*) AS n FROM {_q(table)}")["n"].iloc[0])

    def read_table(self, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        if not self.has_table(table):
            raise NotFoundError(f"table {table!r} does not exist in the store")
        cols = ", ".join(_q(c) for c in columns) if columns else "*"
        return self.sql(f"SELECT {cols} FROM {_q(table)}")

    def ensure_schema(self) -> None:
        """Create the canonical tables and the ``orders`` view if missing."""
        with self.transaction():
            for name, sch in SCHEMAS.items():
                self.execute(sch.ddl(physical_table(name), dialect=self.dialect))
            self.execute(_orders_view_sql(self.dialect))

    def create_table(self, schema: TableSchema, name: str | None = None) -> None:
        self.execute(schema.ddl(name, dialect=self.dialect))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBStore(Store):
    """The embedded default: one DuckDB file in the workspace."""

    backend = "duckdb"
    dialect = "duckdb"

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            from cip.profiles.errors import ConflictError  # noqa: PLC0415 (busy: exit 75)

            busy = "lock" in str(exc).lower()  # another process holds it: try again later
            kind = ConflictError if busy else CIPError
            raise kind(f"cannot open the store {self.path}: {exc}") from None
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET TimeZone = 'UTC'")
        with contextlib.suppress(duckdb.Error):  # Jupyter refuses the setting without ipywidgets
            self.con.execute(
                "SET enable_progress_bar = false"
            )  # it writes to stdout (breaks --json)
        self._lock = threading.RLock()
        self._depth = 0
        self._ibis = None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        with self._lock:
            cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
            try:
                row = cur.fetchone()
            except duckdb.InvalidInputException:
                return -1
            if row is not None and len(row) == 1 and isinstance(row[0], int):
                return int(row[0])
            return -1

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
            return cur.df()

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self._lock:
            rel = self.con.sql(sql, params=params) if params is not None else self.con.sql(sql)
            return rel.to_arrow_table()

    def table_names(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        return sorted(r[0] for r in rows)

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def load_arrow(self, table: str, data: pa.Table | pd.DataFrame, *, mode: str = "append") -> int:
        view = f"_cip_load_{threading.get_ident()}"
        with self._lock:
            self.con.register(view, data)
            try:
                with self.transaction():
                    if mode == "append":
                        names = data.column_names if isinstance(data, pa.Table) else data.columns
                        cols = ", ".join(_q(c) for c in names)
                        self.con.execute(
                            f"INSERT INTO {_q(table)} ({cols}) SELECT {cols} FROM {view}"
                        )
                    elif mode in ("replace", "create"):
                        if mode == "create" and self.has_table(table):
                            raise CIPError(f"table {table!r} already exists")
                        self.con.execute(
                            f"CREATE OR REPLACE TABLE {_q(table)} AS SELECT * FROM {view}"
                        )
                    else:
                        raise ValueError(f"mode must be append, replace or create, not {mode!r}")
            finally:
                self.con.unregister(view)
        return len(data)

    def ibis(self) -> Any:
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.con)
        return self._ibis

    def close(self) -> None:
        self.con.close()


class PostgresStore(Store):
    """PostgreSQL as the profile store (one schema per workspace)."""

    backend = "postgres"
    dialect = "postgres"

    def __init__(self, url: str, *, schema: str = "cip") -> None:
        import psycopg

        if not _IDENT.match(schema):
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self.url = url
        self.schema = schema
        try:
            self.con = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise CIPError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from None
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        self.con.execute(f"SET search_path TO {quote_ident(schema)}")
        self.con.execute("SET TIME ZONE 'UTC'")
        self._lock = threading.RLock()
        self._depth = 0
        self._ibis = None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        with self._lock:
            cur = self.con.execute(_pg_params(sql), params)
            return cur.rowcount if cur.rowcount is not None else -1

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            cur = self.con.execute(_pg_params(sql), params)
            cols = [d.name for d in cur.description] if cur.description else []
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return pa.Table.from_pandas(self.sql(sql, params), preserve_index=False)

    def table_names(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self.schema,),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _outermost_transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self.con.transaction()

    def load_arrow(self, table: str, data: pa.Table | pd.DataFrame, *, mode: str = "append") -> int:
        tbl = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        cols = ", ".join(_q(c) for c in tbl.column_names)
        with self._lock, self.transaction():
            target = table
            if mode in ("replace", "create"):
                if mode == "create" and self.has_table(table):
                    raise CIPError(f"table {table!r} already exists")
                target = f"_stage_{table}"
                ddl = ", ".join(f"{_q(f.name)} {_pg_type(f.type)}" for f in tbl.schema)
                self.con.execute(f"DROP TABLE IF EXISTS {_q(target)}")
                self.con.execute(f"CREATE TABLE {_q(target)} ({ddl})")
            elif mode != "append":
                raise ValueError(f"mode must be append, replace or create, not {mode!r}")
            _copy_into(self.con, target, cols, tbl)
            if target != table:
                self.con.execute(f"DROP TABLE IF EXISTS {_q(table)} CASCADE")
                self.con.execute(f"ALTER TABLE {_q(target)} RENAME TO {_q(table)}")
        return tbl.num_rows

    def ibis(self) -> Any:
        if self._ibis is None:
            import ibis

            self._ibis = ibis.connect(self.url)
            self._ibis.raw_sql(f"SET search_path TO {quote_ident(self.schema)}")
        return self._ibis

    def close(self) -> None:
        self.con.close()


def _copy_into(con: Any, table: str, cols: str, tbl: pa.Table) -> None:
    """COPY an Arrow table into PostgreSQL through CSV (fast, typed by the target)."""
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    if tbl.num_rows:
        pacsv.write_csv(tbl, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    with (
        con.cursor() as cur,
        cur.copy(f"COPY {_q(table)} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '')") as copy,
    ):
        copy.write(buf.getvalue())


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    return "TEXT"


def _pg_params(sql: str) -> str:
    """Translate DuckDB-style ``?`` placeholders to psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s") if "?" in sql else sql


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def open_store(
    backend: str = "duckdb",
    *,
    path: str | Path | None = None,
    url: str | None = None,
    schema: str = "cip",
    read_only: bool = False,
    memory_limit: str | None = None,
    spark: dict[str, Any] | None = None,
) -> Store:
    """Open a store by backend name.

    ``duckdb`` needs ``path`` (the database file), ``postgres`` needs ``url``;
    ``spark`` takes ``path`` as the warehouse folder and ``spark`` as
    ``{"master": ..., "conf": {...}}`` (see :mod:`cip.profiles._spark_store`).
    """
    if backend == "duckdb":
        store: Store = DuckDBStore(
            path or ":memory:", read_only=read_only, memory_limit=memory_limit
        )
    elif backend == "postgres":
        if not url:
            raise ConfigError("store backend 'postgres' needs a url")
        store = PostgresStore(url, schema=schema)
    elif backend == "spark":
        from cip.profiles._spark_store import SPARK_DEFAULT_MASTER, SparkStore

        if not path:
            raise ConfigError("store backend 'spark' needs a warehouse path")
        opts = spark or {}
        store = SparkStore(
            path,
            master=opts.get("master") or SPARK_DEFAULT_MASTER,
            conf={str(k): str(v) for k, v in (opts.get("conf") or {}).items()},
        )
    else:
        raise ConfigError(f"unknown store backend {backend!r}; expected duckdb, postgres or spark")
    if not read_only:
        store.ensure_schema()
    return store
