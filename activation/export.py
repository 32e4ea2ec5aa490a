"""Exports and pages of segment members, gated by consent and erasure.

Every read of members for a campaign goes through :func:`member_rows_sql`:
a person appears only when the profile has consent for the purpose
(``consent_<purpose> IS TRUE``; a null means no statement, so no), has the
contact identifier the purpose needs, and is not in ``erased``. Without a
``profiles`` table (identity not run) nobody has consent, so nothing is
exported.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import duckdb
import pyarrow as pa
from cip.activation._tables import not_erased, to_timestamp
from cip.profiles.errors import ConfigError, DataError, NotFoundError, PrivacyError
from cip.profiles.sources import FileFormat
from cip.profiles.sql import quote_literal
from cip.profiles.store import Store

__all__ = [
    "export_segment",
    "segment_page",
    "ExportReport",
    "member_rows_sql",
    "CONTACT",
    "EXPORT_SCORE_COLUMNS",
    "ExportFormat",
    "FORMATS",
]

#: The contact identifier a campaign of each purpose needs (must be present).
CONTACT: dict[str, str] = {"email": "email", "sms": "phone", "push": "customer_id"}
#: The file formats of an export: the type of every ``--format`` option and config field
#: (``cip segments export``, ``cip recommend``, ``segments.exports``). The same object as
#: :data:`cip.profiles.sources.FileFormat`, never a second Literal (see there why).
ExportFormat = FileFormat
FORMATS: tuple[str, ...] = get_args(ExportFormat)
#: Columns of ``scores`` an export may carry (``columns=``), with their SQL types.
EXPORT_SCORE_COLUMNS: dict[str, str] = {
    "churn_probability": "DOUBLE PRECISION",
    "purchase_probability": "DOUBLE PRECISION",
    "clv": "DOUBLE PRECISION",
    "expected_orders": "DOUBLE PRECISION",
    "p_alive": "DOUBLE PRECISION",
    "next_order_date": "DATE",
    "clv_model_version": "VARCHAR",
}


@dataclass
class ExportReport:
    """What :func:`export_segment` wrote and what it left out (counts only, no identifiers)."""

    segment: str
    as_of: dt.datetime
    purpose: str
    path: str
    format: str
    changes: str | None
    candidates: int
    exported: int
    no_consent: int
    no_contact: int
    erased: int
    notes: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def check_columns(columns: Sequence[str] | None) -> list[str]:
    """The extra score columns of an export, checked (ConfigError naming the unknown ones)."""
    cols = list(dict.fromkeys(columns or ()))
    bad = [c for c in cols if c not in EXPORT_SCORE_COLUMNS]
    if bad:
        raise ConfigError(
            f"unknown export column(s) {bad}; expected some of {', '.join(EXPORT_SCORE_COLUMNS)}"
        )
    return cols


def _score_columns(store: Store, columns: Sequence[str]) -> tuple[str, str, list[str]]:
    """``(select part, join, notes)`` adding ``columns`` of ``scores`` at the member's as_of."""
    if not columns:
        return "", "", []
    have = (
        set(store.sql("SELECT * FROM scores WHERE FALSE").columns)
        if store.has_table("scores")
        else set()
    )
    missing = [c for c in columns if c not in have]
    sel = "".join(
        f", s.{c} AS {c}" if c in have else f", CAST(NULL AS {EXPORT_SCORE_COLUMNS[c]}) AS {c}"
        for c in columns
    )
    join = (
        " LEFT JOIN scores s ON s.unified_id = m.unified_id AND s.as_of = m.as_of" if have else ""
    )
    notes = (
        [f"the scores table has no {', '.join(missing)} (null in the export)"] if missing else []
    )
    return sel, join, notes


def _build_info(store: Store, segment: str, as_of: Any) -> tuple[dt.datetime, str | None]:
    if not store.has_table("segment_builds"):
        raise NotFoundError("no segments have been built yet; run `cip segments build --as-of D`")
    if as_of is None:
        df = store.sql(
            "SELECT as_of, purpose FROM segment_builds WHERE segment = ? ORDER BY as_of DESC LIMIT 1",
            [segment],
        )
    else:
        df = store.sql(
            "SELECT as_of, purpose FROM segment_builds WHERE segment = ? "
            "AND as_of = CAST(? AS TIMESTAMP)",
            [segment, to_timestamp(as_of)],
        )
    if df.empty:
        known = store.sql("SELECT DISTINCT segment FROM segment_builds ORDER BY segment")["segment"]
        at = "" if as_of is None else f" at as_of {to_timestamp(as_of)}"
        raise NotFoundError(
            f"segment {segment!r} has no build{at} (built segments: {', '.join(known) or 'none'})"
        )
    p = df["purpose"].iloc[0]
    return to_timestamp(df["as_of"].iloc[0]), (p if isinstance(p, str) else None)


def _purpose(segment: str, given: str | None, built: str | None) -> str:
    p = given or built
    if p is None:
        raise PrivacyError(
            f"segment {segment!r} has no purpose; pass one (email, sms or push): "
            "members are only released for a purpose they consented to"
        )
    if p not in CONTACT:
        raise ConfigError(f"unknown purpose {p!r}; expected email, sms or push")
    return p


def member_rows_sql(
    store: Store,
    segment: str,
    as_of: dt.datetime,
    purpose: str,
    changes: Literal["entered", "exited", "all"] | None = None,
    columns: Sequence[str] = (),
) -> tuple[str, list[Any], str, str]:
    """``(select, params, from_where, eligible)`` for releasable members.

    ``select`` returns the member rows (contact identifiers, score, reasons,
    model version, as_of and, with ``changes``, the change, then the score
    ``columns`` of the member's build); ``from_where`` and ``eligible`` let
    callers count what was left out and why.
    """
    contact = CONTACT[purpose]
    ids = ["customer_id"] + ([contact] if contact != "customer_id" else [])
    if changes is None:
        frm = "FROM segment_members m"
        where = "m.segment = ? AND m.as_of = CAST(? AS TIMESTAMP)"
        extra_cols = ""
    else:
        kinds = "('entered', 'exited')" if changes == "all" else f"('{changes}')"
        frm = (
            "FROM segment_changes c JOIN segment_members m ON m.segment = c.segment "
            "AND m.unified_id = c.unified_id AND m.as_of = CASE WHEN c.change = 'entered' "
            "THEN c.as_of ELSE c.previous_as_of END"
        )
        where = f"c.segment = ? AND c.as_of = CAST(? AS TIMESTAMP) AND c.change IN {kinds}"
        extra_cols = ", c.change, c.previous_as_of"
    as_of_col = "c.as_of" if changes else "m.as_of"
    consent, has_contact = "FALSE", "FALSE"
    id_cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in ids)
    if store.has_table("profiles"):
        pcols = set(store.sql("SELECT * FROM profiles WHERE FALSE").columns)
        frm += " LEFT JOIN profiles p ON p.unified_id = m.unified_id"
        if f"consent_{purpose}" in pcols:
            consent = f"p.consent_{purpose} IS TRUE"
        if contact in pcols:
            has_contact = f"p.{contact} IS NOT NULL"
        id_cols = ", ".join(
            f"CAST(p.{c} AS VARCHAR) AS {c}" if c in pcols else f"CAST(NULL AS VARCHAR) AS {c}"
            for c in ids
        )
    not_gone = not_erased(store, "m.unified_id")
    eligible = f"({consent}) AND ({has_contact}) AND {not_gone}"
    # 6 decimals: sums a database computes in parallel differ in their last bits run to run
    score = (
        "CAST(round(CAST(m.score AS NUMERIC), 6) AS DOUBLE PRECISION)"
        if store.dialect == "postgres"
        else "round(m.score, 6)"
    )
    score_sel, score_join, _ = _score_columns(store, columns)
    select = (
        f"SELECT m.segment, {as_of_col} AS as_of, m.unified_id, {id_cols}, {score} AS score, "
        f"m.reasons, "
        f"m.model_version{extra_cols}{score_sel} {frm}{score_join} WHERE {where} AND {eligible}"
    )
    counts = (
        f"SELECT count(*) AS candidates, "
        f"sum(CASE WHEN NOT ({not_gone}) THEN 1 ELSE 0 END) AS erased, "
        f"sum(CASE WHEN ({not_gone}) AND NOT ({consent}) THEN 1 ELSE 0 END) AS no_consent, "
        f"sum(CASE WHEN ({not_gone}) AND ({consent}) AND NOT ({has_contact}) THEN 1 ELSE 0 END) "
        f"AS no_contact {frm} WHERE {where}"
    )
    return select, [segment, as_of], counts, eligible


def export_segment(
    store: Store,
    name: str,
    path: str | os.PathLike[str],
    fmt: ExportFormat,
    changes: Literal["entered", "exited"] | None = None,
    purpose: Literal["email", "sms", "push"] | None = None,
    as_of: Any = None,
    columns: Sequence[str] | None = None,
    recommend: Callable[[list[str]], dict[str, list[str]]] | None = None,
) -> ExportReport:
    """Write the releasable members (or entries/exits) of a segment to ``path``.

    ``recommend`` (unified ids -> item ids) adds a ``recommended_items`` column
    (a list; null for a person it has nothing for, e.g. without consent to
    personalisation); the caller decides the block and the consent rule.

    Rows carry ``segment, as_of, unified_id, customer_id``, the purpose's
    contact identifier (``email``, ``phone``; ``customer_id`` for push),
    ``score, reasons, model_version`` (and ``change, previous_as_of`` with
    ``changes``), then the ``columns`` asked for (any of :data:`EXPORT_SCORE_COLUMNS`,
    e.g. ``clv``, ``p_alive``, ``next_order_date``: the member's values in
    ``scores`` at the build's as_of; null where there are none), ordered by
    ``unified_id``. ``reasons`` is a JSON text list in
    CSV and a list of strings in Parquet and JSONL. The file is written to a
    temporary name beside ``path`` and moved into place with ``os.replace``, so
    readers never see half a file. ``as_of`` defaults to the latest build;
    ``purpose`` to the segment's purpose.

    Raises:
        NotFoundError: the segment has no build (at ``as_of``).
        PrivacyError: no purpose is known for the export.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected csv, parquet or jsonl")
    if changes not in (None, "entered", "exited"):
        raise ConfigError(f"changes must be entered or exited, not {changes!r}")
    cols = check_columns(columns)
    ts, built_purpose = _build_info(store, name, as_of)
    purp = _purpose(name, purpose, built_purpose)
    select, params, counts_sql, _ = member_rows_sql(store, name, ts, purp, changes, cols)
    table = store.arrow(select + " ORDER BY m.unified_id", params)
    if recommend is not None:
        uids = [str(u) for u in table.column("unified_id").to_pylist()]
        got = recommend(uids) if uids else {}
        table = table.append_column(
            "recommended_items", pa.array([got.get(u) for u in uids], pa.list_(pa.string()))
        )
    counts = store.sql(counts_sql, params).iloc[0]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(table, out, fmt)
    notes = _score_columns(store, cols)[2]
    if not store.has_table("profiles"):
        notes.append(
            "no profiles table (identity not run): no profile has consent or contact data, "
            "so nothing is exportable; run `cip unify` first"
        )
    return ExportReport(
        segment=name,
        as_of=ts,
        purpose=purp,
        path=str(out),
        format=fmt,
        changes=changes,
        candidates=int(counts["candidates"] or 0),
        exported=table.num_rows,
        no_consent=int(counts["no_consent"] or 0),
        no_contact=int(counts["no_contact"] or 0),
        erased=int(counts["erased"] or 0),
        notes=notes,
        columns=cols,
    )


def _write_atomic(table: pa.Table, out: Path, fmt: str) -> None:
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    con = duckdb.connect()
    try:
        con.register("t", table)
        sel = "SELECT * FROM t"
        if fmt != "csv":
            sel = (
                "SELECT * REPLACE (CASE WHEN json_valid(reasons) THEN "
                "CAST(from_json(reasons, '[\"VARCHAR\"]') AS VARCHAR[]) END AS reasons) FROM t"
            )
        opts = {
            "csv": "FORMAT csv, HEADER true",
            "parquet": "FORMAT parquet",
            "jsonl": "FORMAT json",
        }
        con.execute(f"COPY ({sel}) TO {quote_literal(tmp)} ({opts[fmt]})")
        os.replace(tmp, out)
    finally:
        con.close()
        if tmp.exists():
            tmp.unlink()


def _cursor(as_of: dt.datetime, after: str) -> str:
    raw = json.dumps([as_of.isoformat(), after]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        as_of, after = json.loads(raw)
        return dt.datetime.fromisoformat(as_of), str(after)
    except (ValueError, TypeError):
        raise DataError("invalid cursor; start again without one") from None


def segment_page(
    store: Store,
    segment: str,
    limit: int = 100,
    cursor: str | None = None,
    as_of: Any = None,
    purpose: Literal["email", "sms", "push"] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a segment's releasable members, by keyset pagination on ``unified_id``.

    The cursor pins the snapshot (``as_of``) of the first page, so paging stays
    stable while new builds land. Consent and erasure are applied as in
    :func:`export_segment`. Returns ``(rows, next_cursor)``; ``next_cursor`` is
    None on the last page.
    """
    if not 1 <= int(limit) <= 10_000:
        raise DataError(f"limit must be between 1 and 10000, not {limit}")
    after = None
    if cursor:
        as_of, after = _uncursor(cursor)
    ts, built_purpose = _build_info(store, segment, as_of)
    purp = _purpose(segment, purpose, built_purpose)
    select, params, _, _ = member_rows_sql(store, segment, ts, purp)
    if after is not None:
        select += " AND m.unified_id > ?"
        params = [*params, after]
    df = store.sql(select + f" ORDER BY m.unified_id LIMIT {int(limit) + 1}", params)
    more = len(df) > limit
    df = df.iloc[: int(limit)]
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    for r in rows:
        r["as_of"] = to_timestamp(r["as_of"]).isoformat()
        r["reasons"] = json.loads(r["reasons"]) if r["reasons"] else []
    nxt = _cursor(ts, rows[-1]["unified_id"]) if more and rows else None
    return rows, nxt
