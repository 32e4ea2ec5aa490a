"""Readers: turn one source (files or a PostgreSQL query) into a DuckDB relation.

Every reader registers a relation named ``raw`` in the given DuckDB connection
with the source's own columns plus ``_file`` (file name, or ``postgres``) and
``_row`` (1-based data row number) and returns the column names and types.
Structural problems (missing file, unreadable or truncated file, a mapped
column the file lacks) raise :class:`~profiles.errors.SourceError` naming the
file, before anything is written.
"""

from __future__ import annotations

import csv
import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from cip.profiles.errors import SourceError
from cip.profiles.sources import SourceConfig
from cip.profiles.sql import quote_literal

if TYPE_CHECKING:
    from cip.profiles._dbsource import DbRead, Watermark

log = logging.getLogger(__name__)

#: DuckDB temp table a database source is streamed into.
DB_STAGE = "_cip_raw_db"

__all__ = ["RawInput", "read_source", "resolve_files", "source_format"]


@dataclass
class RawInput:
    """What a reader produced: the raw relation's user columns and their DuckDB types."""

    columns: dict[str, str]
    files: list[str]
    rows: int
    #: rows the file parser itself rejected (wrong field count, invalid JSON): (file, row, text, reason)
    rejected: list[tuple[str, int, str, str]] = field(default_factory=list)
    json_lines: bool = False  # JSONL: user columns are keys of the ``_line`` JSON text
    db: DbRead | None = None  # a database source: what was read and the new watermark


def resolve_files(src: SourceConfig, base_dir: Path) -> list[str]:
    """The files a source's ``path`` (file or glob) names, sorted; error when none."""
    assert src.path is not None
    pattern = src.path if Path(src.path).is_absolute() else str(base_dir / src.path)
    files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise SourceError(f"source {src.name!r}: no file found at {pattern}")
    return files


def source_format(src: SourceConfig, path: str) -> str:
    if src.format:
        return src.format
    suffix = "".join(Path(path).suffixes[-2:]).lower()
    for ext, fmt in (
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".csv", "csv"),
        (".tsv", "csv"),
        (".txt", "csv"),
    ):
        if suffix.endswith(ext) or suffix.endswith(ext + ".gz"):
            return fmt
    raise SourceError(
        f"source {src.name!r}: cannot tell the format of {path}; set format: csv|parquet|jsonl"
    )


def read_source(
    con: duckdb.DuckDBPyConnection,
    src: SourceConfig,
    base_dir: Path,
    *,
    since: Watermark | None = None,
    scratch: Path | None = None,
) -> RawInput:
    """Register the relation ``raw`` for ``src`` in ``con``.

    ``since``: for an incremental database source, the stored watermark (rows
    before it are not read). ``scratch``: a folder that lives as long as ``raw``
    is used; objects of an ``s3://`` (``gs://``, ``az://``) path are copied there
    and read by the same file readers as local files.
    """
    if src.database is not None:
        from cip.profiles._dbsource import read_database

        read = read_database(con, src, since=since, stage=DB_STAGE)
        con.execute(f"CREATE OR REPLACE TEMP VIEW raw AS SELECT * FROM {DB_STAGE}")
        return RawInput(_describe(con), [read.kind], read.rows, db=read)
    if src.is_object_store:
        from cip.profiles._objstore import fetch_objects

        if scratch is None:
            raise AssertionError("object storage sources need a scratch folder")
        files = fetch_objects(src, scratch)
    else:
        files = resolve_files(src, base_dir)
    fmt = source_format(src, files[0])
    if fmt == "parquet":
        return _read_parquet(con, src, files)
    if fmt == "csv":
        return _read_csv(con, src, files)
    return _read_jsonl(con, src, files)


def _describe(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("DESCRIBE raw").fetchall()
    return {r[0]: r[1] for r in rows if r[0] not in ("_file", "_row", "_line", "_valid")}


def _read_parquet(con: duckdb.DuckDBPyConnection, src: SourceConfig, files: list[str]) -> RawInput:
    for f in files:  # check every file is readable before anything else (truncated files)
        try:
            con.execute("SELECT count(*) FROM read_parquet(?)", [f]).fetchone()
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            raise SourceError(f"source {src.name!r}: cannot read Parquet file {f}: {msg}") from None
    flist = ", ".join(quote_literal(f) for f in files)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW raw AS SELECT * EXCLUDE (filename, file_row_number), "
        f"parse_filename(filename) AS _file, file_row_number + 1 AS _row "
        f"FROM read_parquet([{flist}], filename = true, file_row_number = true, "
        f"union_by_name = true)"
    )
    rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    return RawInput(_describe(con), files, rows)


def _csv_header(path: str, delimiter: str | None, encoding: str | None) -> list[str]:
    with open(path, encoding=encoding or "utf-8-sig", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        return []
    delim = delimiter or csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
    return next(csv.reader([first], delimiter=delim))


def _read_csv(con: duckdb.DuckDBPyConnection, src: SourceConfig, files: list[str]) -> RawInput:
    tables, rejected = [], []
    for f in files:
        header = _csv_header(f, src.csv.delimiter, src.csv.encoding)
        if not header:
            raise SourceError(f"source {src.name!r}: {f} is empty (no header line)")
        delim = src.csv.delimiter or (
            csv.Sniffer()
            .sniff(",".join(header) if len(header) > 1 else header[0] + ",", delimiters=",;\t|")
            .delimiter
            if len(header) > 1
            else ","
        )
        bad: list[tuple[str, int, str, str]] = []
        multiline = src.csv.multiline

        def on_invalid(row: pacsv.InvalidRow, _f: str = f, _bad: list = bad) -> str:
            _bad.append(
                (
                    Path(_f).name,
                    int(row.number or -1),
                    row.text,
                    f"expected {row.expected_columns} fields, found {row.actual_columns}",
                )
            )
            return "skip"

        try:
            t = pacsv.read_csv(
                f,
                read_options=pacsv.ReadOptions(
                    encoding=src.csv.encoding or "utf8",
                    column_names=header if not src.csv.header else None,
                    use_threads=False,  # rejected rows then carry their line number
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=delim, newlines_in_values=multiline, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={h: pa.string() for h in header},
                    strings_can_be_null=True,
                    null_values=[""],
                    quoted_strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise SourceError(f"source {src.name!r}: cannot read CSV file {f}: {exc}") from None
        # _row is the line number in the file (the header is line 1); without multi-line
        # values every row is one line, so the lines of rejected rows are simply skipped
        first = 2 if src.csv.header else 1
        skip = np.array(sorted(b[1] for b in bad if b[1] > 0), dtype=np.int64)
        lines = np.arange(first, first + t.num_rows + len(skip), dtype=np.int64)
        if len(skip) and not multiline:
            lines = lines[~np.isin(lines, skip)]
        t = t.append_column("_file", pa.array([Path(f).name] * t.num_rows, pa.string()))
        t = t.append_column("_row", pa.array(lines[: t.num_rows]))
        tables.append(t)
        rejected.extend(bad)
    table = pa.concat_tables(tables, promote_options="permissive")
    con.register("_raw_arrow", table)
    con.execute("CREATE OR REPLACE TEMP VIEW raw AS SELECT * FROM _raw_arrow")
    return RawInput(_describe(con), files, table.num_rows + len(rejected), rejected)


def _read_jsonl(con: duckdb.DuckDBPyConnection, src: SourceConfig, files: list[str]) -> RawInput:
    tables = []
    for f in files:
        try:
            t = pacsv.read_csv(
                f,
                read_options=pacsv.ReadOptions(
                    column_names=["_line"], encoding=src.csv.encoding or "utf8"
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\x01", quote_char=False, escape_char=False, newlines_in_values=False
                ),
                convert_options=pacsv.ConvertOptions(column_types={"_line": pa.string()}),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise SourceError(f"source {src.name!r}: cannot read JSONL file {f}: {exc}") from None
        t = t.append_column("_file", pa.array([Path(f).name] * t.num_rows, pa.string()))
        t = t.append_column("_row", pa.array(np.arange(1, t.num_rows + 1, dtype=np.int64)))
        tables.append(t)
    table = pa.concat_tables(tables)
    con.register("_raw_arrow", table)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _raw_lines AS SELECT _file, _row, _line, "
        "CASE WHEN json_valid(_line) THEN json_type(_line) = 'OBJECT' ELSE FALSE END AS _valid "
        "FROM _raw_arrow WHERE trim(_line) <> ''"
    )
    keys = [
        k[0]
        for k in con.execute(
            "SELECT DISTINCT unnest(json_keys(_line)) FROM _raw_lines WHERE _valid ORDER BY 1"
        ).fetchall()
    ]
    # every top-level key becomes a text column (objects and arrays as JSON text)
    cols = ", ".join(
        "CASE WHEN _valid THEN coalesce(json_extract_string(_line, '$.\"{0}\"'), "
        'CAST(json_extract(_line, \'$."{0}"\') AS VARCHAR)) END AS "{1}"'.format(
            k.replace('"', '\\"').replace("'", "''"), k.replace('"', '""')
        )
        for k in keys
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW raw AS SELECT {cols + ', ' if cols else ''}"
        f"_line, _valid, _file, _row FROM _raw_lines"
    )
    rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    return RawInput({k: "VARCHAR" for k in keys}, files, rows, json_lines=True)
