"""Typed results of the workflows, and the one normaliser of ``as_of`` values.

Every workflow (and every :class:`cip.Workspace` method) returns one of these
frozen dataclasses, or a result type of a lower layer that is already typed
(:class:`cip.profiles.ingest.IngestReport`, :class:`cip.models.TrainResult`,
:class:`cip.activation.BuildReport`, ...). Each has ``as_dict()``: the JSON
the CLI prints with ``--json``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cip.profiles.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from cip.activation import DeliveryReport
    from cip.profiles.erasure import ErasureReport
    from cip.profiles.ingest import IngestReport

__all__ = [
    "AsOf",
    "to_date",
    "to_datetime",
    "SimulateResult",
    "IngestResult",
    "FeaturesResult",
    "RecommenderTrainResult",
    "DeliveryResult",
    "SegmentInfo",
    "SegmentList",
    "ForgetResult",
    "PersonExport",
    "WorkspaceStatus",
    "ModelVersion",
    "ModelList",
    "ChampionChange",
]

#: what an ``as_of`` may be given as at every entry point: a date, a datetime or ISO 8601 text
AsOf = dt.date | dt.datetime | str


def to_date(value: AsOf, *, what: str = "as_of") -> dt.date:
    """Normalise an ``as_of`` to the day it names (the one helper every entry point uses).

    A ``date`` is kept; a ``datetime`` gives its day (an aware one is converted
    to UTC first: the store is UTC); a string must be ISO 8601
    (``2024-06-01`` or ``2024-06-01T00:00:00``). Anything else raises
    :class:`ConfigError` with a one-line message.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_date(dt.datetime.fromisoformat(text), what=what)
        except ValueError:
            pass
    raise ConfigError(
        f"invalid {what} {value!r}: give a date (YYYY-MM-DD), a datetime or an ISO 8601 string"
    )


def to_datetime(value: dt.datetime | dt.date | str, *, what: str = "time") -> dt.datetime:
    """A reference time (e.g. retention's ``now``): ISO 8601 text, a date or a datetime."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"invalid {what}: {value!r} is not a date or time (ISO 8601)") from None


@dataclass(frozen=True)
class SimulateResult:
    """What ``simulate`` wrote and registered in ``cip.yaml``."""

    people: int
    counts: dict[str, int]
    truth_rows: int
    sources: list[str]
    replaced: list[str]
    files: dict[str, str]
    seconds: float
    #: the source declarations added to cip.yaml (name, table, path, ...)
    declarations: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("declarations")
        return d


@dataclass(frozen=True)
class IngestResult:
    """One :class:`~cip.profiles.ingest.IngestReport` per source, in declaration order."""

    reports: list[IngestReport]
    #: catalog changes (new items, price drops, restocks, ...) recorded in ``product_history``
    catalog_changes: int = 0

    @property
    def rows_loaded(self) -> int:
        return sum(r.rows_loaded for r in self.reports)

    @property
    def rows_quarantined(self) -> int:
        return sum(r.rows_quarantined for r in self.reports)

    @property
    def rows_suppressed(self) -> int:
        return sum(r.rows_suppressed for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": len(self.reports),
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "rows_suppressed": self.rows_suppressed,
            "catalog_changes": self.catalog_changes,
            "reports": [r.as_dict() for r in self.reports],
        }


@dataclass(frozen=True, eq=False)
class FeaturesResult:
    """A feature snapshot: the DataFrame written to the store and its counts."""

    frame: pd.DataFrame = field(repr=False)
    as_of: str
    feature_set_version: str
    rows: int
    columns: int
    features: list[str]
    event_features: bool
    table: str
    out: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "frame"}


@dataclass(frozen=True)
class RecommenderTrainResult:
    """One recommender training run: the registered version and validation metrics."""

    run_id: str
    algorithm: str
    version: str
    promoted: bool
    users: int
    items: int
    interactions: int
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeliveryResult:
    """Webhook deliveries: one report per destination, segment and build."""

    reports: list[DeliveryReport]

    @property
    def delivered(self) -> int:
        return sum(r.delivered for r in self.reports)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        return {"reports": [r.as_dict() for r in self.reports]}


@dataclass(frozen=True)
class SegmentInfo:
    """A configured segment and its size at its latest build (None: never built)."""

    segment: str
    kind: str
    purpose: str | None
    webhook: str | None
    description: str
    as_of: str | None
    members: int | None
    entered: int | None
    exited: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentList:
    """Every configured segment, in configuration order."""

    segments: list[SegmentInfo]

    def as_dict(self) -> dict[str, Any]:
        return {"segments": [s.as_dict() for s in self.segments]}


@dataclass(frozen=True)
class ForgetResult:
    """What an erasure did (counts only: no identifier is kept here)."""

    report: ErasureReport = field(repr=False)
    online: dict[str, Any]
    files: dict[str, Any]
    unify_before: str | None
    store_rewrite: dict[str, Any] | None
    warnings: list[str]

    @property
    def persons(self) -> int:
        return self.report.persons

    @property
    def rows_total(self) -> int:
        return sum(self.report.rows_deleted.values())

    def as_dict(self) -> dict[str, Any]:
        d = self.report.as_dict()
        d.pop("cleanup")
        d.update({"online": self.online, "files": self.files, "unify_before": self.unify_before})
        if self.store_rewrite is not None:
            d["store_rewrite"] = self.store_rewrite
        d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class PersonExport:
    """An access request's answer: everything held on the persons, as one document."""

    document: dict[str, Any]

    @property
    def persons(self) -> int:
        return len(self.document["persons"])

    @property
    def source_records(self) -> int:
        return sum(len(v) for v in self.document["records"].values())

    def as_dict(self) -> dict[str, Any]:
        return self.document


@dataclass(frozen=True)
class WorkspaceStatus:
    """Tables, row counts, quarantine, the last ingests, identity and the last ``run``."""

    workspace: str
    store: str
    sources: list[str]
    tables: dict[str, int]
    quarantine: list[dict[str, Any]]
    last_ingests: list[dict[str, Any]]
    identity: dict[str, Any] | None
    last_run: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version."""

    name: str
    version: str
    champion: bool
    run_id: str | None
    created: int | None
    tags: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelList:
    """Every registered model version, by name then version."""

    versions: list[ModelVersion]

    def champion(self, name: str) -> str | None:
        """The champion version of ``name`` (``cip-churn``), or None."""
        return next((v.version for v in self.versions if v.name == name and v.champion), None)

    def as_dict(self) -> dict[str, Any]:
        return {"versions": [v.as_dict() for v in self.versions]}


@dataclass(frozen=True)
class ChampionChange:
    """The champion of a registered model after a promote or a rollback."""

    name: str
    champion: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
