"""Assemble the feature table, run it on a store, stack training sets, write snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from cip.features._expr import days_before, least_of, to_frame, ts_lit, zero
from cip.features.behaviour import category_features, event_features
from cip.features.catalog import feature_specs
from cip.features.inputs import FeatureInputs, load_inputs, restrict_persons
from cip.features.labels import check_horizon, compute_labels, data_end, labels_to_pandas
from cip.features.rfm import order_features
from cip.features.segments import rfm_segment
from cip.features.spec import (
    FEATURE_SET_VERSION,
    KEY_COLUMNS,
    RFM_COLUMNS,
    FeatureParams,
    FeatureSpec,
    iso,
    to_as_of,
)
from cip.profiles.errors import DataError
from cip.profiles.privacy import stated_refusals
from cip.profiles.sql import quote_ident

__all__ = [
    "compute_features",
    "compute_rfm",
    "build_features",
    "build_training_set",
    "write_features",
    "features_to_pandas",
    "output_specs",
    "DEFAULT_FEATURE_TABLE",
]

log = logging.getLogger(__name__)

DEFAULT_FEATURE_TABLE = "features_default"


def output_specs(inputs: FeatureInputs, params: FeatureParams) -> list[FeatureSpec]:
    """The feature columns :func:`compute_features` produces for these inputs."""
    return feature_specs(
        params,
        events=inputs.events is not None,
        products=inputs.products is not None,
        order_lines=inputs.order_lines is not None,
    )


def _zero_filled(spec: FeatureSpec) -> bool:
    """Counts and sums are 0 (not missing) for a person without rows in a group."""
    return spec.dtype == "int64" or spec.name.startswith(("revenue_", "monetary"))


def compute_features(tables: FeatureInputs, as_of: Any, params: FeatureParams | None = None) -> Any:
    """The feature table of one snapshot as an Ibis expression (pure; nothing runs).

    One row per person with at least one order or event before ``as_of``;
    columns ``unified_id, as_of``, the numeric features, then ``rfm_segment,
    r_score, f_score, m_score``. Only records with ``ts < as_of`` are read
    (see :mod:`features.spec`). The same expression runs on DuckDB, PostgreSQL
    and Spark.

    Args:
        tables: Inputs from :func:`features.inputs.load_inputs` (or ``inputs_from_ibis``).
        as_of: Snapshot date or timestamp (naive UTC; a date means midnight).
        params: Feature parameters (default :class:`FeatureParams`).
    """
    p = params or FeatureParams()
    return _assemble(tables, to_as_of(as_of), p, output_specs(tables, p), rfm_only=False)


def compute_rfm(tables: FeatureInputs, as_of: Any, params: FeatureParams | None = None) -> Any:
    """Only the RFM core: ``unified_id, as_of``, :data:`RFM_COLUMNS`, segment and scores.

    Same population and values as :func:`compute_features` (``tenure_days``
    still counts events), computed in one aggregation pass over the orders.
    """
    p = params or FeatureParams()
    specs = [s for s in output_specs(tables, p) if s.name in RFM_COLUMNS or s.group == "scores"]
    return _assemble(tables, to_as_of(as_of), p, specs, rfm_only=True)


def _assemble(
    tables: FeatureInputs, ts: pd.Timestamp, p: FeatureParams, specs: list, *, rfm_only: bool
) -> Any:
    t = order_features(tables.orders, ts, p, rfm_only=rfm_only)
    if tables.events is not None:
        if rfm_only:
            e = tables.events.filter(tables.events.ts < ts_lit(ts))
            ev = e.group_by("unified_id").aggregate(_first_ev_ts=e.ts.min())
        else:
            ev = event_features(tables.events, ts, p, tables.products)
        t = t.outer_join(ev, t.unified_id == ev.unified_id)
        t = t.mutate(unified_id=t.unified_id.fill_null(t.unified_id_right)).drop("unified_id_right")
        first = least_of(t._first_ts, t._first_ev_ts)
    else:
        first = t._first_ts
    t = t.mutate(tenure_days=days_before(ts, first))
    if not rfm_only and tables.order_lines is not None and tables.products is not None:
        cat = category_features(tables.order_lines, ts, p, tables.products)
        t = t.left_join(cat, "unified_id").drop("unified_id_right")

    numeric = [s for s in specs if s.group != "scores"]
    t = t.select(
        "unified_id",
        "r_score",
        "f_score",
        "m_score",
        **{s.name: (zero(t[s.name]) if _zero_filled(s) else t[s.name]) for s in numeric},
    )
    return t.select(
        "unified_id",
        ts_lit(ts).name("as_of"),
        *[s.name for s in numeric],
        rfm_segment=rfm_segment(t.r_score, t.f_score, t.m_score),
        r_score=t.r_score,
        f_score=t.f_score,
        m_score=t.m_score,
    )


def features_to_pandas(
    expr: Any, inputs: FeatureInputs, params: FeatureParams | None = None
) -> pd.DataFrame:
    """Execute a feature expression; dtypes follow the catalog, rows sorted by ``unified_id``."""
    p = params or FeatureParams()
    dtypes = {"unified_id": "str", "as_of": "datetime64[us]"}
    dtypes.update({s.name: s.dtype for s in output_specs(inputs, p)})
    return to_frame(expr, dtypes)


def build_features(store: Any, as_of: Any, params: FeatureParams | None = None) -> pd.DataFrame:
    """Compute the feature table of one snapshot in the store's engine.

    Returns one row per ``unified_id`` (sorted), with the columns of
    :func:`compute_features`; ``df.attrs`` records ``feature_set_version``,
    ``as_of`` (ISO text) and ``params`` (JSON-friendly, so ``to_parquet`` keeps them).
    """
    p = params or FeatureParams()
    ts = to_as_of(as_of)
    t0 = time.perf_counter()
    inputs = load_inputs(store)
    df = features_to_pandas(compute_features(inputs, ts, p), inputs, p)
    df.attrs.update(feature_set_version=FEATURE_SET_VERSION, as_of=iso(ts), params=p.as_dict())
    log.info(
        "features as of %s: %d persons x %d columns in %.1f s",
        ts,
        len(df),
        df.shape[1],
        time.perf_counter() - t0,
    )
    return df


def profiling_objections(store: Any) -> set[str]:
    """Unified ids who objected to profiling (GDPR Art. 21/22): an explicit refusal.

    Profiling needs no opt-in, so no statement is no objection (the rule the HTTP
    service applies too, :func:`profiles.privacy.stated_refusals`). Their rows are left
    out of every training set (churn, propensity, CLV) and of batch scoring; an empty
    set when the store has no ``profiles`` table or no consent column.
    """
    return stated_refusals(store, "profiling")


def build_training_set(
    store: Any,
    as_ofs: Sequence[Any],
    horizon_days: int,
    params: FeatureParams | None = None,
    *,
    persons: Callable[[Any], Any] | None = None,
) -> pd.DataFrame:
    """Features and labels of several snapshots, stacked (e.g. monthly ``as_of`` dates).

    Every ``as_of`` is checked against :func:`features.data_end` before anything
    is computed. Labels use ``params.lookback_days`` for ``active``. The result
    has the feature columns followed by ``churn, purchase, future_spend,
    active``. ``persons`` (an Ibis predicate on ``unified_id``, see
    :func:`features.inputs.restrict_persons`) keeps only those persons, filtered in
    the engine before features and labels are computed (a row budget's sample);
    ``df.attrs["feature_set_version"]``, ``df.attrs["as_ofs"]`` (ISO
    dates, ascending), ``horizon_days`` and ``params`` record the snapshots.

    Raises:
        DataError: when ``as_ofs`` is empty or a horizon runs past the data end.
    """
    p = params or FeatureParams()
    if not as_ofs:
        raise DataError("build_training_set needs at least one as_of date")
    end = data_end(store)
    stamps = sorted({check_horizon(a, horizon_days, end) for a in as_ofs})
    inputs = restrict_persons(load_inputs(store), persons)
    parts = []
    for ts in stamps:
        feats = features_to_pandas(compute_features(inputs, ts, p), inputs, p)
        labels = labels_to_pandas(compute_labels(inputs, ts, horizon_days, p.lookback_days))
        parts.append(feats.merge(labels, on=list(KEY_COLUMNS), how="left", validate="1:1"))
        log.info("training snapshot %s: %d rows", ts.date(), len(feats))
    df = pd.concat(parts, ignore_index=True)
    denied = profiling_objections(store)
    excluded = 0
    if denied:
        keep = ~df["unified_id"].astype(str).isin(denied)
        excluded = int((~keep).sum())
        df = df[keep].reset_index(drop=True)
        log.info("training set: %d rows of persons who objected to profiling left out", excluded)
    df.attrs.update(
        feature_set_version=FEATURE_SET_VERSION,
        as_ofs=[iso(ts) for ts in stamps],
        excluded_no_consent=excluded,
        horizon_days=horizon_days,
        params=p.as_dict(),
    )
    return df


def write_features(store: Any, df: pd.DataFrame, table: str = DEFAULT_FEATURE_TABLE) -> int:
    """Write feature snapshots into ``table``, replacing the same ``as_of`` atomically.

    Snapshots of other ``as_of`` dates stay. When the table's columns differ from
    ``df`` (a new feature-set version, events appearing), the table is rebuilt with
    ``df``'s columns (old snapshots keep the shared columns; new ones are NULL).
    Returns the number of rows written.
    """
    stamps = sorted(pd.to_datetime(df["as_of"]).unique())
    with store.transaction():
        if not store.has_table(table):
            store.load_arrow(table, df, mode="replace")
            return len(df)
        existing = list(store.sql(f"SELECT * FROM {quote_ident(table)} LIMIT 0").columns)
        if existing == list(df.columns):
            for ts in stamps:
                store.execute(
                    f"DELETE FROM {quote_ident(table)} WHERE as_of = ?", [pd.Timestamp(ts)]
                )
            store.load_arrow(table, df, mode="append")
            return len(df)
        log.warning("feature table %s: columns changed, rebuilding it", table)
        old = store.read_table(table)
        old = old[~pd.to_datetime(old["as_of"]).isin(stamps)]
        shared = [c for c in df.columns if c in old.columns]
        merged = pd.concat([old[shared].astype(df[shared].dtypes.to_dict()), df], ignore_index=True)
        store.load_arrow(table, merged[list(df.columns)], mode="replace")
    return len(df)
