"""Data commands: ``cip ingest``."""

from __future__ import annotations

from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@app.command()
def ingest(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Read incremental database sources whole again (and reset their watermark).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Ingest all (or one) sources declared in cip.yaml into the store.

    Bad rows go to the quarantine table with the reason; rows loaded before are
    skipped (re-running is idempotent); rows of erased persons are suppressed
    (not loaded again); rows older than the `retention:` policy allows are
    counted as expired and not loaded; each source loads atomically.
    Incremental database sources (`incremental: {column: ...}`) read only the rows
    at or past their stored watermark; `--full` reads them whole again.
    """
    ws = workspace()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
        transient=True,
    ) as progress:
        task = progress.add_task("ingesting", total=None)
        result = ws.ingest(
            source,
            full=full,
            progress=lambda done, total, what: progress.update(
                task, completed=done, total=total, description=what
            ),
        )
    reports = result.reports
    if as_json:
        emit_json([r.as_dict() for r in reports])
        return
    t = Table(
        "source",
        "table",
        "read",
        "new",
        "already there",
        "quarantined",
        "filtered",
        "suppressed",
        "expired",
        "read as",
        title="Ingest",
    )
    for r in reports:
        t.add_row(
            r.source,
            r.target_table,
            f"{r.rows_read:,}",
            f"{r.rows_loaded:,}",
            f"{r.rows_already_present:,}",
            f"{r.rows_quarantined:,}",
            f"{r.rows_filtered:,}",
            f"{r.rows_suppressed:,}",
            f"{r.rows_expired:,}",
            r.read_mode,
        )
    out.print(t)
    for r in reports:
        if r.watermark is not None:
            since = f"from {r.watermark_from} " if r.watermark_from else "all rows "
            out.print(f"{r.source}: read {since}up to the watermark {r.watermark}")
    reasons = [(r.source, k, v) for r in reports for k, v in r.quarantine_reasons.items()]
    if reasons:
        q = Table(
            "source", "quarantine reason", "rows", title="Quarantined rows (see table quarantine)"
        )
        for s, k, v in sorted(reasons, key=lambda x: -x[2]):
            q.add_row(s, k, f"{v:,}")
        out.print(q)
    with ws.open_store(read_only=False) as store:
        counts = store.sql(
            "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM order_lines) AS lines, "
            "(SELECT count(*) FROM orders WHERE status <> 'completed') AS not_completed"
        ).iloc[0]
    out.print(
        f"Store now holds {int(counts['orders']):,} orders ({int(counts['not_completed']):,} "
        f"returned or cancelled) and {int(counts['lines']):,} order lines."
    )
