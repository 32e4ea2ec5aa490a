"""Ingestion: map a source onto its canonical table, validate every row, load atomically.

The whole step runs in DuckDB (vectorised SQL, no per-row Python):

1. a reader registers the source as the relation ``raw`` (``profiles._readers``);
2. structural checks: every mapped user column must exist (else
   :class:`~profiles.errors.SourceError`, nothing written);
3. one SELECT maps user columns to contract columns with typed ``TRY_CAST``\\ s and
   collects the reasons a row is bad (unparseable timestamp, non-numeric value,
   missing required value, no identifier, negative amount, unknown status);
4. bad rows go to ``quarantine`` with the raw record as JSON; rows whose
   content was loaded before (same ``record_id``, an MD5 of the canonical content)
   are skipped, so re-ingesting is idempotent and overlapping exports do not
   duplicate; exact duplicates inside one load are quarantined as such;
5. the inserts into the table, quarantine and ``_ingest_runs`` happen in one
   transaction: a crash leaves the store as it was.

Products are keyed by ``item_id`` instead: the newest row of an item replaces
the older one (a catalog is a snapshot, not a log).

Database sources (``postgres:``, ``mysql:``) stream through a server-side cursor
(``profiles._dbsource``); an incremental one reads only the rows at or past its
watermark and moves the watermark (``_source_watermarks``) in the same
transaction as the load. A database row is the current version of its record:
with ``source_record_id`` mapped, it replaces the versions loaded before. Its
quarantine key is its content (a database row has no stable row number).
Object storage paths (``s3://`` ...) are copied to a scratch folder for the
ingest and read like local files (``profiles._objstore``).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
from cip.profiles._dbsource import Watermark, decode_watermark, encode_watermark
from cip.profiles._readers import DB_STAGE, RawInput, read_source
from cip.profiles.contracts import (
    IDENTIFIER_COLUMNS,
    MESSAGE_EVENT_TYPES,
    ORDER_STATUSES,
    TableSchema,
    schema,
)
from cip.profiles.errors import SourceError
from cip.profiles.sources import ColumnExpr, ColumnValue, SourceConfig
from cip.profiles.sql import quote_ident, quote_literal
from cip.profiles.store import DuckDBStore, Store, physical_table, scratch_duckdb
from cip.profiles.tables import SOURCE_WATERMARKS, ensure_tables

if TYPE_CHECKING:
    from cip.profiles._suppress import Suppressor

__all__ = ["IngestReport", "ingest_source", "load_watermark", "save_watermark"]

log = logging.getLogger(__name__)

_NUMERIC_NONNEG = ("amount", "quantity", "unit_price", "price")
_HASH_NULL = "\\N"


@dataclass
class IngestReport:
    """Counts of one source's ingest (also written to ``_ingest_runs``)."""

    run_id: str
    source: str
    target_table: str
    files: list[str]
    rows_read: int
    rows_loaded: int
    rows_already_present: int
    rows_quarantined: int
    rows_filtered: int
    rows_suppressed: int
    quarantine_reasons: dict[str, int]
    rows_expired: int = 0
    #: how the source was read: ``files``, ``full`` (a whole table or query) or
    #: ``incremental`` (only the rows at or past the stored watermark)
    read_mode: str = "files"
    #: incremental sources: the watermark the read started from, and the one stored now
    watermark_from: str | None = None
    watermark: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


#: rows handed to another store per batch: the rows of a big source are never all held
#: as Arrow in Python at once (50 M events would need ~18 GB)
STAGE_BATCH_ROWS = 1_000_000


def _stage_in_batches(store: Store, table: str, rel: duckdb.DuckDBPyRelation) -> None:
    """Write ``rel`` into ``table`` of ``store`` (replaced), one batch of rows at a time."""
    import pyarrow as pa

    reader = rel.to_arrow_reader(STAGE_BATCH_ROWS)
    mode = "replace"
    for batch in reader:
        store.load_arrow(table, pa.Table.from_batches([batch]), mode=mode)
        mode = "append"
    if mode == "replace":  # no rows: the table still gets its columns
        store.load_arrow(table, reader.schema.empty_table(), mode="replace")


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return repr(v)
    return quote_literal(v)


def _check_columns(src: SourceConfig, raw: RawInput) -> None:
    missing = [
        spec for spec in src.columns.values() if isinstance(spec, str) and spec not in raw.columns
    ]
    if missing:
        avail = ", ".join(sorted(raw.columns)) or "none"
        files = ", ".join(Path(f).name for f in raw.files)
        raise SourceError(
            f"source {src.name!r}: column(s) {', '.join(missing)} not found in {files} "
            f"(available: {avail})"
        )


def _raw_expr(src: SourceConfig, raw: RawInput, canonical: str) -> tuple[str, str | None, str]:
    """SQL for the raw value of a canonical column, its source type, and a label for errors."""
    spec = src.columns.get(canonical)
    if spec is None:
        return "NULL", None, canonical
    if isinstance(spec, ColumnValue):
        return _lit(spec.value), "CONST", f"{canonical} (constant)"
    if isinstance(spec, ColumnExpr):
        return f"({spec.expr})", "EXPR", f"{canonical} (expression)"
    return quote_ident(spec), raw.columns[spec], spec


def _typed(raw_sql: str, src_type: str | None, target: str, ts_format: str | None, tz: str) -> str:
    """Typed canonical value; NULL when the raw value cannot be converted."""
    st = (src_type or "").upper()
    if target == "VARCHAR":
        if st in ("DOUBLE", "FLOAT", "REAL") or st.startswith("DECIMAL"):
            # ids exported as floats (17850.0) become "17850"
            return (
                f"CASE WHEN {raw_sql} = floor({raw_sql}) AND abs({raw_sql}) < 1e18 "
                f"THEN CAST(CAST({raw_sql} AS BIGINT) AS VARCHAR) "
                f"ELSE CAST({raw_sql} AS VARCHAR) END"
            )
        return f"NULLIF(trim(CAST({raw_sql} AS VARCHAR)), '')"
    if target == "DOUBLE":
        return f"TRY_CAST(NULLIF(trim(CAST({raw_sql} AS VARCHAR)), '') AS DOUBLE)"
    if target == "BOOLEAN":
        v = f"lower(trim(CAST({raw_sql} AS VARCHAR)))"
        return (
            f"CASE WHEN {v} IN ('true','t','1','yes','y') THEN TRUE "
            f"WHEN {v} IN ('false','f','0','no','n') THEN FALSE END"
        )
    if target == "DATE":
        if st == "DATE":
            return raw_sql
        return (
            f"TRY_CAST(TRY_CAST(NULLIF(trim(CAST({raw_sql} AS VARCHAR)), '') AS TIMESTAMP) AS DATE)"
        )
    if target == "TIMESTAMP":
        if st.startswith("TIMESTAMP WITH") or st == "TIMESTAMPTZ":
            return f"CAST({raw_sql} AS TIMESTAMP)"  # session time zone is UTC
        if st.startswith("TIMESTAMP") or st == "DATE":
            local = f"CAST({raw_sql} AS TIMESTAMP)"
        else:
            text = f"NULLIF(trim(CAST({raw_sql} AS VARCHAR)), '')"
            if ts_format:
                local = f"try_strptime({text}, {_lit(ts_format)})"
            else:
                # ISO-8601 with an offset is converted to UTC; without one it is local time
                return (
                    f"CASE WHEN regexp_matches({text}, '([+-]\\d\\d:?\\d\\d|Z)$') "
                    f"THEN CAST(TRY_CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP) "
                    + (
                        f"ELSE TRY_CAST({text} AS TIMESTAMP) END"
                        if tz == "UTC"
                        else f"ELSE CAST(timezone({_lit(tz)}, TRY_CAST({text} AS TIMESTAMP)) AS TIMESTAMP) END"
                    )
                )
        if tz == "UTC":
            return local
        return f"CAST(timezone({_lit(tz)}, {local}) AS TIMESTAMP)"
    raise AssertionError(target)


_LOWERED = ("status", "channel", "event_type")
_BAD_MESSAGE_TYPE = f"unknown message event_type (expected {', '.join(MESSAGE_EVENT_TYPES)})"
_KIND = {
    "DOUBLE": "not a number",
    "TIMESTAMP": "unparseable timestamp",
    "DATE": "unparseable date",
    "BOOLEAN": "not a boolean",
}


def _mapping_sql(src: SourceConfig, raw: RawInput, sch: TableSchema) -> str:
    """SELECT producing canonical columns, ``_reasons`` (list of text), ``_file``, ``_row``.

    The inner query converts every column once (plus a flag telling whether the raw
    value was present); the outer one derives the reasons from those.
    """
    inner, outer, reasons = [], [], []
    for col in sch.columns:
        if col.name in ("source", "record_id", "ingested_at"):
            continue
        if col.name == "source_record_id" and "source_record_id" not in src.columns:
            continue
        raw_sql, st, label = _raw_expr(src, raw, col.name)
        typed = _typed(raw_sql, st, col.type, src.timestamp_format, src.timezone)
        if col.name in _LOWERED:
            typed = f"lower({typed})"
        c = quote_ident(col.name)
        inner.append(f"{typed} AS {c}")
        outer.append(c)
        if raw_sql == "NULL":
            if col.required:
                reasons.append(f"'missing {col.name}'")
            continue
        flag = quote_ident("_p_" + col.name)
        needs_flag = col.type != "VARCHAR" or col.required
        if needs_flag:
            inner.append(f"NULLIF(trim(CAST({raw_sql} AS VARCHAR)), '') IS NOT NULL AS {flag}")
        if col.type != "VARCHAR":
            reasons.append(
                f"CASE WHEN {flag} AND {c} IS NULL THEN {_lit(f'{_KIND[col.type]} in {label}')} END"
            )
        if col.required:
            reasons.append(
                f"CASE WHEN {c} IS NULL AND NOT {flag} THEN {_lit(f'missing {col.name} ({label})')} END"
            )
        if col.name in _NUMERIC_NONNEG:
            reasons.append(f"CASE WHEN {c} < 0 THEN {_lit(f'negative {col.name}')} END")
        if col.name == "status":
            allowed = ", ".join(_lit(x) for x in ORDER_STATUSES)
            reasons.append(
                f"CASE WHEN {c} IS NOT NULL AND {c} NOT IN ({allowed}) "
                f"THEN 'unknown status (expected completed, returned or cancelled)' END"
            )
        if col.name == "event_type" and sch.name == "message_events":
            allowed = ", ".join(_lit(x) for x in MESSAGE_EVENT_TYPES)
            reasons.append(
                f"CASE WHEN {c} IS NOT NULL AND {c} NOT IN ({allowed}) "
                f"THEN {_lit(_BAD_MESSAGE_TYPE)} END"
            )
    if sch.needs_identifier:
        no_id = " AND ".join(f"{quote_ident(i)} IS NULL" for i in IDENTIFIER_COLUMNS)
        reasons.append(f"CASE WHEN {no_id} THEN 'no identifier' END")
    valid = ""
    if raw.json_lines:
        # an invalid line has no usable fields: report only that
        reasons = ["CASE WHEN NOT _valid THEN 'invalid JSON' END"] + [
            f"CASE WHEN _valid THEN {r} END" for r in reasons
        ]
        valid = "_valid, "
    where = f"WHERE ({src.where})" if src.where else ""
    reason_list = (
        "list_filter([" + ", ".join(reasons) + "], lambda x: x IS NOT NULL)" if reasons else "[]"
    )
    return (
        f"SELECT {', '.join(outer)}, {reason_list} AS _reasons, _file, _row FROM ("
        f"SELECT {', '.join(inner)}, {valid}_file, _row FROM (SELECT * FROM raw {where}) AS r) AS t"
    )


def _hash_sql(sch: TableSchema, table: str) -> str:
    parts = [
        f"coalesce(CAST({quote_ident(c.name)} AS VARCHAR), '{_HASH_NULL}')"
        for c in sch.columns
        if c.name not in ("source", "record_id", "source_record_id", "ingested_at")
    ]
    return f"md5(concat_ws('\x1f', '{table}', {', '.join(parts)}))"


def ingest_source(
    store: Store,
    src: SourceConfig,
    *,
    base_dir: Path,
    suppress_sql: str | None = None,
    suppressor: Suppressor | None = None,
    expire_before: datetime | None = None,
    full: bool = False,
) -> IngestReport:
    """Ingest one source into ``store``; returns the counts.

    Parameters
    ----------
    store:
        The target store (DuckDB or PostgreSQL).
    src:
        The source declaration.
    base_dir:
        Folder that relative ``path`` values resolve against (the config's folder).
    suppress_sql:
        Optional SQL predicate over the canonical columns of the stage; rows for
        which it is true are not loaded and counted as suppressed (used for the
        erasure tombstones).
    suppressor:
        The erasure tombstones (:class:`profiles.privacy.Suppressor`): rows and
        quarantine-bound records carrying an erased identifier are not loaded
        and counted as suppressed.
    full:
        Incremental database sources: read the whole table or query again (the
        watermark is then reset to its maximum); other sources are always read whole.
    """
    sch = schema(src.table)
    run_id = uuid.uuid4().hex[:12]
    started = datetime.now(UTC).replace(tzinfo=None)
    if isinstance(store, DuckDBStore):
        work = store.con
        work.execute("SET TimeZone = 'UTC'")
    else:
        work = scratch_duckdb(store.scratch_memory_limit)
    own = "_stage_" + run_id
    since = None
    db = src.database
    if db is not None and db.incremental is not None:
        ensure_tables(store, SOURCE_WATERMARKS)
        if not full:
            since = load_watermark(store, src.name, db.incremental.column)
    scratch = (
        tempfile.TemporaryDirectory(prefix=f"cip-{src.name}-") if src.is_object_store else None
    )
    try:
        raw = read_source(
            work, src, base_dir, since=since, scratch=Path(scratch.name) if scratch else None
        )
        _check_columns(src, raw)
        try:
            mapped = _mapping_sql(src, raw, sch)
            work.execute(f"CREATE TEMP TABLE {own}_m AS {mapped}")
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            raise SourceError(
                f"source {src.name!r}: cannot map the columns of {', '.join(Path(f).name for f in raw.files)}: {msg}"
            ) from None
        filtered = (
            raw.rows
            - len(raw.rejected)
            - work.execute(f"SELECT count(*) FROM {own}_m").fetchone()[0]
        )
        expired = _drop_expired(work, f"{own}_m", sch, expire_before)
        if suppressor is not None:
            tomb = suppressor.mark_rows(work, f"{own}_m", [c.name for c in sch.columns])
            suppress_sql = f"({suppress_sql}) OR {tomb}" if suppress_sql else tomb
        report = _stage_and_commit(
            store, work, src, sch, raw, own, run_id, started, filtered, suppress_sql, suppressor
        )
        report.rows_expired = expired
        if raw.db is not None:
            incremental = db is not None and db.incremental is not None
            report.read_mode = "incremental" if since is not None else "full"
            report.watermark_from = since.text if since is not None else None
            report.watermark = (
                raw.db.watermark.text if incremental and raw.db.watermark is not None else None
            )
    finally:
        for t in ("_m", "_good", "_bad"):
            work.execute(f"DROP TABLE IF EXISTS {own}{t}")
        work.execute(f"DROP TABLE IF EXISTS {DB_STAGE}")
        if scratch is not None:
            scratch.cleanup()
        if suppressor is not None:
            suppressor.cleanup(work, f"{own}_m")
            suppressor.cleanup(work, f"{own}_bad")
        if work is not getattr(store, "con", None):
            work.close()
    log.info("ingested source %s into %s: %s", src.name, src.table, report.as_dict())
    return report


def _drop_expired(
    work: duckdb.DuckDBPyConnection, stage: str, sch: TableSchema, before: datetime | None
) -> int:
    """Delete the valid staged rows dated before the retention cut-off; returns the count."""
    if before is None or "ts" not in sch.names:
        return 0  # an undated customer record is as new as its ingest: kept
    return work.execute(
        f"DELETE FROM {stage} WHERE len(_reasons) = 0 AND ts < ?", [before]
    ).fetchone()[0]


def _stage_and_commit(
    store: Store,
    work: duckdb.DuckDBPyConnection,
    src: SourceConfig,
    sch: TableSchema,
    raw: RawInput,
    own: str,
    run_id: str,
    started: datetime,
    filtered: int,
    suppress_sql: str | None,
    suppressor: Suppressor | None = None,
) -> IngestReport:
    canon = [
        c.name
        for c in sch.columns
        if c.name not in ("source", "record_id", "ingested_at", "source_record_id")
    ]
    cols = ", ".join(quote_ident(c) for c in canon)
    now = _lit(started.isoformat(sep=" "))
    srid = "source_record_id" if "source_record_id" in src.columns else "NULL"
    # NULL (e.g. a NULL identifier compared) must load the row, not lose it
    suppressed_expr = f"coalesce(({suppress_sql}), FALSE)" if suppress_sql else "FALSE"
    work.execute(
        f"CREATE TEMP TABLE {own}_good AS SELECT {_lit(src.name)} AS source, record_id, "
        f"CAST({srid} AS VARCHAR) AS source_record_id, CAST({now} AS TIMESTAMP) AS ingested_at, "
        f"{cols}, _file, _row, FALSE AS _dup, {suppressed_expr} AS _suppressed FROM ("
        f"  SELECT *, {_hash_sql(sch, sch.name)} AS record_id FROM {own}_m WHERE len(_reasons) = 0"
        f") s"
    )
    # Repeated keys are rare: find them with an aggregate, then rank only their rows.
    # Products: the newest row of an item wins; other tables: exact duplicates after the
    # first occurrence are quarantined.
    key, order = (
        ("item_id", "_file DESC, _row DESC")
        if src.table == "products"
        else ("record_id", "_file, _row")
    )
    work.execute(
        f"UPDATE {own}_good g SET _dup = TRUE FROM ("
        f"  SELECT _file, _row, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS k "
        f"  FROM {own}_good WHERE {key} IN "
        f"  (SELECT {key} FROM {own}_good GROUP BY {key} HAVING count(*) > 1)"
        f") d WHERE d.k > 1 AND g._file = d._file AND g._row = d._row"
    )
    dup_rows = (
        ""
        if src.table == "products"
        else (
            f" UNION ALL SELECT ['duplicate of an earlier row in this load'], _file, _row "
            f"FROM {own}_good WHERE _dup"
        )
    )
    raw_json = (
        "r._line"
        if raw.json_lines
        else 'json_merge_patch(to_json(r), \'{"_file": null, "_row": null}\')'
    )
    # a file row is keyed by its file and line; a database row has no stable row number
    # (an incremental read numbers only what it read), so it is keyed by its content
    where_from = (
        f"CAST({raw_json} AS VARCHAR)" if raw.db is not None else "q._file, CAST(q._row AS VARCHAR)"
    )
    work.execute(
        f"CREATE TEMP TABLE {own}_bad AS SELECT "
        f"md5(concat_ws('\x1f', {_lit(src.name)}, {where_from}, "
        f"array_to_string(_reasons, '; '))) AS record_id, {_lit(src.name)} AS source, "
        f"{_lit(sch.name)} AS target_table, q._file AS file, q._row AS row_number, "
        f"array_to_string(_reasons, '; ') AS reason, CAST({raw_json} AS VARCHAR) AS raw_record, "
        f"CAST({now} AS TIMESTAMP) AS ingested_at FROM ("
        f"  SELECT _reasons, _file, _row FROM {own}_m WHERE len(_reasons) > 0{dup_rows}"
        f") q LEFT JOIN raw r ON r._file = q._file AND r._row = q._row"
    )
    if raw.rejected:
        import pyarrow as pa

        rej = pa.table(
            {
                "file": [r[0] for r in raw.rejected],
                "row": [r[1] for r in raw.rejected],
                "text": [r[2] for r in raw.rejected],
                "reason": [r[3] for r in raw.rejected],
            }
        )
        work.register("_rejected", rej)
        work.execute(
            f"INSERT INTO {own}_bad SELECT md5(concat_ws('\x1f', {_lit(src.name)}, file, "
            f"CAST(row AS VARCHAR), reason)), {_lit(src.name)}, {_lit(sch.name)}, file, row, "
            f"reason, text, CAST({now} AS TIMESTAMP) FROM _rejected"
        )
    bad_suppressed = 0
    if suppressor is not None:
        # quarantine-bound rows of erased persons are not kept either
        pred = suppressor.mark_records(work, f"{own}_bad", "record_id", "raw_record")
        bad_suppressed = work.execute(f"SELECT count(*) FROM {own}_bad WHERE {pred}").fetchone()[0]
        if bad_suppressed:
            work.execute(f"DELETE FROM {own}_bad WHERE {pred}")
    target = physical_table(src.table)
    all_cols = ", ".join(
        quote_ident(c) for c in ["source", "record_id", "source_record_id", "ingested_at", *canon]
    )
    q_cols = ", ".join(quote_ident(c.name) for c in schema("quarantine").columns)
    suppressed = (
        work.execute(f"SELECT count(*) FROM {own}_good WHERE _suppressed AND NOT _dup").fetchone()[
            0
        ]
        + bad_suppressed
    )
    good_n = work.execute(
        f"SELECT count(*) FROM {own}_good WHERE NOT _dup AND NOT _suppressed"
    ).fetchone()[0]
    reasons = dict(
        work.execute(f"SELECT reason, count(*) FROM {own}_bad GROUP BY reason").fetchall()
    )
    bad_n = sum(reasons.values())
    same_db = isinstance(store, DuckDBStore) and store.con is work
    with store.transaction():
        if same_db:
            good_src, bad_src = (
                f"(SELECT * FROM {own}_good WHERE NOT _dup AND NOT _suppressed)",
                f"{own}_bad",
            )
        else:
            good_src, bad_src = f"_stage_{src.table}", "_stage_quarantine"
            _stage_in_batches(
                store,
                good_src,
                work.sql(f"SELECT {all_cols} FROM {own}_good WHERE NOT _dup AND NOT _suppressed"),
            )
            _stage_in_batches(store, bad_src, work.sql(f"SELECT {q_cols} FROM {own}_bad"))
        if src.table == "products":
            # a snapshot: an item's row in this load replaces a different older row of it;
            # an identical row stays as it is (counted as already there)
            store.execute(
                f"DELETE FROM {target} WHERE item_id IN (SELECT item_id FROM {good_src}) "
                f"AND record_id NOT IN (SELECT record_id FROM {good_src})"
            )
        if raw.db is not None and "source_record_id" in src.columns and src.table != "products":
            # a database row is the current version of its record: a new version (same
            # source_record_id, other content) replaces the ones loaded before
            _replace_versions(store, target, src.name, good_src)
        loaded = _insert_new(store, target, all_cols, good_src)
        already = good_n - loaded
        _insert_new(store, "quarantine", q_cols, bad_src)
        finished = datetime.now(UTC).replace(tzinfo=None)
        store.execute(
            "INSERT INTO _ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                src.name,
                src.table,
                started,
                finished,
                int(raw.rows),
                int(loaded),
                int(already),
                int(bad_n),
                int(suppressed),
            ],
        )
        if raw.db is not None and raw.db.watermark is not None:
            # in the load's transaction: a crash before the commit keeps the old watermark
            save_watermark(store, src.name, raw.db.watermark, run_id)
        if not same_db:
            store.execute(f"DROP TABLE {good_src}")
            store.execute(f"DROP TABLE {bad_src}")
    return IngestReport(
        run_id,
        src.name,
        src.table,
        [Path(f).name for f in raw.files],
        int(raw.rows),
        int(loaded),
        int(already),
        int(bad_n),
        int(filtered),
        int(suppressed),
        {k: int(v) for k, v in reasons.items()},
    )


def _replace_versions(store: Store, target: str, source: str, good_src: str) -> int:
    """Delete older versions of the records in ``good_src`` (and the resolver's rows of them)."""
    n = store.execute(
        f"DELETE FROM {target} WHERE source = {_lit(source)} AND source_record_id IN "
        f"(SELECT source_record_id FROM {good_src} WHERE source_record_id IS NOT NULL) "
        f"AND record_id NOT IN (SELECT record_id FROM {good_src})"
    )
    if n:
        canonical = "orders" if target == physical_table("orders") else target
        for bookkeeping in ("_identity_records", "record_map"):
            if store.has_table(bookkeeping):
                store.execute(
                    f"DELETE FROM {bookkeeping} WHERE source_table = {_lit(canonical)} AND NOT "
                    f"EXISTS (SELECT 1 FROM {canonical} x WHERE x.record_id = {bookkeeping}.record_id)"
                )
    return n


def load_watermark(store: Store, source: str, column: str) -> Watermark | None:
    """The stored watermark of ``source`` (None: never loaded, or the column changed)."""
    ensure_tables(store, SOURCE_WATERMARKS)
    rows = store.sql(
        "SELECT column_name, value, value_type FROM _source_watermarks WHERE source = ?", [source]
    )
    if rows.empty:
        return None
    col, text, kind = rows.iloc[0]
    if col != column:
        log.warning(
            "source %s: incremental column changed from %s to %s; reading everything",
            source,
            col,
            column,
        )
        return None
    return Watermark(column, decode_watermark(str(text), str(kind)))


def save_watermark(store: Store, source: str, mark: Watermark, run_id: str) -> None:
    """Replace the stored watermark of ``source`` (call inside the load's transaction)."""
    text, kind = encode_watermark(mark.value)
    now = datetime.now(UTC).replace(tzinfo=None)
    store.execute("DELETE FROM _source_watermarks WHERE source = ?", [source])
    store.execute(
        "INSERT INTO _source_watermarks VALUES (?, ?, ?, ?, ?, ?)",
        [source, mark.column, text, kind, run_id, now],
    )


def _insert_new(store: Store, table: str, cols: str, src_rel: str) -> int:
    """INSERT the rows of ``src_rel`` whose record_id is not in ``table``; returns the count."""
    before = store.count(table)
    store.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {src_rel} g "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.record_id = g.record_id)"
    )
    return store.count(table) - before
