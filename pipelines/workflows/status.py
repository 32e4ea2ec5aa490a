"""``status``: what a workspace holds, and its last pipeline run."""

from __future__ import annotations

from cip.pipelines.run import last_run
from cip.pipelines.workflows.results import WorkspaceStatus
from cip.pipelines.workspace import Workspace

__all__ = ["collect_status"]


def collect_status(ws: Workspace) -> WorkspaceStatus:
    """Tables, row counts, quarantine counts per reason, the last ingests and the last run."""
    from cip.profiles.identity import identity_status

    with ws.open_store() as store:
        tables = {t: store.count(t) for t in store.table_names() if not t.startswith("_stage")}
        quarantine = (
            store.sql(
                "SELECT source, reason, count(*) AS n FROM quarantine GROUP BY ALL ORDER BY n DESC"
            ).to_dict("records")
            if "quarantine" in tables
            else []
        )
        runs = store.sql("SELECT * FROM _ingest_runs ORDER BY finished_at DESC LIMIT 10").to_dict(
            "records"
        )
        identity = identity_status(store)
    return WorkspaceStatus(
        workspace=str(ws.root),
        store="spark" if ws.config.engine == "spark" else ws.config.store.backend,
        sources=[s.name for s in ws.config.sources],
        tables=tables,
        quarantine=quarantine,
        last_ingests=runs,
        identity=identity,
        last_run=last_run(ws),
    )
