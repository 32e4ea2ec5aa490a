"""``cip simulate``: write a simulated shop's sources and register them in ``cip.yaml``."""

from __future__ import annotations

from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.workflows.setup import register_sources
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register_sources"]  # re-exported for callers of the former location


@app.command()
def simulate(
    customers: Annotated[
        int, typer.Option("--customers", "-n", min=1, help="Number of simulated people.")
    ] = 2000,
    days: Annotated[
        int, typer.Option("--days", "-d", min=7, max=3660, help="Length of the window in days.")
    ] = 365,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (same seed, same files).")
    ] = 0,  # fmt: skip
    end: Annotated[
        str, typer.Option("--end", help="Last day of the simulated window (YYYY-MM-DD).")
    ] = "2025-12-31",
    campaigns: Annotated[
        int,
        typer.Option(
            "--campaigns",
            min=0,
            help="Also write this many weekly randomised e-mail campaigns with a 30 % control "
            "group (an e-mail provider's export and the campaign window's orders; true effects "
            "in sources/_truth/campaign_truth.parquet).",
        ),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write a simulated shop's data into <workspace>/sources and register it in cip.yaml.

    Eight sources with their own column names and formats (CRM export, web and
    app click-streams, e-mail log, online order lines, till receipts, reviews,
    product catalog), with realistic mess (duplicate people, e-mail and phone
    spellings, guest checkouts, ~0.1% broken rows) and planted signal (taste-driven
    purchases, a churn hazard driven by bad experiences and engagement). The
    ground truth goes to sources/_truth/ (never read by the pipeline).
    Existing sources of the same names are replaced; others are kept.
    """
    ws = workspace()
    with Progress(
        TextColumn("simulating people"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=customers)
        result = ws.simulate(
            customers=customers,
            days=days,
            seed=seed,
            end=end,
            progress=lambda done, total: progress.update(task, completed=done),
            campaigns=campaigns,
        )
    if as_json:
        emit_json(result.as_dict())
        return
    t = Table("source", "table", "file", "rows", title=f"Simulated {customers:,} people")
    for decl in result.declarations:
        t.add_row(decl["name"], decl["table"], decl["path"], f"{result.counts[decl['name']]:,}")
    out.print(t)
    added = len(result.sources) - len(result.replaced)
    prefix = ws.sources_dir.relative_to(ws.root)
    out.print(
        f"{added} sources added and {len(result.replaced)} replaced in {ws.config_path.name}; "
        f"truth in {prefix}/_truth/ ({result.truth_rows:,} record links); "
        f"{result.seconds:.1f} s. Next: cip ingest"
    )
