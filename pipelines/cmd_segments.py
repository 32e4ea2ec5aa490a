"""Segment commands: ``cip segments build | list | export | deliver | webhook-secret``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import typer
from cip.activation import EXPORT_SCORE_COLUMNS, DeliveryReport, ExportFormat
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from rich.table import Table

__all__ = ["segments_app"]


#: the score columns an export may add (``--column``)
ScoreColumn = Enum("ScoreColumn", {c: c for c in EXPORT_SCORE_COLUMNS}, type=str)  # type: ignore[misc]

segments_app = typer.Typer(
    help="Segments: build them for a snapshot, list them, export members, deliver webhooks.",
    no_args_is_help=True,
)
app.add_typer(segments_app, name="segments")


def _deliveries_table(reports: list[DeliveryReport]) -> Table:
    t = Table(
        "destination",
        "segment",
        "as_of",
        "batches",
        "delivered",
        "already",
        "failed",
        title="Webhooks",
    )
    for r in reports:
        t.add_row(
            r.destination,
            r.segment,
            str(r.as_of)[:19],
            str(r.batches),
            str(r.delivered),
            str(r.already_delivered),
            str(r.failed),
        )
    return t


@segments_app.command("build")
def build(
    as_of: Annotated[
        str,
        typer.Option("--as-of", callback=check_as_of, help="Snapshot date (features must exist)."),
    ],
    segment: Annotated[
        list[str] | None, typer.Option("--segment", "-s", help="Only these segments.")
    ] = None,
    deliver: Annotated[
        bool | None,
        typer.Option("--deliver/--no-deliver", help="Send changes to webhooks (default: config)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build segments for a snapshot: members and entries/exits since the previous build.

    Atomic and idempotent: re-running an as_of replaces its rows. Segments whose
    inputs are missing (e.g. predictive segments before `cip score`) are skipped
    and reported.
    """
    ws = workspace()
    with console.status(f"building segments as of {as_of}", spinner="dots"):
        rep = ws.segments.build(as_of, segment)
    cfg = ws.config.segments
    send = cfg.deliver_on_build if deliver is None else deliver
    deliveries = ws.segments.deliver(as_of).reports if send and cfg.webhooks else []
    if as_json:
        emit_json({**rep.as_dict(), "deliveries": [d.as_dict() for d in deliveries]})
        return
    t = Table(
        "segment",
        "kind",
        "members",
        "entered",
        "exited",
        "previous build",
        title=f"Segments as of {rep.as_of:%Y-%m-%d %H:%M}",
    )
    for s in rep.segments:
        prev = f"{s.previous_as_of:%Y-%m-%d}" if s.previous_as_of else "-"
        t.add_row(s.segment, s.kind, f"{s.members:,}", f"{s.entered:,}", f"{s.exited:,}", prev)
    out.print(t)
    for name, why in rep.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}")
    for note in rep.notes:
        console.print(f"note: {note}")
    if deliveries:
        out.print(_deliveries_table(deliveries))
    out.print(f"{len(rep.segments)} segments built in {rep.seconds:.1f}s")


@segments_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the configured segments with their size at their latest build."""
    rows = [s.as_dict() for s in workspace().segments.list().segments]
    if as_json:
        emit_json(rows)
        return
    t = Table(
        "segment",
        "kind",
        "purpose",
        "members",
        "entered",
        "exited",
        "as_of",
        "definition",
        title="Segments",
    )
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
        t.add_row(
            r["segment"],
            r["kind"],
            r["purpose"] or "-",
            fmt(r["members"]),
            fmt(r["entered"]),
            fmt(r["exited"]),
            (r["as_of"] or "never built")[:10],
            r["description"],
        )
    out.print(t)


@segments_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Segment name (see `cip segments list`).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="File to write (atomically).")],
    changes: Annotated[
        Literal["entered", "exited", "all"] | None,
        typer.Option("--changes", help="Only entries, exits or both (default: the members)."),
    ] = None,
    purpose: Annotated[
        Literal["email", "sms", "push"] | None,
        typer.Option("--purpose", help="Consent purpose and contact (default: the segment's)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", callback=check_as_of, help="Build (default: latest).")
    ] = None,
    column: Annotated[
        list[ScoreColumn] | None,
        typer.Option(
            "--column",
            "-c",
            help="Add this score column of each member (repeat for several), e.g. "
            "-c clv -c p_alive -c next_order_date.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Export a segment's members (or entries/exits) with contact identifiers, score, reasons.

    Only profiles that consented to the purpose (and have its contact
    identifier) are written; erased profiles never are.
    """
    rep = workspace().segments.export(
        name,
        out_path,
        fmt,
        changes=changes,
        purpose=purpose,
        as_of=as_of,
        columns=[c.value for c in column or []],
    )
    if as_json:
        emit_json(rep.as_dict())
        return
    what = f"{changes} changes" if changes else "members"
    out.print(
        f"Exported {rep.exported:,} {what} of [bold]{name}[/] (as of {rep.as_of:%Y-%m-%d}, "
        f"purpose {rep.purpose}) to {rep.path}"
    )
    left = [
        (rep.no_consent, f"without {rep.purpose} consent"),
        (rep.no_contact, "without a contact identifier"),
        (rep.erased, "erased"),
    ]
    left_out = ", ".join(f"{n:,} {why}" for n, why in left if n)
    if left_out:
        out.print(f"Left out: {left_out}")
    for note in rep.notes:
        console.print(f"[yellow]note[/]: {note}")


@segments_app.command("deliver")
def deliver(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", callback=check_as_of, help="Build (default: latest plus pending)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Send segment changes to the configured webhooks (only batches not yet delivered)."""
    ws = workspace()
    if not ws.config.segments.webhooks:
        console.print("no webhooks configured (segments.webhooks in cip.yaml)")
    reports = ws.segments.deliver(as_of).reports
    if as_json:
        emit_json([r.as_dict() for r in reports])
        return
    out.print(_deliveries_table(reports))
    failed = sum(r.failed for r in reports)
    if failed:
        console.print(f"[red]{failed} batches not delivered[/]; run `cip segments deliver` again")
        raise typer.Exit(1)


@segments_app.command("webhook-secret")
def show_webhook_secret(
    name: Annotated[str, typer.Argument(help="A destination of segments.webhooks in cip.yaml.")],
) -> None:
    """Print a webhook destination's signing secret (whsec_...) for its receiver.

    Made on first use in secrets/webhooks/NAME.key (owner-only), unless cip.yaml
    gives the destination a secret. Receivers verify the Standard Webhooks headers
    with it (see the README, Webhooks).
    """
    secret = workspace().segments.webhook_secret(name)
    typer.echo(secret)
