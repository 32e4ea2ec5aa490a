"""The typed configuration of a workspace (``cip.yaml``).

One pydantic model; unknown keys and wrong types are rejected with the file and
the key named. ``${VAR}`` and ``${VAR:-default}`` expand from the environment;
relative paths resolve against the folder of the config file. Only
``pipelines/`` loads it: lower layers take explicit arguments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from profiles.contracts import schema
from profiles.errors import ConfigError

__all__ = [
    "CIPConfig",
    "SourceConfig",
    "StoreConfig",
    "MlflowConfig",
    "IdentityConfig",
    "PostgresSourceConfig",
    "ColumnValue",
    "ColumnExpr",
    "load_config",
    "dump_config",
    "expand_env",
]


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


class SourceConfig(_Model):
    """One source: where the data is, which canonical table it feeds, how columns map."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    table: Literal["customers", "orders", "order_lines", "events", "products"]
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


class StoreConfig(_Model):
    backend: Literal["duckdb", "postgres"] = "duckdb"
    path: str = "cip.duckdb"
    url: str | None = None
    db_schema: str = Field("cip", alias="schema")
    memory_limit: str | None = None

    @model_validator(mode="after")
    def _url(self) -> StoreConfig:
        if self.backend == "postgres" and not self.url:
            raise ValueError("store.backend 'postgres' needs store.url")
        return self


class MlflowConfig(_Model):
    tracking_uri: str | None = None  # default: sqlite:///<workspace>/mlflow.db
    artifact_location: str | None = None  # default: <workspace>/mlartifacts


class ForbiddenLink(_Model):
    """An operator's exclusion: never link these identifiers (``type:value``)."""

    a: str
    b: str | None = None  # None: never use identifier ``a`` for linking at all
    reason: str | None = None


class IdentityConfig(_Model):
    default_region: str = "GB"
    email_strip_plus: bool = True
    email_dot_providers: list[str] = Field(default_factory=lambda: ["gmail.com", "googlemail.com"])
    max_persons_per_identifier: dict[str, int] = Field(
        default_factory=lambda: {
            "customer_id": 1,
            "email": 3,
            "phone": 3,
            "loyalty_id": 3,
            "anonymous_id": 3,
        }
    )
    forbidden_links: list[ForbiddenLink] = Field(default_factory=list)

    @field_validator("max_persons_per_identifier")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"limits must be >= 1: {bad}")
        return v


class RecommenderConfig(_Model):
    """``recommender:`` section: how interactions are read and which algorithm trains."""

    algorithm: Literal["als", "bpr", "itemknn", "ease", "popular", "auto"] = "als"
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"purchase": 5.0, "add_to_cart": 3.0, "product_view": 1.0}
    )
    half_life_days: float | None = Field(None, gt=0)
    validation: Literal["auto", "temporal", "random"] = "auto"
    k: int = Field(10, ge=1)

    @field_validator("event_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if w < 0}
        if bad:
            raise ValueError(f"event weights must be >= 0: {bad}")
        return v


class CIPConfig(_Model):
    """The whole ``cip.yaml``."""

    version: int = 1
    store: StoreConfig = Field(default_factory=StoreConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    recommender: RecommenderConfig = Field(default_factory=RecommenderConfig)

    @model_validator(mode="after")
    def _unique_sources(self) -> CIPConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names: {dup}")
        return self

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in cip.yaml (sources: {known})")


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, *, where: str = "cip.yaml") -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        val = os.environ.get(name)
        if val is None or val == "":
            if default is not None:
                return default
            hint = ""
            if name == "CIP_SHARED":
                hint = " (set it to the 'shared' folder beside the repository, e.g. export CIP_SHARED=$PWD/../shared)"
            raise ConfigError(f"{where}: environment variable {name} is not set{hint}")
        return val

    return _VAR.sub(repl, text)


def _format_errors(path: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{path}: " + "; ".join(parts)


def load_config(path: str | Path) -> CIPConfig:
    """Load and validate a ``cip.yaml``; errors name the file and the key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    raw = _expand_tree(raw, str(p))
    try:
        return CIPConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(p), exc)) from None


def _expand_tree(node: Any, where: str) -> Any:
    if isinstance(node, str):
        return expand_env(node, where=where)
    if isinstance(node, list):
        return [_expand_tree(x, where) for x in node]
    if isinstance(node, dict):
        return {k: _expand_tree(v, where) for k, v in node.items()}
    return node


def dump_config(cfg: CIPConfig) -> str:
    """YAML text for ``cfg`` (defaults left out)."""
    data = cfg.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False)
