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

from activation import (
    SegmentDefinition,
    WebhookDestination,
    check_definitions,
    default_definitions,
)
from profiles.errors import ConfigError
from profiles.sources import (
    ColumnExpr,
    ColumnValue,
    CsvOptions,
    PostgresSourceConfig,
    SourceConfig,
)
from serving.settings import ServingOptions

__all__ = [
    "CIPConfig",
    "SourceConfig",
    "StoreConfig",
    "MlflowConfig",
    "IdentityConfig",
    "ServingConfig",
    "PostgresSourceConfig",
    "ColumnValue",
    "ColumnExpr",
    "load_config",
    "dump_config",
    "expand_env",
    "CsvOptions",
    "SegmentsConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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


class SegmentsConfig(_Model):
    """Segments (``segments:``): definitions and webhook destinations.

    Without ``definitions`` the shipped defaults are used (the 11 RFM segments,
    ``high_value_at_risk``, ``likely_buyers``, ``abandoned_cart``,
    ``abandoned_browse``); ``include_defaults: true`` adds them to your own
    (yours win on a name clash).
    """

    features_table: str = "features_default"
    include_defaults: bool = False
    deliver_on_build: bool = True
    definitions: list[SegmentDefinition] = Field(default_factory=list)
    webhooks: dict[str, WebhookDestination] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SegmentsConfig:
        try:
            check_definitions(self.effective(), self.webhooks)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def effective(self) -> list[SegmentDefinition]:
        """The definitions a build uses."""
        if not self.definitions:
            return default_definitions()
        if not self.include_defaults:
            return list(self.definitions)
        mine = {d.name for d in self.definitions}
        return [d for d in default_definitions() if d.name not in mine] + list(self.definitions)


class ServingConfig(ServingOptions):
    """The ``serving:`` section: host, port, workers, session store, reload, consent policy."""


class CIPConfig(_Model):
    """The whole ``cip.yaml``."""

    version: int = 1
    store: StoreConfig = Field(default_factory=StoreConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

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
