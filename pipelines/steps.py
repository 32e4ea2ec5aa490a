"""The steps of ``cip run`` and ``cip demo``, in order.

Each step is ``fn(workspace, as_of) -> summary`` and must be idempotent and
atomic on its own (see ``pipelines.run``).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import pandas as pd
from cip.pipelines.run import Step
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import RECOMMENDER_MODEL, REGISTERED_MODELS
from cip.profiles.errors import DataError, NotFoundError

__all__ = ["DEFAULT_STEPS", "resolve_as_of"]

log = logging.getLogger(__name__)


def resolve_as_of(ws: Workspace) -> date:
    """The day after the last order or event: the natural as_of for scoring today."""
    with ws.open_store() as store:
        row = store.sql(
            "SELECT greatest((SELECT max(ts) FROM orders), (SELECT max(ts) FROM events)) AS t"
        )
    t = row["t"].iloc[0]
    if t is None or pd.isna(t):
        raise DataError("the store holds no orders or events yet; run `cip ingest` first")
    return pd.Timestamp(t).date() + timedelta(days=1)


def _ingest(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_data import run_ingest

    reports = run_ingest(ws, show_progress=False)
    return {
        "sources": len(reports),
        "rows_loaded": sum(r.rows_loaded for r in reports),
        "rows_quarantined": sum(r.rows_quarantined for r in reports),
        "rows_suppressed": sum(r.rows_suppressed for r in reports),
    }


def _segments(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_segments import run_segments

    report = run_segments(ws, str(as_of))
    return {
        "segments": len(report.segments),
        "members": sum(s.members for s in report.segments),
        "skipped": len(report.skipped),
    }


def _retention(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_retention import run_retention, summary

    if not ws.config.retention:
        return {"policy": "none"}
    return summary(run_retention(ws))


def _exports(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    """Webhook deliveries (when ``segments.deliver_on_build``) and the files of ``segments.exports``."""
    from cip.activation import export_segment
    from cip.pipelines.cmd_segments import open_quiet, run_deliveries

    cfg = ws.config.segments
    out: dict[str, Any] = {}
    if cfg.webhooks and cfg.deliver_on_build:
        reports = run_deliveries(ws)  # this build and whatever an earlier run left pending
        out["webhook_batches"] = sum(r.delivered for r in reports)
        out["webhook_failed"] = sum(r.failed for r in reports)
    written, skipped = 0, []
    with open_quiet(ws) as store:
        for e in cfg.exports:
            path = ws.root / e.path
            try:
                rep = export_segment(store, e.segment, path, e.format, e.changes, e.purpose)
            except NotFoundError as exc:  # e.g. a predictive segment before any model scored
                log.warning("export of %s skipped: %s", e.segment, exc)
                skipped.append(e.segment)
                continue
            written += 1
            out[f"export:{e.segment}"] = rep.exported
    if cfg.exports:
        out["exports_written"] = written
        if skipped:
            out["exports_skipped"] = ",".join(skipped)
    return out or {"exports": "none configured (segments.exports, segments.webhooks)"}


def _unify(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_identity import unify_workspace

    summary = unify_workspace(ws, show_progress=False)
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}


def _features(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_features import run_features

    summary = run_features(ws, as_of)
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}


def _needs_training(ws: Workspace, name: str) -> bool:
    policy = ws.config.run.train
    if policy != "if_missing":
        return policy == "always"
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    try:
        return registry.champion_version(name) is None
    except Exception:  # no registered model of that name yet
        return True


def _train(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_models import run_train

    # labels must be fully observed: train as of the last day the data covers
    with ws.open_store() as store:
        from cip.features import data_end

        end = data_end(store).date()
    if as_of is not None:
        as_of = min(as_of, end)

    from cip.models.training import shared_training_sets

    out: dict[str, Any] = {}
    with shared_training_sets():  # churn and propensity: one training set, built once
        for kind in ("churn", "propensity"):
            if not _needs_training(ws, REGISTERED_MODELS[kind]):
                out[kind] = "champion kept"
                continue
            try:
                r = run_train(ws, kind, as_of, tune_trials=ws.config.run.tune_trials)
            except DataError as exc:  # the data cannot support a model yet (e.g. too short)
                log.warning("run: %s not trained: %s", kind, exc)
                out[kind] = f"not trained: {exc}"
                continue
            out[kind] = f"v{r.version} auc={r.metrics.get('roc_auc', float('nan')):.3f}" + (
                " (champion)" if r.promoted else " (not promoted)"
            )
    if ws.config.run.recommender:
        if _needs_training(ws, RECOMMENDER_MODEL):
            from cip.pipelines.cmd_recommender import run_train_recommender

            try:
                r = run_train_recommender(ws, as_of=str(as_of) if as_of else None)
            except DataError as exc:
                log.warning("run: recommender not trained: %s", exc)
                out["recommender"] = f"not trained: {exc}"
                return out
            out["recommender"] = f"v{r['version']} {r['algorithm']}" + (
                " (champion)" if r["promoted"] else " (not promoted)"
            )
        else:
            out["recommender"] = "champion kept"
    return out


def _score(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.pipelines.cmd_models import run_score

    assert as_of is not None
    try:
        r = run_score(ws, as_of)
    except NotFoundError as exc:  # no champion yet (the train step said why)
        log.warning("run: nothing scored: %s", exc)
        return {"scored": 0, "reason": "no champion model yet"}
    return {k: v for k, v in vars(r).items() if isinstance(v, int | float | str)}


DEFAULT_STEPS: list[Step] = [
    Step("ingest", _ingest, "ingest every source declared in cip.yaml"),
    Step("retention", _retention, "delete rows older than the retention policy allows"),
    Step("unify", _unify, "identity resolution -> profiles"),
    Step("features", _features, "point-in-time features as of the run date"),
    Step("train", _train, "train churn, propensity and recommender models (per run.train)"),
    Step("score", _score, "score every profile with the champion models"),
    Step("segments", _segments, "build segments and their transitions"),
    Step("exports", _exports, "deliver segment changes to webhooks, write segments.exports files"),
]
