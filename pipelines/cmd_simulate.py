"""``cip simulate``: write a simulated shop's sources and register them in ``cip.yaml``."""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Annotated, Any

import typer
import yaml
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.config import load_config
from cip.pipelines.simulator import SimulationResult
from cip.pipelines.simulator import simulate as run_simulation
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register_sources"]


def register_sources(ws: Workspace, declarations: list[dict[str, Any]]) -> list[str]:
    """Add (or replace, by name) source declarations in the workspace's ``cip.yaml``.

    The file is rewritten atomically and validated with :func:`load_config`; if the
    result does not validate, the previous file is put back and the error raised.
    Leading comment lines are kept; other comments are lost by the YAML round trip.

    Returns:
        The names of the sources that were replaced (the others were added).
    """
    path = ws.config_path
    before = path.read_text()
    try:
        data = yaml.safe_load(before) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    sources = list(data.get("sources") or [])
    index = {s.get("name"): i for i, s in enumerate(sources) if isinstance(s, dict)}
    replaced = []
    for decl in declarations:
        if decl["name"] in index:
            sources[index[decl["name"]]] = decl
            replaced.append(decl["name"])
        else:
            index[decl["name"]] = len(sources)
            sources.append(decl)
    data["sources"] = sources
    header = "".join(line + "\n" for line in _leading_comments(before))
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    try:
        ws.config = load_config(path)
    except ConfigError:
        path.write_text(before)
        raise
    return replaced


def _leading_comments(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _parse_date(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


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
    end_day = _parse_date(end)
    prefix = os.path.relpath(ws.sources_dir, ws.root)
    ws.sources_dir.mkdir(parents=True, exist_ok=True)
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
        result = run_simulation(
            ws.sources_dir,
            customers=customers,
            days=days,
            seed=seed,
            end=end_day,
            path_prefix=prefix,
            progress=lambda done, total: progress.update(task, completed=done),
        )
    replaced = register_sources(ws, result.sources)
    if as_json:
        emit_json(_summary(result, replaced))
        return
    t = Table("source", "table", "file", "rows", title=f"Simulated {customers:,} people")
    for decl in result.sources:
        t.add_row(decl["name"], decl["table"], decl["path"], f"{result.counts[decl['name']]:,}")
    out.print(t)
    added = len(result.sources) - len(replaced)
    out.print(
        f"{added} sources added and {len(replaced)} replaced in {ws.config_path.name}; "
        f"truth in {prefix}/_truth/ ({result.truth_rows:,} record links); "
        f"{result.elapsed_s:.1f} s. Next: cip ingest"
    )


def _summary(result: SimulationResult, replaced: list[str]) -> dict[str, Any]:
    return {
        "people": result.people,
        "counts": result.counts,
        "truth_rows": result.truth_rows,
        "sources": [d["name"] for d in result.sources],
        "replaced": replaced,
        "files": {k: str(v) for k, v in result.files.items()},
        "seconds": round(result.elapsed_s, 2),
    }
