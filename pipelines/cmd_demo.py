"""``cip demo``: simulate a shop and run every pipeline step on it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, log_to_workspace, out, state
from cip.pipelines.api import Workspace
from cip.pipelines.cmd_run import print_run
from cip.pipelines.workflows.triggers import add_demo_triggers, demo_step
from cip.pipelines.workspace import resolve_workspace
from rich.table import Table


@app.command()
def demo(
    customers: Annotated[
        int, typer.Option("--customers", "-n", min=50, help="Simulated people.")
    ] = 3000,
    days: Annotated[int, typer.Option("--days", "-d", min=120, help="Days of history.")] = 540,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh/--reuse", help="Start from an empty workspace (default) or reuse it."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Simulate a shop, then run every pipeline step and one trigger pass (`cip triggers run
    --once`: today's price drops and restocks, yesterday's abandoned carts), and summarise
    what was built and where."""
    root = resolve_workspace(state.workspace)
    if fresh and (root / "cip.yaml").exists():
        shutil.rmtree(root)
    ws = Workspace.init(root)
    log_to_workspace(ws)
    if not ws.config.sources:
        # the history ends yesterday, so today's catalog changes and yesterday's
        # abandoned carts are recent enough for the triggers
        end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        with console.status(f"simulating {customers:,} customers over {days} days"):
            ws.simulate(customers=customers, days=days, seed=seed, end=end)
        ws.reload()
        add_demo_triggers(ws)
    with console.status("running the pipeline", spinner="dots") as status:
        run = ws.run(on_step=lambda name, what: status.update(f"{name}: {what}"))
    triggers = None
    if ws.config.triggers:
        with console.status("triggers: today's catalog changes, recent carts (run --once)"):
            triggers = demo_step(ws, seed)
    info = ws.status()
    if as_json:
        emit_json(
            {
                "workspace": str(ws.root),
                "run": run.steps,
                "as_of": run.as_of,
                "tables": info.tables,
                "triggers": triggers,
            }
        )
        return
    print_run(run)
    if triggers is not None:
        decided = ", ".join(f"{k} {v:,}" for k, v in triggers["decisions"].items()) or "none"
        out.print(
            f"Triggers: {triggers.get('price_drops', 0):,} price drops and "
            f"{triggers.get('restocks', 0):,} restocks today, {triggers['started']:,} journeys "
            f"started; decisions: {decided} (see [bold]cip triggers log[/])."
        )
    t = Table("table", "rows", title="What was built")
    for name, n in sorted(info.tables.items()):
        if not name.startswith("_"):
            t.add_row(name, f"{n:,}")
    out.print(t)
    _print_segments(ws)
    out.print(
        f"Workspace: [bold]{ws.root}[/] (store {_rel(ws.store_path)}, MLflow "
        f"{ws.mlflow_tracking_uri}, sources {_rel(ws.sources_dir)})."
    )
    out.print(
        f"Next: [bold]cip -w {_rel(ws.root)} status[/], "
        f"[bold]cip -w {_rel(ws.root)} segments list[/]; the demo shop page: "
        f"[bold]cip -w {_rel(ws.root)} serve --demo[/], then open "
        f"http://127.0.0.1:{ws.config.serving.port}/web/demo/"
    )


def _rel(p: Path) -> str:
    rel = os.path.relpath(p)
    return str(p) if rel.startswith("..") else rel


def _print_segments(ws: Workspace) -> None:
    built = [s for s in ws.segments.list().segments if s.as_of is not None]
    if not built:
        return
    t = Table(
        "segment",
        "kind",
        "members",
        "entered",
        "exited",
        title=f"Segments (as of {max(str(s.as_of) for s in built)[:10]})",
    )
    for s in built:
        t.add_row(s.segment, s.kind, f"{s.members:,}", f"{s.entered:,}", f"{s.exited:,}")
    out.print(t)
