"""``cip retention show|apply``: the maximum age of each table's rows (``retention:`` in cip.yaml)."""

from __future__ import annotations

from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.profiles.retention import RETENTION_TABLES, cutoffs
from rich.table import Table

__all__ = ["retention_app"]

retention_app = typer.Typer(
    help="Retention: delete rows older than the maximum age set per table in cip.yaml.",
    no_args_is_help=True,
)
app.add_typer(retention_app, name="retention")


@retention_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the policy: each table's maximum age and the oldest date it keeps today."""
    ws = workspace()
    policy = ws.config.retention
    limits = cutoffs(policy)
    if as_json:
        emit_json({k: {"days": policy[k], "keeps_from": limits[k]} for k in policy})
        return
    if not policy:
        console.print("no retention policy: every table is kept (set `retention:` in cip.yaml)")
        return
    t = Table("key", "max age (days)", "keeps rows from", "tables", title="Retention")
    for key, days in policy.items():
        tables = ", ".join(name for name, _ in RETENTION_TABLES[key]) or "features_*"
        t.add_row(key, str(days), f"{limits[key]:%Y-%m-%d %H:%M}", tables)
    out.print(t)


@retention_app.command("apply")
def apply(
    now: Annotated[
        str | None,
        typer.Option("--now", help="Reference time, ISO 8601 (default: the current UTC time)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Delete every row older than its table's maximum age, in one transaction.

    Also run by `cip run` right after ingest. Ingest itself never loads rows
    that are already too old.
    """
    ws = workspace()
    if not ws.config.retention and not as_json:
        console.print("no retention policy: nothing to delete (set `retention:` in cip.yaml)")
        return
    report = ws.retention(now)
    if as_json:
        emit_json(report.as_dict())
        return
    t = Table("table", "rows deleted", title=f"Retention applied (now {report.now:%Y-%m-%d %H:%M})")
    for table, n in report.deleted.items():
        t.add_row(table, f"{n:,}")
    out.print(t)
    out.print(f"{report.total:,} rows deleted")
