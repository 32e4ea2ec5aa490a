"""``cip run``: the whole pipeline as one crash-safe command.

Each step is idempotent and atomic on its own (ingest skips what it loaded,
unify/features/scores/segments replace their snapshot in one transaction), so a
run killed at any point is completed by running again: the new invocation finds
the unfinished run in ``_pipeline_steps`` and resumes it with the same
``as_of``, re-running the step that was interrupted and the ones after it.

A workspace lock (``fcntl.flock`` on ``<workspace>/.cip.lock``, released by the
kernel even on ``kill -9``) refuses a second concurrent run with a clear message.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from cip.pipelines.steps import DEFAULT_STEPS, Step, resolve_as_of
from cip.pipelines.workflows.setup import workspace_lock
from cip.pipelines.workspace import Workspace
from cip.profiles.tables import PIPELINE_STEPS, ensure_tables

__all__ = ["Step", "run_pipeline", "workspace_lock", "RunResult", "pipeline_state", "last_run"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What one ``cip run`` did: its id, as_of, whether it resumed, each step's summary."""

    run_id: str
    as_of: date | None
    resumed: bool
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` output of ``cip run``."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "resumed": self.resumed,
            "seconds": self.seconds,
            "steps": self.steps,
        }


def _ensure_state(ws: Workspace) -> None:
    with ws.open_store() as store:
        ensure_tables(store, PIPELINE_STEPS)


def pipeline_state(ws: Workspace) -> pd.DataFrame:
    """Every recorded step of every run, newest first."""
    _ensure_state(ws)
    with ws.open_store() as store:
        return store.sql("SELECT * FROM _pipeline_steps ORDER BY started_at DESC")


def _stopped_at(steps: list[Step], done: set[str]) -> str | None:
    """The step an interrupted run stopped at, or None when the run finished.

    Steps run in order, so an interrupted run has done a prefix of them. A run whose
    done steps are not a prefix was recorded with another step list (an older
    version of CIP): it finished, and the next run starts afresh.
    """
    flags = [s.name in done for s in steps]
    if all(flags) or any(flags[flags.index(False) :]):
        return None
    return steps[flags.index(False)].name


def _unfinished_run(ws: Workspace, steps: list[Step]) -> tuple[str, date | None, set[str]] | None:
    """The latest run if some of its steps are not done: (run_id, as_of, done steps)."""
    with ws.open_store() as store:
        last = store.sql(
            "SELECT run_id, max(as_of) AS as_of, max(started_at) AS t FROM _pipeline_steps "
            "GROUP BY run_id ORDER BY t DESC LIMIT 1"
        )
        if last.empty:
            return None
        run_id = str(last["run_id"].iloc[0])
        done = set(
            store.sql(
                "SELECT step FROM _pipeline_steps WHERE run_id = ? AND status = 'done'", [run_id]
            )["step"]
        )
    if _stopped_at(steps, done) is None:
        return None
    as_of = last["as_of"].iloc[0]
    return run_id, (pd.Timestamp(as_of).date() if pd.notna(as_of) else None), done


def last_run(ws: Workspace, steps: list[Step] | None = None) -> dict[str, Any] | None:
    """The latest ``cip run``: id, as_of, steps done, and where it stopped if unfinished."""
    steps = steps or DEFAULT_STEPS
    with ws.open_store() as store:
        if not store.has_table("_pipeline_steps"):
            return None
        rows = store.sql(
            "SELECT * FROM _pipeline_steps WHERE run_id = (SELECT run_id FROM _pipeline_steps "
            "ORDER BY started_at DESC LIMIT 1)"
        )
    if rows.empty:
        return None
    done = rows[rows["status"] == "done"]
    stopped_at = _stopped_at(steps, set(done["step"]))
    as_of = rows["as_of"].dropna()
    return {
        "run_id": str(rows["run_id"].iloc[0]),
        "as_of": str(pd.Timestamp(as_of.iloc[0]).date()) if len(as_of) else None,
        "started_at": str(rows["started_at"].min())[:19],
        "finished_at": None if stopped_at else str(done["finished_at"].max())[:19],
        "steps_done": len(done),
        "steps": len(steps),
        "unfinished_at": stopped_at,
    }


def _record(
    ws: Workspace,
    run_id: str,
    step: str,
    as_of: date | None,
    status: str,
    started: datetime,
    summary: dict[str, Any] | None = None,
) -> None:
    with ws.open_store() as store, store.transaction():
        store.execute("DELETE FROM _pipeline_steps WHERE run_id = ? AND step = ?", [run_id, step])
        store.execute(
            "INSERT INTO _pipeline_steps VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                step,
                as_of,
                status,
                started,
                datetime.now(UTC).replace(tzinfo=None) if status != "running" else None,
                json.dumps(summary or {}, default=str),
            ],
        )


def run_pipeline(
    ws: Workspace,
    *,
    steps: list[Step] | None = None,
    as_of: date | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Run (or resume) the pipeline under the workspace lock.

    ``as_of`` is resolved by the first step that needs it when not given; a
    resumed run keeps the as_of it started with.
    """
    steps = steps or DEFAULT_STEPS
    t0 = time.perf_counter()
    with workspace_lock(ws):
        _ensure_state(ws)
        unfinished = _unfinished_run(ws, steps)
        if unfinished is not None:
            run_id, as_of_prev, done = unfinished
            as_of = as_of_prev or as_of
            resumed = True
            log.info("resuming run %s (done: %s)", run_id, sorted(done))
        else:
            run_id, done, resumed = uuid.uuid4().hex[:12], set(), False
        result = RunResult(run_id, as_of, resumed)
        for step in steps:
            if step.name in done:
                result.steps[step.name] = {"status": "done earlier"}
                continue
            if result.as_of is None and step.name != "ingest":
                result.as_of = resolve_as_of(ws)
            started = datetime.now(UTC).replace(tzinfo=None)
            _record(ws, run_id, step.name, result.as_of, "running", started)
            log.info("run %s: step %s started (as of %s)", run_id, step.name, result.as_of)
            if on_step:
                on_step(step.name, "start")
            t_step = time.perf_counter()
            summary = step.fn(ws, result.as_of)
            _record(ws, run_id, step.name, result.as_of, "done", started, summary)
            log.info(
                "run %s: step %s done in %.1f s: %s",
                run_id,
                step.name,
                time.perf_counter() - t_step,
                json.dumps(summary, default=str),
            )
            result.steps[step.name] = summary
            if on_step:
                on_step(step.name, "done")
        result.seconds = round(time.perf_counter() - t0, 1)
        return result
