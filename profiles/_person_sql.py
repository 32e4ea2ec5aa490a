"""SQL building blocks shared by erasure, access requests and ingest suppression.

Everything here runs inside DuckDB, over *distinct* values, so finding one
person's identifiers in millions of rows stays a few vectorised statements:

* :func:`forms_sql` — every normalised form a raw identifier value can take
  (the identity resolver's e-mail rule, trimmed ids, the SQL-cleaned phone
  candidate that ``phonenumbers`` would parse);
* :func:`tokens_sql` — candidate identifier values inside a quarantined raw
  record (JSON or a raw text line): e-mail-shaped substrings and the fields
  between delimiters;
* :func:`install_key` / :func:`hmac_sql` — the workspace's keyed hash
  (:func:`profiles.privacy.hash_identifier`, HMAC-SHA256) computed in SQL, so
  tombstones are compared without a Python loop. The key lives in a one-row
  temporary table filled through parameters: it never appears in SQL text;
* portable helpers (DuckDB and PostgreSQL stores): :func:`stage` (a temporary
  table from Arrow), :func:`base_tables`, :func:`columns_of`, :func:`text_columns`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
from cip.profiles.contracts import IDENTIFIER_COLUMNS
from cip.profiles.errors import CIPError
from cip.profiles.identity.normalise import email_sql, id_sql, phone_clean_sql, phone_digits_sql
from cip.profiles.sql import checked_ident, quote_literal
from cip.profiles.store import DuckDBStore, Store

__all__ = [
    "ID_KINDS",
    "EMAIL_LIKE",
    "DELIMS",
    "forms_sql",
    "tokens_sql",
    "install_key",
    "hmac_sql",
    "stage",
    "drop",
    "base_tables",
    "columns_of",
    "text_columns",
    "in_list",
    "values_withheld",
    "value_forms_sql",
]

log = logging.getLogger(__name__)

#: Identifier kinds, as column names of the raw tables and tombstone types.
ID_KINDS: tuple[str, ...] = IDENTIFIER_COLUMNS
EMAIL_LIKE = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
DELIMS = r'[,;\t|"{}\[\]\n\r]+'
_MAX_TOKEN = 320


def _email(col: str, kw: Mapping[str, Any]) -> str:
    return email_sql(
        col,
        strip_plus=kw.get("email_strip_plus", True),
        dot_providers=kw.get("email_dot_providers", ("gmail.com", "googlemail.com")),
        domain_aliases=kw.get("email_domain_aliases"),
    )


def _phone(col: str, kw: Mapping[str, Any]) -> str:
    return phone_clean_sql(f"({phone_digits_sql(col)})", kw.get("region", "GB"))


def forms_sql(kind: str, col: str, kw: Mapping[str, Any]) -> str:
    """SQL: the normalised form of ``col`` as an identifier of ``kind`` (NULL if none).

    ``kw`` are :meth:`IdentityOptions.normaliser_kwargs`. Phones give the
    cleaned ``+<cc>...`` candidate, which equals the E.164 form for numbers
    written internationally or with the region's trunk prefix.
    """
    if kind == "email":
        return _email(col, kw)
    if kind == "phone":
        return _phone(col, kw)
    return id_sql(f"CAST({col} AS VARCHAR)")


def value_forms_sql(values: str, kw: Mapping[str, Any]) -> str:
    """SELECT ``kind, raw, form`` over a relation ``values(kind, raw)`` of distinct raw values."""
    parts = [
        f"SELECT kind, raw, {forms_sql(k, 'raw', kw)} AS form FROM {values} WHERE kind = '{k}'"
        for k in ID_KINDS
    ]
    return "SELECT * FROM (" + " UNION ALL ".join(parts) + ") f WHERE form IS NOT NULL"


def tokens_sql(relation: str, key: str, text: str, kw: Mapping[str, Any]) -> str:
    """SELECT ``key, kind, form`` of candidate identifiers inside ``relation.text``.

    E-mails are found anywhere (``regexp_extract_all``); ids and phones are the
    trimmed fields between JSON/CSV delimiters. Each token gets the forms of
    every kind it could be; comparing them with erased values decides.
    """
    emails = (
        f"SELECT {key} AS k, unnest(regexp_extract_all(CAST({text} AS VARCHAR), "
        f"'{EMAIL_LIKE}')) AS tok FROM {relation}"
    )
    fields = (
        f"SELECT k, trim(tok) AS tok FROM (SELECT {key} AS k, unnest(string_split_regex("
        f"CAST({text} AS VARCHAR), '{DELIMS}')) AS tok FROM {relation}) s "
        f"WHERE length(trim(tok)) BETWEEN 1 AND {_MAX_TOKEN}"
    )
    toks = f"(SELECT DISTINCT k, tok FROM ({emails} UNION ALL {fields}) u)"
    parts = [
        f"SELECT k AS {key}, '{kind}' AS kind, {forms_sql(kind, 'tok', kw)} AS form FROM {toks} t"
        for kind in ID_KINDS
    ]
    return "SELECT * FROM (" + " UNION ALL ".join(parts) + ") f WHERE form IS NOT NULL"


def install_key(con: duckdb.DuckDBPyConnection, salt: bytes) -> str:
    """A temporary one-row table ``(ipad, opad)`` of HMAC pads for ``salt``; returns its name."""
    key = (salt if len(salt) <= 64 else hashlib.sha256(salt).digest()).ljust(64, b"\0")
    name = f"_cip_key_{uuid.uuid4().hex[:8]}"
    con.execute(
        f"CREATE TEMP TABLE {name} AS SELECT CAST(? AS BLOB) AS ipad, CAST(? AS BLOB) AS opad",
        [bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)],
    )
    return name


def hmac_sql(kind_sql: str, value_sql: str, key: str) -> str:
    """SQL: :func:`profiles.privacy.hash_identifier` of ``kind:value`` (``key`` joined in)."""
    msg = f"encode({kind_sql} || ':' || {value_sql})"
    inner = f"unhex(sha256({key}.ipad || {msg}))"
    return f"substr(sha256({key}.opad || {inner}), 1, 32)"


def stage(store: Store, name: str, data: pa.Table) -> None:
    """A temporary table ``name`` holding ``data`` (never written to the database file)."""
    drop(store, name)
    if isinstance(store, DuckDBStore):
        view = f"{name}_arrow"
        store.con.register(view, data)
        try:
            store.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {view}")
        finally:
            store.con.unregister(view)
        return
    from cip.profiles.store import _copy_into, _pg_type

    ddl = ", ".join(f"{checked_ident(f.name)} {_pg_type(f.type)}" for f in data.schema)
    store.execute(f"CREATE TEMP TABLE {name} ({ddl})")
    _copy_into(store.con, name, ", ".join(checked_ident(c) for c in data.column_names), data)


def drop(store: Store, *names: str) -> None:
    for n in names:
        store.execute(f"DROP TABLE IF EXISTS {n}")


def base_tables(store: Store) -> list[str]:
    """The store's own base tables (no views, no temporary tables)."""
    if store.dialect == "duckdb":
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_schema = 'main' AND table_type = 'BASE TABLE'"
        )
        return sorted(store.sql(sql)["table_name"].astype(str))
    schema = getattr(store, "schema", "public")
    return sorted(
        store.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "AND table_type = 'BASE TABLE'",
            [schema],
        )["table_name"].astype(str)
    )


def columns_of(store: Store, table: str) -> list[str]:
    """Column names of a base table of the store, in order."""
    if store.dialect == "duckdb":
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
            "current_database() AND table_schema = 'main' AND table_name = ? "
            "ORDER BY ordinal_position"
        )
        return [str(c) for c in store.sql(sql, [table])["column_name"]]
    return [
        str(c)
        for c in store.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            [getattr(store, "schema", "public"), table],
        )["column_name"]
    ]


def text_columns(store: Store, table: str) -> list[str]:
    """Columns of ``table`` holding text (strings, lists of strings, JSON)."""
    if store.dialect == "duckdb":
        sql = (
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = "
            "current_database() AND table_schema = 'main' AND table_name = ?"
        )
        df = store.sql(sql, [table])
    else:
        df = store.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ?",
            [getattr(store, "schema", "public"), table],
        )
    keep = ("CHAR", "TEXT", "JSON", "[]", "ARRAY", "STRING")
    return [
        str(c)
        for c, t in zip(df["column_name"], df["data_type"], strict=True)
        if any(k in str(t).upper() for k in keep)
    ]


@contextmanager
def values_withheld(what: str) -> Iterator[None]:
    """Turn unexpected database errors into a :class:`CIPError` that quotes no data.

    Engine messages can echo SQL text or values (``LINE 1: ...``, "could not
    convert 'ann@...'"); erasure and access requests handle personal data, so
    only the error's type reaches the terminal and the log.
    """
    try:
        yield
    except CIPError:
        raise
    except Exception as exc:
        log.error(
            "%s failed: %s (message withheld: it may quote personal data)", what, type(exc).__name__
        )
        raise CIPError(f"{what} failed ({type(exc).__name__}); the store is unchanged") from None


def in_list(values: Sequence[str]) -> str:
    """A SQL ``IN`` list of string literals (``('a', 'b')``; ``(NULL)`` when empty)."""
    if not values:
        return "(NULL)"
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"
