"""Normalisation of identifier values (emails, phones, ids).

String rules run as SQL in DuckDB (vectorised, multi-threaded) over the
*distinct* raw values; phone numbers then go through the ``phonenumbers``
library (Google's libphonenumber) once per distinct cleaned number, with an
in-process cache. Numbers written nationally (``020 7946 0958``) and
internationally (``+44 20 7946 0958``, ``0044...``) are first rewritten to one
candidate form so the library sees each number once.

The pandas functions (:func:`normalise_email`, :func:`normalise_phone`,
:func:`normalise_id`) take a Series of raw values and return the normalised
values (``<NA>`` when empty or invalid) with the same index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import pandas as pd
from cip.profiles.identity._phone_worker import e164_one
from cip.profiles.sql import quote_literal

__all__ = [
    "ID_TYPES",
    "normalise_email",
    "normalise_phone",
    "normalise_id",
    "normalise_identifier",
    "email_sql",
    "id_sql",
    "phone_clean_sql",
    "phone_digits_sql",
    "e164",
]

#: Identifier types in order of trust (mirrors ``profiles.contracts.IDENTIFIER_COLUMNS``).
ID_TYPES: tuple[str, ...] = ("customer_id", "email", "phone", "loyalty_id", "anonymous_id")

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_EMAIL = rf"[^@\s]+@{_LABEL}(?:\.{_LABEL})*\.[a-z]{{2,}}"
_EXTENSION = r"(?i)\s*(?:ext\.?|extension|x|#)\s*\d+\s*$"
_PARALLEL_FROM = 40_000  # distinct numbers from which phonenumbers runs in worker processes
_WORKERS = 2


def id_sql(col: str) -> str:
    """SQL: a trimmed id, NULL when empty."""
    return f"NULLIF(trim({col}), '')"


def email_sql(
    col: str,
    *,
    strip_plus: bool = True,
    dot_providers: Iterable[str] = ("gmail.com", "googlemail.com"),
    domain_aliases: Mapping[str, str] | None = None,
) -> str:
    """SQL: a normalised e-mail (trim, lower case, ``+tag`` and provider dots removed).

    Not a valid address (one ``@``, a dotted domain with a 2+ letter top level)
    gives NULL.
    """
    v = f"lower(trim({col}))"
    local = f"regexp_extract({v}, '^(.*)@[^@]*$', 1)"
    domain = f"regexp_extract({v}, '@([^@]*)$', 1)"
    if domain_aliases:
        whens = " ".join(
            f"WHEN {quote_literal(k.lower())} THEN {quote_literal(v_.lower())}"
            for k, v_ in domain_aliases.items()
        )
        domain = f"(CASE {domain} {whens} ELSE {domain} END)"
    if strip_plus:
        local = f"regexp_replace({local}, '^([^+]+)\\+.*$', '\\1')"
    dots = [d.lower() for d in dot_providers]
    if dots:
        local = (
            f"(CASE WHEN {domain} IN ({', '.join(quote_literal(d) for d in dots)}) "
            f"THEN replace({local}, '.', '') ELSE {local} END)"
        )
    return (
        f"(CASE WHEN regexp_full_match({v}, {quote_literal(_EMAIL)}) AND length({local}) > 0 "
        f"THEN {local} || '@' || {domain} END)"
    )


def _prefixes(region: str) -> tuple[str | None, str | None, int | None]:
    """(international prefix, national prefix, country code) usable for a safe rewrite."""
    import phonenumbers

    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None:
        return None, None, None
    intl = meta.international_prefix if (meta.international_prefix or "").isdigit() else None
    nat = meta.national_prefix if (meta.national_prefix or "").isdigit() else None
    parsing = meta.national_prefix_for_parsing
    if nat and (meta.national_prefix_transform_rule or (parsing and parsing.split("|")[0] != nat)):
        nat = None
    return intl, nat, meta.country_code


def phone_clean_sql(col: str, region: str) -> str:
    """SQL over ``(SELECT <col> FROM ...)``: digits and ``+`` only, rewritten to ``+<cc>...``.

    The extension is dropped; ``00 44 ...`` (the region's international prefix)
    becomes ``+44...`` and a national number with the region's trunk prefix
    (``020 ...`` in GB) becomes ``+44 20 ...``: the number ``phonenumbers``
    would parse anyway, so the library sees one candidate per number. Other
    values are left as cleaned; no digit at all gives NULL. Use as
    ``SELECT raw, <expr> FROM (SELECT raw, <digits> AS c FROM ...)`` via
    :func:`phone_digits_sql`; ``col`` names that cleaned column.
    """
    intl, nat, cc = _prefixes(region)
    cases = []
    if intl:
        cases.append(
            f"WHEN starts_with({col}, {quote_literal(intl)}) THEN '+' || substr({col}, {len(intl) + 1})"
        )
    if nat:
        cases.append(
            f"WHEN starts_with({col}, {quote_literal(nat)}) THEN '+{cc}' || substr({col}, {len(nat) + 1})"
        )
    rewrite = f"(CASE WHEN starts_with({col}, '+') THEN {col} {' '.join(cases)} ELSE {col} END)"
    return f"(CASE WHEN regexp_matches({col}, '[0-9]') THEN {rewrite} END)"


def phone_digits_sql(col: str) -> str:
    """SQL: the raw phone with its extension dropped and only digits and ``+`` kept."""
    return f"regexp_replace(regexp_replace(trim({col}), {quote_literal(_EXTENSION)}, ''), '[^0-9+]', '', 'g')"


def e164(cleaned: pd.Series, *, region: str = "GB", validation: str = "valid") -> pd.Series:
    """E.164 form of each distinct cleaned number (``phonenumbers``; NA when invalid).

    ``validation="valid"`` keeps numbers valid in the numbering plan (a
    placeholder such as ``0000000000`` fails); ``"possible"`` only checks length.
    """
    if validation not in ("valid", "possible"):
        raise ValueError(f"validation must be 'valid' or 'possible', not {validation!r}")
    strict, region = validation == "valid", region.upper()
    items = [c if isinstance(c, str) else None for c in cleaned]
    workers = min(_WORKERS, os.cpu_count() or 1)
    if workers > 1 and len(items) >= _PARALLEL_FROM:
        values = _e164_parallel(items, region, strict, workers)
    else:
        values = _e164_many(items, region, strict)
    return pd.Series(values, index=cleaned.index, dtype="string")


def _e164_parallel(items: list[str | None], region: str, strict: bool, workers: int) -> list:
    """libphonenumber is pure Python: share a big batch with helper processes.

    Helpers are plain ``python -m`` subprocesses fed through pipes (cleaned
    numbers hold only digits and ``+``, one per line), so nothing depends on
    the caller's ``__main__`` module or on forking a threaded process.
    """
    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    script = str(Path(__file__).with_name("_phone_worker.py"))
    results: dict[int, str] = {}
    threads = []
    for k, chunk in enumerate(chunks[1:], start=1):
        proc = subprocess.Popen(
            [sys.executable, script, region, str(int(strict))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        data = "\n".join(c or "" for c in chunk) + "\n"

        def talk(p: subprocess.Popen = proc, d: str = data, key: int = k) -> None:
            results[key] = p.communicate(d)[0]

        t = threading.Thread(target=talk)
        t.start()
        threads.append((t, proc))
    values = _e164_many(chunks[0], region, strict)
    for k, (t, proc) in enumerate(threads, start=1):
        t.join()
        if proc.returncode != 0:
            raise RuntimeError(f"phone normalisation helper failed (exit {proc.returncode})")
        values += [v or None for v in results[k].split("\n")[: len(chunks[k])]]
    return values


def _e164_many(items: list[str | None], region: str, strict: bool) -> list[str | None]:
    return [e164_one(c, region, strict) if c is not None else None for c in items]


def _run(sql_expr: str, values: pd.Series, source: str = "v") -> pd.Series:
    frame = pd.DataFrame({"raw": values.astype("string").to_numpy()})
    con = duckdb.connect()
    try:
        con.register("v", frame)
        got = con.sql(f"SELECT {sql_expr} AS out FROM {source}").df()["out"]
    finally:
        con.close()
    return pd.Series(got.to_numpy(), index=values.index, dtype="string")


def normalise_email(
    values: pd.Series,
    *,
    strip_plus: bool = True,
    dot_providers: Iterable[str] = ("gmail.com", "googlemail.com"),
    domain_aliases: Mapping[str, str] | None = None,
) -> pd.Series:
    """Normalise e-mail addresses (see :func:`email_sql`)."""
    return _run(
        email_sql(
            "raw", strip_plus=strip_plus, dot_providers=dot_providers, domain_aliases=domain_aliases
        ),
        values,
    )


def normalise_phone(
    values: pd.Series, *, region: str = "GB", validation: str = "valid"
) -> pd.Series:
    """Normalise phone numbers to E.164 (``+447911123456``); NA when invalid."""
    cleaned = _run(
        phone_clean_sql("c", region), values, f"(SELECT {phone_digits_sql('raw')} AS c FROM v)"
    )
    uniq = pd.Series(cleaned.dropna().unique())
    lookup = pd.Series(
        e164(uniq, region=region, validation=validation).to_numpy(),
        index=uniq.to_numpy(),
        dtype="string",
    )
    return cleaned.map(lookup).astype("string")


def normalise_id(values: pd.Series) -> pd.Series:
    """Trim an opaque id (customer, loyalty, anonymous); empty strings become ``<NA>``."""
    return _run(id_sql("raw"), values)


def normalise_identifier(
    id_type: str,
    values: pd.Series,
    *,
    region: str = "GB",
    email_strip_plus: bool = True,
    email_dot_providers: Iterable[str] = ("gmail.com", "googlemail.com"),
    email_domain_aliases: Mapping[str, str] | None = None,
    phone_validation: str = "valid",
) -> pd.Series:
    """Normalise ``values`` of identifier type ``id_type`` (one of :data:`ID_TYPES`)."""
    if id_type == "email":
        return normalise_email(
            values,
            strip_plus=email_strip_plus,
            dot_providers=email_dot_providers,
            domain_aliases=email_domain_aliases,
        )
    if id_type == "phone":
        return normalise_phone(values, region=region, validation=phone_validation)
    if id_type in ID_TYPES:
        return normalise_id(values)
    raise ValueError(f"unknown identifier type {id_type!r}; expected one of {', '.join(ID_TYPES)}")
