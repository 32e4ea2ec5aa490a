"""The steps of ``cip run`` and ``cip demo``, in order.

Each step is ``fn(workspace, as_of) -> summary`` and must be idempotent and
atomic on its own (see ``pipelines.run``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from pipelines.run import Step
from pipelines.workspace import Workspace
from profiles.errors import DataError

__all__ = ["DEFAULT_STEPS", "resolve_as_of"]


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
    from pipelines.cmd_data import run_ingest

    reports = run_ingest(ws, show_progress=False)
    return {
        "sources": len(reports),
        "rows_loaded": sum(r.rows_loaded for r in reports),
        "rows_quarantined": sum(r.rows_quarantined for r in reports),
    }


def _segments(ws: Workspace, as_of: date | None) -> dict[str, Any]:
    from pipelines.cmd_segments import run_segments

    report = run_segments(ws, str(as_of))
    return {
        "segments": len(report.segments),
        "members": sum(s.members for s in report.segments),
        "skipped": len(report.skipped),
    }


DEFAULT_STEPS: list[Step] = [
    Step("ingest", _ingest, "ingest every source declared in cip.yaml"),
]
# appended as their layers land: unify, features, train, score, segments
