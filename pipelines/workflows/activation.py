"""Activation workflows: build, list and export segments, deliver webhooks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cip.pipelines.workflows.results import (
    AsOf,
    DeliveryResult,
    SegmentInfo,
    SegmentList,
    to_date,
)
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import NotFoundError

if TYPE_CHECKING:
    from cip.activation import BuildReport, ExportReport
    from cip.profiles.store import Store

__all__ = [
    "open_quiet",
    "build_segments",
    "deliver",
    "list_segments",
    "export_segment",
    "configured_exports",
]

log = logging.getLogger(__name__)


@contextmanager
def open_quiet(ws: Workspace) -> Iterator[Store]:
    """The workspace store, without DuckDB's progress bar (it writes to stdout, breaking --json)."""
    import duckdb

    with ws.open_store() as store:
        if store.backend == "duckdb":
            # in Jupyter without ipywidgets DuckDB refuses the setting (and draws no bar)
            with suppress(duckdb.InvalidInputException):
                store.execute("SET enable_progress_bar = false")
        yield store


def build_segments(ws: Workspace, as_of: AsOf, names: list[str] | None = None) -> BuildReport:
    """Build the workspace's segments (all, or ``names``) for ``as_of``.

    Atomic and idempotent per as_of; segments whose inputs are missing (e.g.
    predictive segments before scoring) are skipped and listed in the report.
    """
    from cip.activation import build_segments as build
    from cip.activation import select_definitions

    day = str(to_date(as_of))
    cfg = ws.config.segments
    defs = select_definitions(cfg.effective(), names)
    with open_quiet(ws) as store:
        return build(store, defs, day, features_table=cfg.features_table)


def deliver(ws: Workspace, as_of: AsOf | None = None) -> DeliveryResult:
    """Send pending segment changes (of ``as_of``, else the latest build) to the webhooks."""
    from cip.activation import deliver_webhooks

    day = None if as_of is None else str(to_date(as_of))
    cfg = ws.config.segments
    with open_quiet(ws) as store:
        return DeliveryResult(
            deliver_webhooks(
                store,
                cfg.effective(),
                cfg.webhooks,
                day,
                secrets_dir=webhook_secrets_dir(ws),
                recommend=_webhook_recommenders(ws, store),
            )
        )


def _webhook_recommenders(ws: Workspace, store: Store) -> dict[str, Any]:
    """Destination -> its ``recommend: {block, n}`` item function (None: no fitted blocks)."""
    from cip.pipelines.workflows.blocks import recommender_for

    out: dict[str, Any] = {}
    for name, dest in ws.config.segments.webhooks.items():
        if dest.recommend is None:
            continue
        try:
            out[name] = recommender_for(ws, store, dest.recommend.block, dest.recommend.n)
        except NotFoundError as exc:  # blocks not fitted yet: the changes go without items
            log.warning("webhook %s: %s", name, exc)
            out[name] = None
    return out


def webhook_secrets_dir(ws: Workspace) -> Path:
    """Where the workspace keeps the webhook signing secrets (``<destination>.key``)."""
    return ws.root / "secrets" / "webhooks"


def webhook_secret(ws: Workspace, name: str) -> str:
    """The signing secret (``whsec_...``) of webhook destination ``name``, made on first use."""
    from cip.activation import webhook_secret as secret_of

    return secret_of(webhook_secrets_dir(ws), name)


def list_segments(ws: Workspace) -> SegmentList:
    """The configured segments with their size at their latest build."""
    from cip.activation import segment_sizes

    with open_quiet(ws) as store:
        sizes = segment_sizes(store)
    by = {r["segment"]: r for r in sizes.to_dict("records")}
    out = []
    for d in ws.config.segments.effective():
        b = by.get(d.name, {})
        out.append(
            SegmentInfo(
                segment=d.name,
                kind=d.kind,
                purpose=d.purpose,
                webhook=d.webhook,
                description=d.describe(),
                as_of=str(b["as_of"]) if b else None,
                members=int(b["members"]) if b else None,
                entered=int(b["entered"]) if b else None,
                exited=int(b["exited"]) if b else None,
            )
        )
    return SegmentList(out)


def export_segment(
    ws: Workspace,
    name: str,
    out: str | Path,
    fmt: str = "csv",
    *,
    changes: str | None = None,
    purpose: str | None = None,
    as_of: AsOf | None = None,
    columns: list[str] | None = None,
) -> ExportReport:
    """Write a segment's releasable members (or ``changes``: entered | exited) to ``out``.

    Only profiles that consented to the purpose (and have its contact
    identifier) are written; erased profiles never are. ``columns`` adds score
    columns (e.g. ``clv``, ``p_alive``, ``next_order_date``) of the members.
    """
    from cip.activation import export_segment as export

    day = None if as_of is None else str(to_date(as_of))
    with open_quiet(ws) as store:
        return export(store, name, out, fmt, changes, purpose, day, columns)  # type: ignore[arg-type]


def configured_exports(ws: Workspace) -> dict[str, Any]:
    """Webhook deliveries (when ``segments.deliver_on_build``) and the ``segments.exports`` files.

    The summary ``cip run`` records for its ``exports`` step.
    """
    from cip.activation import export_segment as export

    cfg = ws.config.segments
    out: dict[str, Any] = {}
    if cfg.webhooks and cfg.deliver_on_build:
        sent = deliver(ws)  # this build and whatever an earlier run left pending
        out["webhook_batches"] = sent.delivered
        out["webhook_failed"] = sent.failed
    written, skipped = 0, []
    with open_quiet(ws) as store:
        for e in cfg.exports:
            path = ws.root / e.path
            try:
                rec = None
                if e.recommend is not None:
                    from cip.pipelines.workflows.blocks import recommender_for

                    rec = recommender_for(ws, store, e.recommend.block, e.recommend.n)
                rep = export(
                    store,
                    e.segment,
                    path,
                    e.format,
                    e.changes,
                    e.purpose,
                    columns=e.columns,
                    recommend=rec,
                )
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
