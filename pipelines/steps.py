"""The steps of ``cip run`` and ``cip demo``, in order.

Each step is ``fn(workspace, as_of) -> summary`` and must be idempotent and
atomic on its own (see ``pipelines.run``). Steps call the workflows of
:mod:`cip.pipelines.workflows`, never the CLI modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from cip.pipelines.workflows import activation, blocks, data, modeling
from cip.pipelines.workflows.setup import resolve_as_of
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import CLV_MODEL, RECOMMENDER_MODEL, REGISTERED_MODELS
from cip.profiles.errors import DataError, NotFoundError

__all__ = ["DEFAULT_STEPS", "Step", "resolve_as_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One pipeline step: ``fn(ws, as_of) -> summary dict``."""

    name: str
    fn: Callable[[Workspace, date | None], dict[str, Any]]
    description: str


def _ingest(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    result = data.ingest(ws)
    return {
        "sources": len(result.reports),
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "rows_suppressed": result.rows_suppressed,
    }


def _segments(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    assert as_of is not None
    report = activation.build_segments(ws, as_of)
    return {
        "segments": len(report.segments),
        "members": sum(s.members for s in report.segments),
        "skipped": len(report.skipped),
    }


def _retention(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    if not ws.config.retention:
        return {"policy": "none"}
    return data.retention_summary(data.apply_retention(ws))


def _exports(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    """Webhook deliveries (when ``segments.deliver_on_build``) and the files of ``segments.exports``."""
    return activation.configured_exports(ws)


def _unify(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    summary = data.unify(ws).as_dict()
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}


def _features(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    assert as_of is not None
    summary = data.build_feature_snapshot(ws, as_of).as_dict()
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str)}


def _needs_training(ws: Workspace, name: str) -> bool:
    policy = ws.config.run.train
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    # a run killed between registering and promoting left its model behind: promote it now
    # rather than train and register the same model a second time
    registry.finish_pending_promotion(name)
    if policy != "if_missing":
        return policy == "always"
    try:
        return registry.champion_version(name) is None
    except Exception:  # no registered model of that name yet
        return True


def _train(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from cip.features import data_end
    from cip.models.training import shared_training_sets

    # labels must be fully observed: train as of the last day the data covers
    with ws.open_store() as store:
        end = data_end(store).date()
    if as_of is not None:
        as_of = min(as_of, end)

    out: dict[str, Any] = {}
    with shared_training_sets():  # churn and propensity: one training set, built once
        for kind in ("churn", "propensity"):
            if not _needs_training(ws, REGISTERED_MODELS[kind]):
                out[kind] = "champion kept"
                continue
            try:
                r = modeling.train(ws, kind, as_of, tune_trials=ws.config.run.tune_trials)
            except DataError as exc:  # the data cannot support a model yet (e.g. too short)
                log.warning("run: %s not trained: %s", kind, exc)
                out[kind] = f"not trained: {exc}"
                continue
            auc = f"v{r.version} auc={r.metrics.get('roc_auc', float('nan')):.3f}"
            if r.no_skill:  # says plainly why a shop has no model of this kind
                log.warning("run: %s %s", kind, r.no_skill)
                out[kind] = f"{auc}; {r.no_skill}"
            else:
                out[kind] = auc + (" (champion)" if r.promoted else " (not promoted)")
    if ws.config.models.clv.train:
        out["clv"] = _train_clv(ws, as_of)
    if ws.config.run.recommender:
        if _needs_training(ws, RECOMMENDER_MODEL):
            try:
                rec = modeling.train_recommender(ws, as_of=as_of)
            except DataError as exc:
                log.warning("run: recommender not trained: %s", exc)
                out["recommender"] = f"not trained: {exc}"
                return out
            out["recommender"] = f"v{rec.version} {rec.algorithm}" + (
                " (champion)" if rec.promoted else " (not promoted)"
            )
        else:
            out["recommender"] = "champion kept"
    return out


def _train_clv(ws: Workspace, as_of: date | None) -> str:
    """The CLV model, per ``run.train`` (``models.clv.train: false`` skips it)."""
    if not _needs_training(ws, CLV_MODEL):
        return "champion kept"
    try:
        r = modeling.train_clv(ws, as_of, tune_trials=ws.config.run.tune_trials)
    except DataError as exc:  # e.g. too little history for a labelled snapshot
        log.warning("run: clv not trained: %s", exc)
        return f"not trained: {exc}"
    gini = r.metrics.get("normalized_gini", float("nan"))
    return f"v{r.version} {r.winner} gini={gini:.3f}" + (
        " (champion)" if r.promoted else " (not promoted)"
    )


def _blocks(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    """Fit the ``blocks:`` of cip.yaml on the order lines before ``as_of`` (``run.blocks``)."""
    if not ws.config.run.blocks:
        return {"fitted": 0, "reason": "run.blocks is false in cip.yaml"}
    try:
        r = blocks.fit_blocks(ws, as_of)
    except DataError as exc:  # no order history yet: nothing to recommend from
        log.warning("run: blocks not fitted: %s", exc)
        return {"fitted": 0, "reason": str(exc)}
    return {
        "fitted": len(r.blocks),
        "version": r.version,
        "people": r.people,
        "items": r.items,
        "order_lines": r.order_lines,
        "personal_model_version": r.personal_model_version or "",
    }


def _score(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    assert as_of is not None
    try:
        r = modeling.score(ws, as_of)
    except NotFoundError as exc:  # no champion yet (the train step said why)
        log.warning("run: nothing scored: %s", exc)
        return {"scored": 0, "reason": "no champion model yet"}
    summary = {k: v for k, v in vars(r).items() if isinstance(v, int | float | str)}
    if r.skipped:  # e.g. churn_probability: no champion (no skill, see the train step)
        summary["skipped"] = "; ".join(f"{c}: {why}" for c, why in r.skipped.items())
    return summary


DEFAULT_STEPS: list[Step] = [
    Step("ingest", _ingest, "ingest every source declared in cip.yaml"),
    Step("retention", _retention, "delete rows older than the retention policy allows"),
    Step("unify", _unify, "identity resolution -> profiles"),
    Step("features", _features, "point-in-time features as of the run date"),
    Step("train", _train, "train churn, propensity, CLV and recommender models (per run.train)"),
    Step("blocks", _blocks, "fit the recommendation blocks of cip.yaml (per run.blocks)"),
    Step("score", _score, "score every profile with the champion models"),
    Step("segments", _segments, "build segments and their transitions"),
    Step("exports", _exports, "deliver segment changes to webhooks, write segments.exports files"),
]
