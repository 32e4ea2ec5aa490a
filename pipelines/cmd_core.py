"""Core commands: ``cip init``, ``cip status``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace, workspace_path
from cip.pipelines.api import Workspace
from rich.table import Table


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Workspace folder (default: the --workspace folder).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Seed cip.yaml from this file.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing cip.yaml.")] = False,
) -> None:
    """Create a workspace: cip.yaml, the DuckDB store and the MLflow store."""
    ws = Workspace.init(directory or workspace_path(), config_file=config, force=force)
    out.print(
        f"Workspace ready at [bold]{ws.root}[/] (config {ws.config_path.name}, "
        f"store {'spark' if ws.config.engine == 'spark' else ws.config.store.backend}, "
        f"{len(ws.config.sources)} sources)"
    )


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the workspace: tables and row counts, quarantine, last runs."""
    ws = workspace()
    info = ws.status().as_dict()
    if as_json:
        emit_json(info)
        return
    out.print(
        f"Workspace [bold]{info['workspace']}[/] (store: {info['store']}, "
        f"{len(info['sources'])} sources)"
    )
    t = Table("table", "rows", title="Tables")
    for name, n in sorted(info["tables"].items()):
        if not name.startswith("_"):
            t.add_row(name, f"{n:,}")
    out.print(t)
    if info.get("identity"):
        i = info["identity"]
        out.print(
            f"Identity: [bold]{i['persons']:,}[/] persons, {i['records_mapped']:,} records linked, "
            f"{i['merges']:,} merges, {i['splits']:,} splits, "
            f"{i['blocked_identifiers']:,} blocked identifiers "
            f"(last unify {str(i['last_run'].get('finished_at'))[:19]})"
        )
    run = info.get("last_run")
    if run and run["unfinished_at"]:
        console.print(
            f"[yellow]Last run {run['run_id']} (as of {run['as_of']}) is unfinished[/]: "
            f"stopped at step {run['unfinished_at']} ({run['steps_done']}/{run['steps']} steps "
            "done); `cip run` finishes it"
        )
    elif run:
        out.print(
            f"Last run {run['run_id']} (as of {run['as_of']}): {run['steps_done']}/"
            f"{run['steps']} steps done, finished {run['finished_at']}"
        )
    if info["quarantine"]:
        q = Table("source", "reason", "rows", title="Quarantine")
        for r in info["quarantine"]:
            q.add_row(r["source"], r["reason"], f"{r['n']:,}")
        out.print(q)
    if info["last_ingests"]:
        r = Table(
            "source",
            "table",
            "finished",
            "read",
            "new",
            "already there",
            "quarantined",
            title="Last ingests",
        )
        for run in info["last_ingests"]:
            r.add_row(
                run["source"],
                run["target_table"],
                str(run["finished_at"])[:19],
                f"{run['rows_read']:,}",
                f"{run['rows_loaded']:,}",
                f"{run['rows_already_present']:,}",
                f"{run['rows_quarantined']:,}",
            )
        out.print(r)
