"""Chunked, deterministic file writers for the simulator (CSV, Parquet, JSONL)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from cip.profiles.sql import quote_literal


class Sink:
    """Appends Arrow tables chunk by chunk to one file; the first chunk fixes the schema.

    CSV and Parquet stream to disk; JSONL collects the (small) tables and DuckDB
    writes them on :meth:`close` (one JSON object per line).
    """

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._writer: pcsv.CSVWriter | pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._parts: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = _plain_schema(table.schema, keep_dict=self.fmt == "parquet")
        table = table.cast(self._schema)
        self.rows += table.num_rows
        if self.fmt == "jsonl":
            self._parts.append(table)
            return
        if self._writer is None:
            if self.fmt == "csv":
                opts = pcsv.WriteOptions(quoting_style="needed")
                self._writer = pcsv.CSVWriter(self.path, self._schema, write_options=opts)
            else:
                self._writer = pq.ParquetWriter(
                    self.path, self._schema, compression="zstd", store_schema=False
                )
        self._writer.write_table(table)

    def close(self) -> None:
        if self.fmt == "jsonl":
            if not self._parts:
                return
            con = duckdb.connect()
            try:
                con.register("data", pa.concat_tables(self._parts))
                con.execute("SET preserve_insertion_order = true")
                con.execute(
                    f"COPY (SELECT * FROM data) TO {quote_literal(self.path)} (FORMAT json)"
                )
            finally:
                con.close()
            self._parts = []
        elif self._writer is not None:
            self._writer.close()
        self._writer = None

    def abort(self) -> None:
        """Release the file without finishing it (after an error; a no-op once closed)."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._parts = []


def _plain_schema(schema: pa.Schema, *, keep_dict: bool) -> pa.Schema:
    """Null-typed columns (all missing in the first chunk) become strings; dictionaries too,
    unless ``keep_dict`` (Parquet stores dictionary-encoded strings natively)."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_null(t):
            return pa.string()
        if pa.types.is_dictionary(t):
            return pa.dictionary(pa.int32(), pa.string()) if keep_dict else pa.string()
        return t

    return pa.schema([pa.field(f.name, plain(f.type)) for f in schema])
