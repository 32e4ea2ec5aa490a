"""Database sources (PostgreSQL, MySQL / MariaDB): stream a table or query into DuckDB.

A database source is read through a server-side cursor, ``chunk_rows`` rows per
round trip, and each chunk is appended to a DuckDB table, so the Python side
holds one chunk at a time however big the source is (DuckDB spills its own
table to disk past its memory limit). Every column arrives as text, like a CSV
export, and the ingest mapping types it.

Incremental sources (``incremental: {column: updated_at}``) are read in one
consistent snapshot of the source database:

1. ``hi = max(column)`` over the rows at or past the stored watermark;
2. the rows with ``watermark <= column <= hi`` are streamed;
3. the caller stores ``hi`` as the new watermark in the same store transaction as
   the load (see :func:`profiles.ingest.ingest_source`), so a crash before the
   commit leaves the old watermark and the next ingest reads the same rows again.

The bound is ``>=``, not ``>``: a row committed later with exactly the watermark
value is still read, and the rows read again are recognised by their record id
(an MD5 of their content) and counted as already there. A row whose column
value is *older* than the watermark when it becomes visible (a long transaction
that stamped ``updated_at`` before a later-stamped one committed) is not read
incrementally; ``cip ingest --full`` reads everything again.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import numpy as np
import pyarrow as pa
from cip.profiles.errors import ConfigError, SourceError
from cip.profiles.sources import DatabaseSourceConfig, SourceConfig

log = logging.getLogger(__name__)

__all__ = ["Watermark", "DbRead", "read_database", "encode_watermark", "decode_watermark"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class Watermark:
    """How far an incremental source was read: a column and its largest value loaded."""

    column: str
    value: Any  # a Python value as the driver returns it (datetime, int, Decimal, str...)

    @property
    def text(self) -> str:
        return encode_watermark(self.value)[0]


@dataclass
class DbRead:
    """What :func:`read_database` read: rows, columns and the new watermark (or None)."""

    kind: str  # postgres | mysql
    rows: int
    columns: list[str]
    watermark: Watermark | None
    since: Watermark | None  # the watermark the read started from (None: everything)


def encode_watermark(value: Any) -> tuple[str, str]:
    """``(text, value_type)`` of a watermark value, for the ``_source_watermarks`` table."""
    if isinstance(value, bool):
        return str(int(value)), "int"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, decimal.Decimal):
        return str(value), "decimal"
    if isinstance(value, float):
        return repr(value), "float"
    if isinstance(value, dt.datetime):
        return value.isoformat(), "datetime"
    if isinstance(value, dt.date):
        return value.isoformat(), "date"
    return str(value), "text"


def decode_watermark(text: str, value_type: str) -> Any:
    """The Python value of a stored watermark (inverse of :func:`encode_watermark`)."""
    if value_type == "int":
        return int(text)
    if value_type == "decimal":
        return decimal.Decimal(text)
    if value_type == "float":
        return float(text)
    if value_type == "datetime":
        return dt.datetime.fromisoformat(text)
    if value_type == "date":
        return dt.date.fromisoformat(text)
    return text


def _kind(src: SourceConfig) -> tuple[str, DatabaseSourceConfig]:
    if src.postgres is not None:
        return "postgres", src.postgres
    assert src.mysql is not None
    return "mysql", src.mysql


def _table_sql(kind: str, name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME.match(p) for p in parts):
        raise SourceError(f"invalid {kind} table name {name!r}")
    q = '"' if kind == "postgres" else "`"
    return ".".join(f"{q}{p}{q}" for p in parts)


def _column_sql(kind: str, name: str) -> str:
    q = '"' if kind == "postgres" else "`"
    return q + name.replace(q, q + q) + q


def _base_query(kind: str, db: DatabaseSourceConfig) -> str:
    if db.table is not None:
        return f"SELECT * FROM {_table_sql(kind, db.table)}"
    assert db.query is not None
    return db.query.strip().rstrip(";")


def read_database(
    con: duckdb.DuckDBPyConnection,
    src: SourceConfig,
    *,
    since: Watermark | None,
    stage: str,
) -> DbRead:
    """Stream ``src`` (rows at or past ``since``) into the DuckDB table ``stage``.

    ``stage`` gets the source's columns (text) plus ``_file`` (``postgres`` or
    ``mysql``) and ``_row`` (1-based, in read order). For an incremental source the
    result carries the new watermark (``since`` when nothing new was found); a full
    read of an incremental source (``since=None``) sets it from scratch.
    """
    kind, db = _kind(src)
    col = db.incremental.column if db.incremental else None
    base = _base_query(kind, db)
    params: list = []
    hi_sql = None
    if col is not None:
        c = _column_sql(kind, col)
        lo = f" WHERE {c} >= %s" if since is not None else ""
        hi_sql = f"SELECT max({c}) FROM ({_esc(base)}) AS _cip_src{lo}"
        params = [since.value] if since is not None else []
    reader = _read_postgres if kind == "postgres" else _read_mysql
    try:
        columns, n, hi = reader(
            con, src, db, base, col, since, hi_sql, params, stage, db.chunk_rows
        )
    except (SourceError, ConfigError):
        raise
    except Exception as exc:  # the drivers' own errors: one line naming the source
        if isinstance(exc, duckdb.Error):
            raise
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(f"source {src.name!r}: {kind} read failed: {_redact(msg)}") from None
    watermark = None
    if col is not None:
        watermark = Watermark(col, hi) if hi is not None else since
    log.info(
        "source %s: read %d rows from %s%s",
        src.name,
        n,
        kind,
        f" ({col} >= {since.text})" if since is not None else "",
    )
    return DbRead(kind, n, columns, watermark, since)


def _range_query(kind: str, base: str, col: str | None, since: Watermark | None) -> str:
    if col is None:
        return base
    c = _column_sql(kind, col)
    cond = [f"{c} <= %s"]
    if since is not None:
        cond.insert(0, f"{c} >= %s")
    return f"SELECT * FROM ({_esc(base)}) AS _cip_src WHERE " + " AND ".join(cond)


def _esc(sql: str) -> str:
    """Double the ``%`` of user SQL that is run with parameters (both drivers use ``%s``)."""
    return sql.replace("%", "%%")


class _Sink:
    """Appends chunks of DB-API rows to a DuckDB table as text columns."""

    def __init__(self, con: duckdb.DuckDBPyConnection, stage: str, kind: str, columns: list[str]):
        self.con, self.stage, self.kind, self.columns = con, stage, kind, columns
        self.n = 0
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise SourceError(f"the {kind} result has duplicate column names: {dup}")
        cols = ", ".join(f'"{c.replace(chr(34), chr(34) * 2)}" VARCHAR' for c in columns)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage} ({cols}{', ' if cols else ''}"
            f"_file VARCHAR, _row BIGINT)"
        )

    def add(self, rows: list[tuple]) -> None:
        if not rows:
            return
        arrays = []
        for values in zip(*rows, strict=True):
            arrays.append(_text_array(values))
        n = len(rows)
        arrays.append(pa.array([self.kind] * n, pa.string()))
        arrays.append(pa.array(np.arange(self.n + 1, self.n + n + 1, dtype=np.int64)))
        batch = pa.table(arrays, names=[*self.columns, "_file", "_row"])
        self.con.register("_cip_db_chunk", batch)
        try:
            self.con.execute(f"INSERT INTO {self.stage} SELECT * FROM _cip_db_chunk")
        finally:
            self.con.unregister("_cip_db_chunk")
        self.n += n


def _text_array(values: tuple) -> pa.Array:
    """One column of a chunk as text (timestamps in ISO 8601, with their offset if aware)."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = pa.array([None if v is None else _text(v) for v in values], pa.string())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type) or pa.types.is_time(arr.type):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())
    if (
        pa.types.is_binary(arr.type)
        or pa.types.is_large_binary(arr.type)
        or pa.types.is_nested(arr.type)
    ):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(v: Any) -> str:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v.isoformat()
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, dict | list):  # PostgreSQL json/jsonb and arrays: JSON text
        return json.dumps(v, default=str, ensure_ascii=False)
    return str(v)


def _read_postgres(
    con: duckdb.DuckDBPyConnection,
    src: SourceConfig,
    db: DatabaseSourceConfig,
    base: str,
    col: str | None,
    since: Watermark | None,
    hi_sql: str | None,
    params: list,
    stage: str,
    chunk: int,
) -> tuple[list[str], int, Any]:
    import psycopg

    with psycopg.connect(db.url) as pcon:
        # one consistent, read-only snapshot for the bound and the rows
        pcon.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        hi = None
        if hi_sql is not None:
            hi = pcon.execute(hi_sql, params).fetchone()[0]
            if hi is None:  # nothing at or past the watermark: an empty read
                return _empty_pg(pcon, con, base, stage), 0, None
        query = _range_query("postgres", base, col, since)
        qparams = None if col is None else [*params, hi]
        with pcon.cursor(name=f"cip_{stage}") as cur:
            cur.itersize = chunk
            cur.execute(query, qparams)
            columns = [d.name for d in cur.description or []]
            sink = _Sink(con, stage, "postgres", columns)
            while rows := cur.fetchmany(chunk):
                sink.add(rows)
        return columns, sink.n, hi


def _empty_pg(pcon: Any, con: duckdb.DuckDBPyConnection, base: str, stage: str) -> list[str]:
    cur = pcon.execute(f"SELECT * FROM ({base}) AS _cip_src LIMIT 0")
    columns = [d.name for d in cur.description or []]
    _Sink(con, stage, "postgres", columns)
    return columns


def _text_decoders() -> dict:
    """PyMySQL's converters, less the Python parsing of dates, times and decimals.

    Those values then arrive as the server's text (``2024-01-01 10:00:00.000000``,
    ``12.50``), which the ingest mapping types in DuckDB: half the read time of
    building datetime and Decimal objects only to turn them back into text.
    """
    import pymysql.converters as conv
    from pymysql.constants import FIELD_TYPE as F

    skip = {F.DATETIME, F.TIMESTAMP, F.DATE, F.TIME, F.DECIMAL, F.NEWDECIMAL}
    return {**conv.encoders, **{k: v for k, v in conv.decoders.items() if k not in skip}}


def _mysql_value(value: Any, type_code: int) -> Any:
    """A value read as text, typed as PyMySQL would (for the watermark)."""
    import pymysql.converters as conv

    if isinstance(value, str) and type_code in conv.decoders:
        return conv.decoders[type_code](value)
    return value


def _mysql_connect(url: str) -> Any:
    import pymysql

    u = urlparse(url)
    if u.scheme.split("+")[0] not in ("mysql", "mariadb"):
        raise ConfigError(f"mysql url must start with mysql:// or mariadb://, not {u.scheme}://")
    return pymysql.connect(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=unquote(u.username) if u.username else "root",
        password=unquote(u.password) if u.password else "",
        database=u.path.lstrip("/") or None,
        charset="utf8mb4",
        cursorclass=pymysql.cursors.SSCursor,  # server-side: rows stream, not buffered
        init_command="SET time_zone = '+00:00'",
        conv=_text_decoders(),
        connect_timeout=10,
    )


def _read_mysql(
    con: duckdb.DuckDBPyConnection,
    src: SourceConfig,
    db: DatabaseSourceConfig,
    base: str,
    col: str | None,
    since: Watermark | None,
    hi_sql: str | None,
    params: list,
    stage: str,
    chunk: int,
) -> tuple[list[str], int, Any]:
    mcon = _mysql_connect(db.url)
    try:
        with mcon.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            hi = None
            if hi_sql is not None:
                cur.execute(hi_sql, params)
                type_code = cur.description[0][1]
                hi = _mysql_value(cur.fetchall()[0][0], type_code)
            query = _range_query("mysql", base, col, since)
            if col is not None and hi is None:
                query = f"SELECT * FROM ({base}) AS _cip_src LIMIT 0"
                qparams = None
            else:
                qparams = None if col is None else [*params, hi]
            cur.execute(query, qparams)
            columns = [d[0] for d in cur.description or []]
            sink = _Sink(con, stage, "mysql", columns)
            while rows := cur.fetchmany(chunk):
                sink.add(list(rows))
            cur.execute("COMMIT")
        return columns, sink.n, hi
    finally:
        mcon.close()


def _redact(msg: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", msg)
