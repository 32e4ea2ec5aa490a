"""SQL quoting: the one place that turns names and values into SQL text.

Every module that builds SQL quotes through these helpers (DuckDB and
PostgreSQL share the standard rules): identifiers in double quotes, string
literals in single quotes, the quote character doubled inside. Values that
come from users go in as query parameters (``?``) wherever the statement
allows it; these helpers are for names and for the few places (DuckDB file
paths, ``IN`` lists of staged values) where a literal is needed.
"""

from __future__ import annotations

import os
import re

from cip.profiles.errors import ConfigError

__all__ = ["quote_ident", "quote_literal", "checked_ident"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """A SQL identifier: ``a"b`` -> ``"a""b"`` (any name is safe)."""
    return '"' + str(name).replace('"', '""') + '"'


def checked_ident(name: str, what: str = "table or column name") -> str:
    """:func:`quote_ident` of a plain name (letters, digits, ``_``); else a ConfigError."""
    if not _IDENT.match(name):
        raise ConfigError(f"invalid {what}: {name!r}")
    return quote_ident(name)


def quote_literal(value: str | os.PathLike[str] | object) -> str:
    """A SQL string literal: ``it's`` -> ``'it''s'`` (paths and other values as ``str``)."""
    return "'" + str(value).replace("'", "''") + "'"
