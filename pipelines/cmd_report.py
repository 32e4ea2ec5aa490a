"""``cip report``: one self-contained HTML page of the workspace (models, segments, messages,
attribution, lift, uplift, best channel and hour)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace

__all__ = ["report"]


@app.command("report")
def report(
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="HTML file to write (default: reports/report.html in the workspace).",
            dir_okay=False,
        ),
    ] = None,
    window: Annotated[
        float,
        typer.Option(
            "--window",
            help="Days after a message in which an order counts (default 7).",
            min=0.001,
        ),
    ] = 7.0,
    effect: Annotated[
        float,
        typer.Option(
            "--effect",
            help="Relative conversion lift the minimum-detectable-effect warnings are about "
            "(0.1 = 10 %).",
            min=0.0001,
        ),
    ] = 0.10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write one self-contained HTML report (no internet needed to open it).

    Sections: workspace summary, champion models (CLV deciles), segment sizes and RFM flows,
    trigger decisions and message events, attribution (last and first touch),
    lift with 95 % intervals and MDE warnings, uplift (Qini curve) and the best
    channel / send hour. A section without data says so in one line. The file
    is written atomically.
    """
    res = workspace().report(out_file, window_days=window, effect=effect)
    if as_json:
        emit_json(res.as_dict())
        return
    filled = [k for k, v in res.sections.items() if v]
    empty = [k for k, v in res.sections.items() if not v]
    out.print(f"report written to [bold]{res.path}[/] ({res.bytes:,} bytes)")
    out.print(f"sections with data: {', '.join(filled) or 'none'}")
    if empty:
        out.print(f"sections without data: {', '.join(empty)}")
    for sid, err in res.errors.items():
        console.print(f"[yellow]warning[/] section {sid} could not be built: {err}")
