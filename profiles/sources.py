"""Source declarations: where a source's data is and how its columns map onto a contract.

A source entry of ``cip.yaml`` is a :class:`SourceConfig`. It lives in
``profiles`` (not ``pipelines``) because it is a data contract: ingestion takes
it as an explicit argument.
"""

from __future__ import annotations

from typing import Any, Literal

from cip.profiles.contracts import schema
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SourceConfig", "PostgresSourceConfig", "ColumnValue", "ColumnExpr", "CsvOptions"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnValue(_Model):
    """A constant for a canonical column (e.g. ``currency: {value: GBP}``)."""

    value: Any


class ColumnExpr(_Model):
    """A SQL expression over the source's own columns (DuckDB dialect).

    Example: ``status: {expr: "CASE WHEN InvoiceNo LIKE 'C%' THEN 'returned' ELSE 'completed' END"}``.
    """

    expr: str


ColumnSpec = str | ColumnValue | ColumnExpr


class PostgresSourceConfig(_Model):
    """Read a source from PostgreSQL: a ``query`` or a ``table`` (``schema.name``)."""

    url: str
    query: str | None = None
    table: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PostgresSourceConfig:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of 'query' or 'table'")
        return self


class CsvOptions(_Model):
    delimiter: str | None = None
    header: bool = True
    encoding: str | None = None
    multiline: bool = (
        False  # quoted values may contain line breaks (then rejected rows have no line number)
    )


class SourceConfig(_Model):
    """One source: where the data is, which canonical table it feeds, how columns map."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    table: Literal["customers", "orders", "order_lines", "events", "products", "message_events"]
    path: str | None = None
    format: Literal["csv", "parquet", "jsonl"] | None = None
    postgres: PostgresSourceConfig | None = None
    columns: dict[str, ColumnSpec]
    where: str | None = None
    timestamp_format: str | None = None
    timezone: str = "UTC"
    csv: CsvOptions = Field(default_factory=CsvOptions)

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if (self.path is None) == (self.postgres is None):
            raise ValueError(f"source {self.name!r}: give exactly one of 'path' or 'postgres'")
        sch = schema(self.table)
        unknown = [c for c in self.columns if c not in sch.mappable]
        if unknown:
            raise ValueError(
                f"source {self.name!r}: columns {unknown} are not in the {self.table} contract "
                f"(known: {', '.join(sch.mappable)})"
            )
        missing = [c for c in sch.required if c not in self.columns]
        if missing:
            raise ValueError(
                f"source {self.name!r}: required {self.table} columns not mapped: {missing}"
            )
        return self
