"""Data workflows: ingest, unify (identity resolution), features, retention."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cip.pipelines.config import FeaturesConfig
from cip.pipelines.workflows.results import AsOf, FeaturesResult, IngestResult, to_date
from cip.pipelines.workflows.setup import identity_options, salt_path
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError

if TYPE_CHECKING:
    from cip.features import FeatureParams
    from cip.profiles.identity import UnifyResult
    from cip.profiles.retention import RetentionReport

__all__ = [
    "ingest",
    "unify",
    "feature_params",
    "build_feature_snapshot",
    "apply_retention",
    "retention_summary",
]


def ingest(
    ws: Workspace,
    source: str | None = None,
    *,
    full: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestResult:
    """Ingest every source of the workspace (or one), in declaration order.

    Incremental database sources read only the rows past their stored watermark
    unless ``full`` (then the whole table or query, and the watermark is reset).
    Rows of erased persons (tombstones) and rows older than the retention policy
    allows are not loaded. ``progress(done, total, message)`` is called before
    each source and once at the end.
    """
    from cip.profiles import Suppressor
    from cip.profiles.ingest import ingest_source
    from cip.profiles.privacy import load_salt
    from cip.profiles.retention import cutoffs, ingest_cutoff

    sources = [ws.config.source(source)] if source else list(ws.config.sources)
    if not sources:
        raise ConfigError(
            f"{ws.config_path}: no sources declared; add some under 'sources:' or run `cip simulate`"
        )
    salt = load_salt(salt_path(ws))
    normaliser = identity_options(ws).normaliser_kwargs()
    reports = []
    with ws.open_store() as store:
        suppressor = Suppressor.from_store(store, salt, normaliser)
        limits = cutoffs(ws.config.retention)
        for i, src in enumerate(sources):
            if progress:
                progress(i, len(sources), f"ingesting {src.name} -> {src.table}")
            reports.append(
                ingest_source(
                    store,
                    src,
                    base_dir=ws.root,
                    suppressor=suppressor,
                    expire_before=ingest_cutoff(limits, src.table),
                    full=full,
                )
            )
        changes = 0
        if any(src.table == "products" for src in sources):
            # the catalog as versioned facts: price drops and restocks feed the triggers
            from cip.pipelines.workflows.triggers import record_catalog_after_ingest

            changes = record_catalog_after_ingest(store)
        if progress:
            progress(len(sources), len(sources), "ingested")
    return IngestResult(reports, catalog_changes=changes)


def unify(
    ws: Workspace, *, full: bool = False, progress: Callable[[str], None] | None = None
) -> UnifyResult:
    """Run identity resolution on the workspace store (incremental unless ``full``)."""
    from cip.profiles.identity import unify as run_unify

    with ws.open_store() as store:
        return run_unify(store, identity_options(ws), incremental=not full, progress=progress)


def feature_params(cfg: FeaturesConfig) -> FeatureParams:
    """The :class:`cip.features.FeatureParams` of a workspace's ``features:`` config section."""
    from cip.features import FeatureParams

    kw: dict[str, Any] = {
        "windows": tuple(cfg.windows),
        "lookback_days": cfg.lookback_days,
        "channels": tuple(cfg.channels),
        "low_review_max": cfg.low_review_max,
        "trend_windows": tuple(cfg.trend_windows),
    }
    if cfg.event_types is not None:
        kw["event_types"] = tuple(cfg.event_types)
    return FeatureParams(**kw)


def build_feature_snapshot(ws: Workspace, as_of: AsOf, out: Path | None = None) -> FeaturesResult:
    """Build the snapshot of ``as_of``, write it to the store (and to Parquet ``out``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from cip.features import FEATURE_SET_VERSION, build_features, write_features

    day = to_date(as_of)
    cfg = ws.config.features
    params = feature_params(cfg)
    t0 = time.perf_counter()
    with ws.open_store() as store:
        df = build_features(store, day, params)
        written = write_features(store, df, cfg.table)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tbl = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(tbl.schema.metadata or {})
        meta.update(
            {
                b"cip.feature_set_version": FEATURE_SET_VERSION.encode(),
                b"cip.as_of": df.attrs["as_of"].encode(),
            }
        )
        pq.write_table(tbl.replace_schema_metadata(meta), out)
    return FeaturesResult(
        frame=df,
        as_of=df.attrs["as_of"],
        feature_set_version=FEATURE_SET_VERSION,
        rows=written,
        columns=df.shape[1],
        features=[c for c in df.columns if c not in ("unified_id", "as_of")],
        event_features=any(c.startswith("events_") for c in df.columns),
        table=cfg.table,
        out=str(out) if out else None,
        seconds=round(time.perf_counter() - t0, 2),
    )


def apply_retention(ws: Workspace, now: datetime | None = None) -> RetentionReport:
    """Apply the workspace's retention policy (one transaction); returns the counts."""
    from cip.profiles.retention import apply_retention as apply

    with ws.open_store() as store:
        return apply(store, ws.config.retention, now=now)


def retention_summary(report: RetentionReport) -> dict[str, Any]:
    """The short form ``cip run`` records: rows deleted per table (tables with deletions)."""
    return {"deleted": report.total, **{t: n for t, n in report.deleted.items() if n}}
