"""Source declarations: where a source's data is and how its columns map onto a contract.

A source entry of ``cip.yaml`` is a :class:`SourceConfig`. It lives in
``profiles`` (not ``pipelines``) because it is a data contract: ingestion takes
it as an explicit argument.
"""

from __future__ import annotations

from typing import Any, Literal

from cip.profiles.contracts import schema
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SourceConfig",
    "DatabaseSourceConfig",
    "PostgresSourceConfig",
    "MySQLSourceConfig",
    "IncrementalConfig",
    "ColumnValue",
    "ColumnExpr",
    "CsvOptions",
    "OBJECT_STORE_SCHEMES",
    "FileFormat",
]

#: The file formats cip reads (a source's ``format``) and writes (exports: ``--format``,
#: ``segments.exports``; :data:`cip.activation.export.ExportFormat` is this object). Spell this
#: Literal only here: typing caches ``Literal[...] | None`` by value in an LRU cache and Literals
#: compare as sets, so a second Literal with these values (in another order) would share or
#: replace the cached union, and a command's help would show another module's order depending
#: on import order and cache evictions.
FileFormat = Literal["csv", "parquet", "jsonl"]

#: URL schemes of object storage a source ``path`` may use (read through fsspec).
OBJECT_STORE_SCHEMES: tuple[str, ...] = ("s3", "gs", "gcs", "az", "abfs", "abfss")

#: Keys that would put a credential into cip.yaml (refused with a clear error).
_CREDENTIAL_KEYS = frozenset(
    {
        "credentials",
        "storage_options",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "secret_key",
        "secret",
        "token",
        "key",
        "account_key",
        "sas_token",
        "connection_string",
        "service_account",
    }
)


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


class IncrementalConfig(_Model):
    """Read only the rows past the stored watermark of a monotone ``column``.

    ``column`` is a timestamp (e.g. ``updated_at``) or an id that only grows. Each
    ingest reads the rows with ``column >= watermark`` (the watermark is the largest
    value the previous ingest read) up to the current maximum, and stores the new
    maximum in the same transaction as the load. The rows at the watermark itself
    are read again on purpose: a row committed later with the same value is not
    missed, and the rows read twice are recognised by their record id and counted
    as already there.
    """

    column: str = Field(min_length=1)


class DatabaseSourceConfig(_Model):
    """Read a source from a database: a ``query`` or a ``table`` (``schema.name``)."""

    url: str
    query: str | None = None
    table: str | None = None
    incremental: IncrementalConfig | None = None
    #: rows fetched per round trip from the server-side cursor (bounds the memory used)
    chunk_rows: int = Field(default=50_000, ge=100, le=1_000_000)

    @model_validator(mode="after")
    def _one_of(self) -> DatabaseSourceConfig:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of 'query' or 'table'")
        return self


class PostgresSourceConfig(DatabaseSourceConfig):
    """A PostgreSQL source (``url: postgresql://user@host:5432/db``)."""


class MySQLSourceConfig(DatabaseSourceConfig):
    """A MySQL or MariaDB source (``url: mysql://user:${MYSQL_PASSWORD}@host:3306/db``)."""

    @model_validator(mode="after")
    def _scheme(self) -> MySQLSourceConfig:
        if self.url.split("://", 1)[0].split("+")[0].lower() not in ("mysql", "mariadb"):
            raise ValueError("url must start with mysql:// or mariadb://")
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
    format: FileFormat | None = None
    postgres: PostgresSourceConfig | None = None
    mysql: MySQLSourceConfig | None = None
    columns: dict[str, ColumnSpec]
    where: str | None = None
    timestamp_format: str | None = None
    timezone: str = "UTC"
    csv: CsvOptions = Field(default_factory=CsvOptions)

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(k for k in data if str(k).lower() in _CREDENTIAL_KEYS)
            if found:
                raise ValueError(
                    f"source {data.get('name')!r}: {', '.join(found)}: credentials do not belong "
                    "in cip.yaml; object storage reads them from the environment or the standard "
                    "provider chain (AWS_ACCESS_KEY_ID / AWS_PROFILE, "
                    "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY ...)"
                )
        return data

    @property
    def database(self) -> DatabaseSourceConfig | None:
        """The ``postgres:`` or ``mysql:`` block, if the source is a database."""
        return self.postgres or self.mysql

    @property
    def is_object_store(self) -> bool:
        """True when ``path`` is an object storage URL (``s3://``, ``gs://``, ``az://``...)."""
        return (
            self.path is not None
            and self.path.split("://", 1)[0].lower() in (OBJECT_STORE_SCHEMES)
            and "://" in self.path
        )

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        given = [k for k in ("path", "postgres", "mysql") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"source {self.name!r}: give exactly one of 'path', 'postgres' or 'mysql'"
            )
        if self.path is not None and "://" in self.path:
            scheme, rest = self.path.split("://", 1)
            if scheme.lower() not in OBJECT_STORE_SCHEMES:
                raise ValueError(
                    f"source {self.name!r}: path scheme {scheme!r}:// is not supported "
                    f"(object storage: {', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)})"
                )
            if "@" in rest.split("/", 1)[0]:
                raise ValueError(
                    f"source {self.name!r}: path {scheme}://...@...: credentials do not belong in "
                    "cip.yaml; set them in the environment or the provider's standard chain"
                )
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
