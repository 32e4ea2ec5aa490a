"""``cip run``: the whole pipeline, crash-safe and resumable."""

from __future__ import annotations

from typing import Annotated

import typer
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from cip.pipelines.run import RunResult
from rich.table import Table


def print_run(result: RunResult) -> None:
    t = Table(
        "step",
        "summary",
        title=f"Run {result.run_id} (as of {result.as_of}, "
        f"{'resumed, ' if result.resumed else ''}{result.seconds} s)",
    )
    for name, summary in result.steps.items():
        t.add_row(name, ", ".join(f"{k}={v}" for k, v in summary.items()))
    out.print(t)


@app.command("run")
def run_cmd(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            callback=check_as_of,
            help="Snapshot date (default: the day after the last data).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run the whole pipeline: ingest, retention, unify, features, train or reuse champions,
    fit the recommendation blocks, score, segments, exports (webhooks and `segments.exports` files).

    A run killed at any point (even kill -9) is completed by running `cip run`
    again, with the same as_of; a second run on the same workspace while one is
    running is refused and changes nothing.
    """
    ws = workspace()
    with console.status("running the pipeline", spinner="dots") as status:
        result = ws.run(
            as_of,
            on_step=lambda name, what: status.update(f"{name}: {what}") if not as_json else None,
        )
    if as_json:
        emit_json(result.as_dict())
    else:
        print_run(result)
