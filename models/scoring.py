"""Batch scoring with the champion models into the ``scores`` table and export files.

One row per profile and ``as_of``: churn and purchase probabilities, the model
versions used, the top reasons of each model (a JSON list of strings, the churn
model's first; each says which score it moves, e.g. "recency_days = 120 (days
since the last completed purchase) raises churn risk"), the RFM segment and,
when a ``cip-clv`` champion exists, the CLV outputs (:data:`CLV_COLUMNS`:
``clv``, ``expected_orders``, ``p_alive``, ``next_order_date``,
``clv_model_version``; null without one). Whatever champions exist are used: a
missing one leaves its columns null; only when there is none at all is it an
error. Profiles who objected to profiling (an explicit ``consent_profiling`` false,
see :func:`features.profiling_objections`) are not scored by any model. Writing
replaces the rows of that ``as_of`` in one transaction (re-running is idempotent);
a ``scores`` table written by an older version gains the new columns first.
The export (CSV or Parquet by extension) adds the source ``customer_id``: one
row per customer id of a profile (from ``record_map`` when identity resolution
ran, else the profile id is the customer id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from cip.models._reasons import join_reasons_json
from cip.profiles.contracts import CHURN_MODEL, CLV_MODEL, PROPENSITY_MODEL
from cip.profiles.errors import ConfigError, DataError, NotFoundError
from cip.profiles.sql import quote_ident, quote_literal
from cip.profiles.tables import SCORES, ensure_tables

__all__ = [
    "SCORES_TABLE",
    "SCORE_COLUMNS",
    "MODEL_NAMES",
    "CLV_COLUMNS",
    "ScoreResult",
    "load_champions",
    "score_frame",
    "write_scores",
    "customer_ids",
    "export_scores",
    "score",
]

log = logging.getLogger(__name__)

SCORES_TABLE = SCORES.name
SCORE_COLUMNS: tuple[str, ...] = tuple(SCORES.names)
#: registry name -> probability column
MODEL_NAMES: dict[str, str] = {
    CHURN_MODEL: "churn_probability",
    PROPENSITY_MODEL: "purchase_probability",
}
#: the columns the ``cip-clv`` champion fills (null without one)
CLV_COLUMNS: tuple[str, ...] = (
    "clv",
    "expected_orders",
    "p_alive",
    "next_order_date",
    "clv_model_version",
)


@dataclass
class ScoreResult:
    """What ``cip score`` did (its ``--json`` output)."""

    as_of: str
    profiles_scored: int
    excluded_no_consent: int
    models: dict[str, str]
    seconds: float
    out: str | None = None
    out_rows: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the horizon of ``clv`` / ``expected_orders`` (None: no CLV champion)
    clv_horizon_days: int | None = None
    #: output column -> why it was left null: its model has no champion (e.g. "cip-churn has
    #: no champion: version 1 not promoted: best holdout AUC 0.50 <= 0.55 (models.min_auc)")
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` output of ``cip score``."""
        return asdict(self)


def load_champions(tracking_uri: str, *, clv: bool = True) -> dict[str, tuple[str, Any]]:
    """``{registry name: (version, model)}`` of the champions that exist.

    The churn and propensity champions are classifiers; with ``clv`` the
    ``cip-clv`` champion (a :class:`cip.models.clv.CLVModel`) is included too.

    Raises:
        NotFoundError: when none of them has a champion.
    """
    from cip.models.registry import configure_mlflow
    from cip.models.tracking import load_champion

    configure_mlflow(tracking_uri)
    found = {}
    for name in MODEL_NAMES:
        champ = load_champion(name)
        if champ is not None:
            found[name] = champ
    if clv:
        from cip.models.clv import load_clv_champion

        champ = load_clv_champion(tracking_uri)
        if champ is not None:
            found[CLV_MODEL] = champ
    if not found:
        raise NotFoundError(
            "no champion model: train one first "
            "(`cip train churn` / `cip train propensity` / `cip train clv`)"
        )
    return found


def score_frame(
    features: pd.DataFrame,
    champions: Mapping[str, tuple[str, Any]],
    as_of: Any,
    *,
    top: int = 3,
    reasons: str = "path",
    clv: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score a feature frame (one row per ``unified_id``) with the given models.

    Args:
        features: output of :func:`features.build_features` (any extra columns ignored).
        champions: ``{registry name: (version, model)}`` (see :func:`load_champions`).
        as_of: the snapshot date written to ``as_of``.
        top: reasons per model.
        reasons: contributions by ``path`` (fast decision-path attribution, the
            default for batch) or ``shap`` (exact TreeSHAP; minutes per million rows).
        clv: the CLV champion's outputs for these persons
            (:func:`cip.models.clv.predict_clv`, matched on ``unified_id``); None
            leaves the CLV columns null.

    Returns:
        DataFrame with :data:`SCORE_COLUMNS`; a model absent from ``champions``
        leaves its columns null.
    """
    n = len(features)
    out = pd.DataFrame({"unified_id": features["unified_id"].astype("string").to_numpy()})
    out["as_of"] = pd.Timestamp(as_of)
    names = [m for m in (*MODEL_NAMES, CLV_MODEL) if m in champions]
    if clv is None:
        names = [m for m in names if m != CLV_MODEL]
    out["model"] = "+".join(names)
    out["model_version"] = "+".join(champions[m][0] for m in names)
    texts: list[pd.Series] = []
    for name, col in MODEL_NAMES.items():
        if name not in champions:
            out[col] = np.nan
            continue
        model = champions[name][1]
        missing = [f for f in model.feature_names_ if f not in features.columns]
        if missing:
            raise DataError(
                f"{name} version {champions[name][0]} needs features the feature set lacks: "
                f"{missing[:10]} (retrain it on the current features)"
            )
        X = features[model.feature_names_].astype(np.float64)
        p, why = model.predict_explain(X, top=top, method=reasons)
        out[col] = p
        texts += [why[f"reason_{k}"] for k in range(1, top + 1) if f"reason_{k}" in why]
    out["reasons"] = pd.Series(join_reasons_json(texts, n), dtype="string")
    seg = features["rfm_segment"] if "rfm_segment" in features else pd.Series([None] * n)
    out["rfm_segment"] = seg.astype("string").to_numpy()
    _add_clv(out, clv)
    return out[list(SCORE_COLUMNS)]


def _add_clv(out: pd.DataFrame, clv: pd.DataFrame | None) -> None:
    """Fill :data:`CLV_COLUMNS` of ``out`` from a :func:`predict_clv` frame (null without one)."""
    if clv is None:
        for c in ("clv", "expected_orders", "p_alive"):
            out[c] = np.nan
        out["next_order_date"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[s]")
        out["clv_model_version"] = pd.Series(pd.NA, index=out.index, dtype="string")
        return
    by = clv.assign(unified_id=clv["unified_id"].astype(str)).set_index("unified_id")
    rows = by.reindex(out["unified_id"].astype(str).to_numpy())
    for c in ("clv", "expected_orders", "p_alive"):
        out[c] = rows[c].to_numpy(dtype=np.float64)
    out["next_order_date"] = (
        pd.to_datetime(rows["next_order_date"]).dt.floor("D").astype("datetime64[s]").to_numpy()
    )
    out["clv_model_version"] = rows["clv_model_version"].astype("string").to_numpy()


def write_scores(store: Any, scores: pd.DataFrame, as_of: Any) -> int:
    """Replace the ``as_of`` rows of the ``scores`` table with ``scores``, atomically."""
    ts = pd.Timestamp(as_of)
    tbl = pa.Table.from_pandas(scores[list(SCORE_COLUMNS)], preserve_index=False)
    tbl = tbl.cast(
        pa.schema(
            [
                ("unified_id", pa.string()),
                ("as_of", pa.timestamp("us")),
                ("model", pa.string()),
                ("model_version", pa.string()),
                ("churn_probability", pa.float64()),
                ("purchase_probability", pa.float64()),
                ("reasons", pa.string()),
                ("rfm_segment", pa.string()),
                ("clv", pa.float64()),
                ("expected_orders", pa.float64()),
                ("p_alive", pa.float64()),
                ("next_order_date", pa.date32()),
                ("clv_model_version", pa.string()),
            ]
        )
    )
    with store.transaction():
        ensure_tables(store, SCORES)
        store.execute(
            f"DELETE FROM {quote_ident(SCORES_TABLE)} WHERE as_of = ?", [ts.to_pydatetime()]
        )
        # a pandas frame over the Arrow buffers (Store.load_arrow's append reads .columns)
        store.load_arrow(SCORES_TABLE, tbl.to_pandas(types_mapper=pd.ArrowDtype), mode="append")
    return tbl.num_rows


def customer_ids(store: Any) -> pd.DataFrame | None:
    """``unified_id, customer_id`` pairs from ``record_map``; None when there is no map."""
    if not store.has_table("record_map"):
        return None
    parts = [
        f"SELECT m.unified_id, t.customer_id FROM record_map m JOIN {quote_ident(t)} t "
        f"ON t.record_id = m.record_id WHERE m.source_table = {quote_literal(t)} AND t.customer_id IS NOT NULL"
        for t in ("customers", "orders", "events")
        if store.has_table(t)
    ]
    if not parts:
        return None
    return store.sql(f"SELECT DISTINCT unified_id, customer_id FROM ({' UNION ALL '.join(parts)})")


def export_scores(scores: pd.DataFrame, ids: pd.DataFrame | None, path: str | Path) -> int:
    """Write scores plus ``customer_id`` (one row per customer id) to CSV or Parquet.

    A profile without any customer id keeps one row with an empty ``customer_id``.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".csv", ".parquet"):
        raise ConfigError(f"--out must end in .csv or .parquet, not {p.name!r}")
    if ids is None:
        df = scores.assign(customer_id=scores["unified_id"])
    else:
        ids = ids.astype({"unified_id": "string", "customer_id": "string"})
        df = scores.merge(ids, on="unified_id", how="left")
    df = df[["customer_id", *SCORE_COLUMNS]].sort_values(["unified_id", "customer_id"])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    if ext == ".csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(p)  # atomic: readers never see a half-written file
    return len(df)


def score(
    store: Any,
    as_of: Any,
    tracking_uri: str,
    *,
    out: str | Path | None = None,
    feature_params: Any = None,
    top: int = 3,
    reasons: str = "path",
    n_jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every consenting profile at ``as_of`` with the champions; write and export.

    Args:
        store: the profile store.
        as_of: snapshot date of the features.
        tracking_uri: the MLflow store holding the registry.
        out: optional export file (``.csv`` or ``.parquet``).
        feature_params: :class:`features.FeatureParams` (``None``: defaults).
        top: reasons per model.
        reasons: ``path`` or ``shap`` (see :func:`score_frame`).
        n_jobs: LightGBM threads for prediction (``None``: all cores).
        progress: ``progress(message)`` callback.
    """
    from cip.features import build_features, profiling_objections

    say = progress or (lambda msg: log.info(msg))
    t0 = time.perf_counter()
    champions = load_champions(tracking_uri)
    skipped = _skipped_outputs(champions)
    for column, why in skipped.items():
        say(f"{column} not scored (left null): {why}")
    for name, (_, model) in champions.items():
        if name in MODEL_NAMES and "n_jobs" in model.get_params():  # a baseline has no threads
            model.set_params(n_jobs=n_jobs or 0)
    say(f"building features as of {pd.Timestamp(as_of).date()}")
    feats = build_features(store, as_of, params=feature_params)
    t1 = time.perf_counter()
    denied = profiling_objections(store)
    excluded = 0
    if denied:
        keep = ~feats["unified_id"].astype(str).isin(denied)
        excluded = int((~keep).sum())
        feats = feats[keep.to_numpy()].reset_index(drop=True)
    say(f"scoring {len(feats):,} profiles")
    clv = None
    if CLV_MODEL in champions:
        from cip.models.clv import predict_clv
        from cip.models.clv.frames import with_btyd_summary

        version, model = champions[CLV_MODEL]
        say(f"predicting CLV ({model.horizon_days} days) for {len(feats):,} profiles")
        frame = with_btyd_summary(store, feats, as_of, model.horizon_days)
        clv = predict_clv(model, frame, as_of, version, n_jobs=n_jobs)
    scores = score_frame(feats, champions, as_of, top=top, reasons=reasons, clv=clv)
    t2 = time.perf_counter()
    write_scores(store, scores, as_of)
    t3 = time.perf_counter()
    out_rows = None
    if out is not None:
        out_rows = export_scores(scores, customer_ids(store), out)
    return ScoreResult(
        as_of=str(pd.Timestamp(as_of).date()),
        profiles_scored=len(scores),
        excluded_no_consent=excluded,
        models={name: v for name, (v, _) in champions.items()},
        seconds=round(time.perf_counter() - t0, 3),
        out=None if out is None else str(out),
        out_rows=out_rows,
        timings={
            "features": round(t1 - t0, 3),
            "predict": round(t2 - t1, 3),
            "write": round(t3 - t2, 3),
        },
        clv_horizon_days=None
        if CLV_MODEL not in champions
        else int(champions[CLV_MODEL][1].horizon_days),
        skipped=skipped,
    )


def _skipped_outputs(champions: Mapping[str, Any]) -> dict[str, str]:
    """Output column -> why it is not scored, for each model without a champion."""
    from cip.models.registry import no_champion_reason

    missing = {column: name for name, column in MODEL_NAMES.items() if name not in champions}
    if CLV_MODEL not in champions:
        missing["clv"] = CLV_MODEL
    return {column: no_champion_reason(name) for column, name in missing.items()}
