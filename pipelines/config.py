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
from cip.activation import (
    ExportFormat,
    SegmentDefinition,
    WebhookDestination,
    check_definitions,
    default_definitions,
)
from cip.activation.policy import Duration, PolicyConfig
from cip.activation.triggers.definitions import (
    Destination,
    Trigger,
    check_triggers,
    validate_triggers,
)
from cip.profiles.contracts import DEFAULT_MIN_AUC, schema
from cip.profiles.errors import ConfigError
from cip.profiles.retention import check_policy
from cip.profiles.sources import (
    ColumnExpr,
    ColumnValue,
    CsvOptions,
    IncrementalConfig,
    MySQLSourceConfig,
    PostgresSourceConfig,
    SourceConfig,
)
from cip.serving.settings import ServingOptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CIPConfig",
    "SourceConfig",
    "StoreConfig",
    "MlflowConfig",
    "SparkConfig",
    "IdentityConfig",
    "FuzzyMatchingConfig",
    "ForbiddenLink",
    "FeaturesConfig",
    "ServingConfig",
    "PostgresSourceConfig",
    "MySQLSourceConfig",
    "IncrementalConfig",
    "ColumnValue",
    "ColumnExpr",
    "load_config",
    "dump_config",
    "expand_env",
    "CsvOptions",
    "SegmentsConfig",
    "BlockConfig",
    "BLOCK_KINDS",
    "default_blocks",
    "SegmentExport",
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


class SparkConfig(_Model):
    """Where ``engine: spark`` runs: the Spark master, the warehouse folder, extra Spark conf.

    The defaults work in a plain workspace: local mode on every core and the
    warehouse in ``<workspace>/spark-warehouse``. For a cluster, set ``master``
    (e.g. ``spark://host:7077`` or ``yarn``) and put ``warehouse`` on storage
    every executor and the driver can reach.
    """

    master: str = "local[*]"
    warehouse: str = "spark-warehouse"  # relative: inside the workspace folder
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("master")
    @classmethod
    def _master(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("spark.master must not be empty (e.g. local[*] or spark://host:7077)")
        return v.strip()

    @field_validator("conf")
    @classmethod
    def _conf(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"spark.conf keys are Spark settings (spark.*), not {bad}")
        return v


class MlflowConfig(_Model):
    tracking_uri: str | None = None  # default: sqlite:///<workspace>/mlflow.db
    artifact_location: str | None = None  # default: <workspace>/mlartifacts


_IDENTIFIER_REF = r"^(customer_id|email|phone|loyalty_id|anonymous_id):\S.*$"


class ForbiddenLink(_Model):
    """An operator's exclusion: never link these identifiers (``type:value``)."""

    a: str = Field(pattern=_IDENTIFIER_REF)
    b: str | None = Field(None, pattern=_IDENTIFIER_REF)  # None: never use ``a`` for linking
    reason: str | None = None


class FuzzyMatchingConfig(_Model):
    """Probabilistic matching of ``customers`` records (Splink), for records sharing no identifier.

    ``fields`` maps a customers column to its kind: name, date, text, postcode,
    email, phone or exact. Links need a match probability >= ``threshold``.
    """

    enabled: bool = False
    fields: dict[str, Literal["name", "date", "text", "postcode", "email", "phone", "exact"]] = (
        Field(
            default_factory=lambda: {
                "first_name": "name",
                "last_name": "name",
                "date_of_birth": "date",
                "postcode": "postcode",
                "email": "email",
            }
        )
    )
    threshold: float = Field(0.95, gt=0.0, lt=1.0)
    max_pairs_u: float = Field(1e7, gt=0)
    seed: int = 42

    @field_validator("fields")
    @classmethod
    def _customer_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = schema("customers").names
        bad = [c for c in v if c not in known]
        if bad:
            raise ValueError(f"{bad} are not customers columns (known: {', '.join(known)})")
        return v


class IdentityConfig(_Model):
    """Identity resolution (``cip unify``): normalisation, guard, splits, survivorship.

    ``max_persons_per_identifier``: an identifier value that would join more
    than this many persons (formed by the more trusted identifier types) is not
    used for linking and is reported (``cip identity blocked``).
    ``survivorship``: per trait, sources in priority order (else the most
    recent non-null value wins).
    """

    default_region: str = "GB"
    email_strip_plus: bool = True
    email_dot_providers: list[str] = Field(default_factory=lambda: ["gmail.com", "googlemail.com"])
    email_domain_aliases: dict[str, str] = Field(
        default_factory=lambda: {"googlemail.com": "gmail.com"}
    )
    phone_validation: Literal["valid", "possible"] = "valid"
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
    survivorship: dict[
        Literal[
            "first_name", "last_name", "date_of_birth", "address", "city", "postcode", "country"
        ],
        list[str],
    ] = Field(default_factory=dict)
    fuzzy: FuzzyMatchingConfig = Field(default_factory=FuzzyMatchingConfig)

    @field_validator("max_persons_per_identifier")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"limits must be >= 1: {bad}")
        unknown = [
            k for k in v if k not in ("customer_id", "email", "phone", "loyalty_id", "anonymous_id")
        ]
        if unknown:
            raise ValueError(f"unknown identifier types {unknown}")
        return v


class ClvConfig(_Model):
    """``models.clv``: the CLV model (``cip train clv`` and the train step of ``cip run``)."""

    train: bool = True  # train it in `cip run` (per run.train), score with it in `cip score`
    horizon_days: int | None = Field(None, ge=1)  # CLV horizon H (default: models.horizon_days)
    snapshot_every_days: int | None = Field(None, ge=1)  # default: 30
    n_snapshots: int | None = Field(None, ge=2)  # default: 12
    tune_trials: int | None = Field(
        None, ge=1
    )  # Optuna trials of the two-part model (default: none)
    #: row budget: fitting rows in all (a deterministic hash sample of persons above it;
    #: null: no budget) and rows of the holdout snapshot; see cip.models.clv.sampling
    max_rows: int | None = Field(400_000, ge=1000)
    holdout_rows: int | None = Field(200_000, ge=1000)


class ModelsConfig(_Model):
    """Defaults of ``cip train`` and ``cip score`` (command-line options override them)."""

    horizon_days: int = Field(90, ge=1)
    snapshot_every_days: int = Field(30, ge=1)
    n_snapshots: int = Field(24, ge=2)
    holdout: Literal["auto", "as_of", "latest_labelled"] = "auto"
    min_delta: float = Field(0.0, ge=0.0)
    #: churn/propensity: promote a candidate (LightGBM or baseline) only when its holdout ROC
    #: AUC is above this; 0.5 is a coin flip, so a model at or below it has no skill
    min_auc: float = Field(DEFAULT_MIN_AUC, ge=0.5, lt=1.0)
    reasons: Literal["path", "shap"] = "path"
    clv: ClvConfig = Field(default_factory=ClvConfig)

    @field_validator("clv", mode="before")
    @classmethod
    def _clv_flag(cls, v: Any) -> Any:
        """``clv: false`` / ``clv: true`` is short for ``clv: {train: false|true}``."""
        return {"train": v} if isinstance(v, bool) else v


class RecommendColumn(_Model):
    """``recommend: {block, n}`` of an export: a ``recommended_items`` column from a block."""

    block: str
    n: int = Field(6, ge=1, le=100)


class SegmentExport(_Model):
    """One file ``cip run`` writes after each segment build (``segments.exports``)."""

    segment: str
    path: str  # relative paths resolve against the workspace folder
    format: ExportFormat | None = None  # default: from the extension
    purpose: Literal["email", "sms", "push"] | None = None  # default: the segment's purpose
    changes: Literal["entered", "exited"] | None = None  # only entries / exits
    columns: list[  # score columns to add (e.g. clv, p_alive, next_order_date)
        Literal[
            "churn_probability",
            "purchase_probability",
            "clv",
            "expected_orders",
            "p_alive",
            "next_order_date",
            "clv_model_version",
        ]
    ] = Field(default_factory=list)
    #: add the top-n of a block (from ``blocks:``) per member, personalisation consent only
    recommend: RecommendColumn | None = None

    @model_validator(mode="after")
    def _format(self) -> SegmentExport:
        if self.format is None:
            ext = Path(self.path).suffix.lower().lstrip(".")
            if ext not in ("csv", "parquet", "jsonl"):
                raise ValueError(
                    f"export of {self.segment!r}: cannot tell the format of {self.path!r}; "
                    "give format: csv | parquet | jsonl"
                )
            self.format = ext  # type: ignore[assignment]
        return self


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
    exports: list[SegmentExport] = Field(default_factory=list)  # written by `cip run`

    @model_validator(mode="after")
    def _check(self) -> SegmentsConfig:
        try:
            check_definitions(self.effective(), self.webhooks)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        known = {d.name for d in self.effective()}
        unknown = sorted({e.segment for e in self.exports} - known)
        if unknown:
            raise ValueError(f"exports name unknown segments {unknown}")
        return self

    def effective(self) -> list[SegmentDefinition]:
        """The definitions a build uses."""
        if not self.definitions:
            return default_definitions()
        if not self.include_defaults:
            return list(self.definitions)
        mine = {d.name for d in self.definitions}
        return [d for d in default_definitions() if d.name not in mine] + list(self.definitions)


class FeaturesConfig(_Model):
    """Feature-set parameters (see ``features.FeatureParams``) and label defaults."""

    windows: list[int] = Field(default_factory=lambda: [7, 30, 90, 365])
    lookback_days: int = Field(365, gt=0)
    horizon_days: int = Field(90, gt=0)
    channels: list[str] = Field(default_factory=lambda: ["web", "app", "store"])
    event_types: list[str] | None = None  # None: features.FeatureParams' default types
    low_review_max: float = 2.0
    trend_windows: list[int] = Field(default_factory=lambda: [30, 90])
    table: str = Field("features_default", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("windows", "trend_windows")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct positive day counts, got {v}")
        return v


class RecommenderConfig(_Model):
    """``recommender:`` section: how interactions are read and which algorithm trains."""

    algorithm: Literal["als", "bpr", "itemknn", "ease", "spark_als", "blend", "popular", "auto"] = (
        "als"
    )
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


#: Block kinds (``models.recommender.blocks.BLOCKS``), in their default order.
BLOCK_KINDS = (
    "personal",
    "similar",
    "bought_together",
    "buy_again",
    "popular",
    "trending",
    "recently_viewed",
    "upsell",
)


class BlockConfig(_Model):
    """One named recommendation block (``blocks.<name>``): its kind, size, parameters, rules."""

    kind: Literal[BLOCK_KINDS]  # type: ignore[valid-type]  # the tuple above, one list of kinds
    k: int = Field(10, ge=1, le=100)
    #: the kind's hyperparameters (e.g. ``half_life_days`` of ``buy_again``)
    params: dict[str, Any] = Field(default_factory=dict)
    #: default rules (``models.recommender.blocks.Rules``); requests add theirs on top
    rules: dict[str, Any] = Field(default_factory=dict)


def default_blocks() -> dict[str, BlockConfig]:
    """One block per kind, named after it (used when ``blocks:`` is absent)."""
    return {k: BlockConfig(kind=k) for k in BLOCK_KINDS}  # type: ignore[arg-type]


def _check_blocks(blocks: dict[str, BlockConfig]) -> None:
    """Names, parameters and rules of ``blocks:``; errors name the block and the key."""
    from cip.models.recommender.blocks import BLOCKS, Rules

    for name, b in blocks.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
            raise ValueError(
                f"blocks.{name}: a block name is a letter then letters, digits, _ or - (max 64)"
            )
        known = BLOCKS[b.kind]._param_names()
        if b.kind == "personal":
            known = [p for p in known if p != "model"]
        for p in b.params:
            if p not in known:
                raise ValueError(
                    f"blocks.{name}.params.{p}: unknown parameter of a {b.kind} block "
                    f"(known: {', '.join(known) or 'none'})"
                )
        try:
            Rules.from_dict(b.rules)
        except (ConfigError, TypeError) as exc:
            raise ValueError(f"blocks.{name}.rules: {exc}") from None


class RunConfig(_Model):
    """``run:`` section: what ``cip run`` does besides ingest, unify, features, score, segments."""

    train: Literal["always", "if_missing", "never"] = "if_missing"  # retrain the models?
    tune_trials: int | None = Field(None, ge=1)  # Optuna trials per model when training
    recommender: bool = True  # train the recommender too
    blocks: bool = True  # fit the recommendation blocks (``blocks:``) after training


class ServingConfig(ServingOptions):
    """The ``serving:`` section: host, port, workers, session store, reload, consent policy."""


class TriggerWorkerConfig(_Model):
    """The ``trigger_worker:`` section: how ``cip triggers run`` gets events and content.

    ``feed``: ``journal`` (the service's event files, the embedded default) or
    ``redis`` (a Redis Stream read with a consumer group; the service appends
    every accepted event to it). ``service_url``: the BentoML service asked for
    recommendations (default ``http://<serving.host>:<serving.port>``), with
    ``service_key`` (a ``shop`` key; best ``${CIP_SERVICE_KEY}``). ``poll_seconds``:
    the wait between polls when the feed is read (the floor of the event -> webhook
    latency; 0.1-0.2 for sub-second answers). ``hold_seconds``: with DuckDB, how long
    the worker keeps the store file open while busy before it lets the service and
    ``cip run`` at it. ``delivery_concurrency``: webhooks in flight at once (one
    keep-alive connection each).
    """

    feed: Literal["journal", "redis"] = "journal"
    redis_url: str | None = None  # default: serving.redis_url
    redis_stream: str | None = None  # default: serving.event_stream, else cip:events
    redis_group: str = "cip-triggers"
    service_url: str | None = None
    service_key: str | None = Field(None, repr=False)
    max_event_age: Duration = "24h"  # older events never start a journey
    poll_seconds: float = Field(1.0, gt=0, le=3600)
    retry_after: Duration = "5m"  # how long a message waits when the service cannot answer
    batch_size: int = Field(5_000, ge=1, le=1_000_000)  # events read per cycle
    #: DuckDB: the longest the worker keeps the store file open under a steady load
    hold_seconds: float = Field(30.0, gt=0, le=3600)
    delivery_concurrency: int = Field(16, ge=1, le=256)  # webhooks in flight at once


class CIPConfig(_Model):
    """The whole ``cip.yaml``."""

    version: int = 1
    #: where the pipeline's tables live and its SQL runs: the store (DuckDB or
    #: PostgreSQL, see ``store``) or Apache Spark over Parquet tables (see ``spark``)
    engine: Literal["store", "spark"] = "store"
    store: StoreConfig = Field(default_factory=StoreConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    recommender: RecommenderConfig = Field(default_factory=RecommenderConfig)
    #: named recommendation blocks (default: one block per kind, named after it)
    blocks: dict[str, BlockConfig] = Field(default_factory=default_blocks)
    run: RunConfig = Field(default_factory=RunConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    retention: dict[str, int] = Field(default_factory=dict)  # see profiles.retention
    destinations: dict[str, Destination] = Field(default_factory=dict)  # trigger receivers
    triggers: list[Trigger] = Field(default_factory=list)  # see activation.triggers
    policy: PolicyConfig = Field(default_factory=PolicyConfig)  # see activation.policy
    trigger_worker: TriggerWorkerConfig = Field(default_factory=TriggerWorkerConfig)

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers(cls, v: Any) -> Any:
        try:
            return validate_triggers(v or [])
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: dict[str, BlockConfig]) -> dict[str, BlockConfig]:
        if not v:
            raise ValueError("give at least one block (or leave blocks: out for the defaults)")
        _check_blocks(v)
        return v

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: dict[str, int]) -> dict[str, int]:
        try:
            return check_policy(v)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("retention: ")) from None

    @model_validator(mode="after")
    def _unique_sources(self) -> CIPConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names: {dup}")
        for e in self.segments.exports:
            if e.recommend is not None and e.recommend.block not in self.blocks:
                raise ValueError(
                    f"segments.exports ({e.segment}).recommend.block: unknown block "
                    f"{e.recommend.block!r}; blocks: {', '.join(self.blocks)}"
                )
        for name, w in self.segments.webhooks.items():
            if w.recommend is not None and w.recommend.block not in self.blocks:
                raise ValueError(
                    f"segments.webhooks.{name}.recommend.block: unknown block "
                    f"{w.recommend.block!r}; blocks: {', '.join(self.blocks)}"
                )
        try:
            check_triggers(self.triggers, self.destinations)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
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
