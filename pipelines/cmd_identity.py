"""Identity commands: ``cip unify`` and the ``cip identity ...`` operator tools."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.api import Workspace
from cip.pipelines.workflows.setup import identity_options as options
from cip.profiles.errors import NotFoundError
from cip.profiles.identity import (
    UnifyResult,
    allow_link,
    forbid_link,
    forbidden_links,
    identity_history,
    person_report,
)
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

identity_app = typer.Typer(
    help="Inspect and correct identity resolution: split persons, look one up, list blocked "
    "identifiers and the merge/split history.",
    no_args_is_help=True,
)
app.add_typer(identity_app, name="identity")

_JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _unify(ws: Workspace, *, full: bool = False, quiet: bool = False) -> UnifyResult:
    """``ws.unify()`` with a spinner naming the current phase (none with ``quiet``)."""
    if quiet:
        return ws.unify(full)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]unify[/] {task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=None)
        return ws.unify(full, progress=lambda msg: prog.update(task, description=msg))


@app.command()
def unify(
    full: Annotated[
        bool, typer.Option("--full", help="Recompute from all records (default: only new ones).")
    ] = False,
    as_json: _JSON = False,
) -> None:
    """Resolve identities: link records into persons, rebuild record_map and profiles."""
    res = _unify(workspace(), full=full, quiet=as_json).as_dict()
    if as_json:
        emit_json(res)
        return
    t = Table("", "", title=f"Unify ({res['mode']}, {res['seconds']:.1f}s)", show_header=False)
    for label, key in (
        ("new records", "records_new"),
        ("records linked to a person", "records_mapped"),
        ("persons", "persons"),
        ("identifiers", "identifiers"),
        ("merges", "merges"),
        ("splits", "splits"),
        ("blocked identifiers", "blocked"),
        ("probabilistic links", "probabilistic_links"),
    ):
        t.add_row(label, f"{res[key]:,}")
    bad = {k: v for k, v in res["invalid"].items() if v}
    if bad:
        t.add_row("invalid values (not linked)", ", ".join(f"{k} {v:,}" for k, v in bad.items()))
    out.print(t)


@identity_app.command("split")
def split(
    a: Annotated[str, typer.Option("--a", help="Identifier TYPE:VALUE, e.g. email:ann@x.com.")],
    b: Annotated[
        str | None,
        typer.Option(
            "--b",
            help="Second identifier: keep A's and B's persons apart. "
            "Without it, A is never used for linking.",
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept with the rule).")
    ] = None,
    now: Annotated[bool, typer.Option("--unify", help="Run unify right away.")] = False,
    as_json: _JSON = False,
) -> None:
    """Forbid a link so the next unify separates the persons (recorded in identity_history)."""
    ws = workspace()
    with ws.open_store() as store:
        rule = forbid_link(store, a, b, reason=reason, options=options(ws))
    result: dict[str, Any] = {"forbidden": rule}
    if now:
        result["unify"] = _unify(ws, quiet=as_json).as_dict()
    if as_json:
        emit_json(result)
        return
    what = f"{rule['a']} ~ {rule['b']}" if rule["b"] else f"{rule['a']} (never used to link)"
    out.print(f"Forbidden link recorded: {what}")
    if now:
        u = result["unify"]
        out.print(f"Unified: {u['persons']:,} persons, {u['splits']} splits")
    else:
        out.print("Run [bold]cip unify[/] to apply it.")


@identity_app.command("allow")
def allow(
    a: Annotated[str, typer.Option("--a", help="Identifier TYPE:VALUE of the rule.")],
    b: Annotated[str | None, typer.Option("--b", help="Second identifier of the rule.")] = None,
) -> None:
    """Remove a forbidden link recorded with `cip identity split` (takes effect on next unify)."""
    ws = workspace()
    with ws.open_store() as store:
        n = allow_link(store, a, b, options=options(ws))
    out.print(f"Removed {n} forbidden link(s). Run [bold]cip unify[/] to apply.")


@identity_app.command("show")
def show(
    unified_id: Annotated[
        str | None, typer.Option("--unified-id", "-u", help="The person's unified id.")
    ] = None,
    identifier: Annotated[
        str | None, typer.Option("--identifier", "-i", help="Or one of its identifiers TYPE:VALUE.")
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Show one person: profile, identifiers and merge/split history (prints personal data)."""
    if not unified_id and not identifier:
        raise NotFoundError("give --unified-id or --identifier")
    ws = workspace()
    with ws.open_store() as store:
        rep = person_report(
            store, unified_id=unified_id, identifier=identifier, options=options(ws)
        )
    if as_json:
        emit_json(rep)
        return
    state = "active" if rep["active"] else "not active (merged or dissolved)"
    out.print(f"Person [bold]{rep['unified_id']}[/] ({state})")
    if rep["profile"]:
        p = rep["profile"]
        keys = (
            "first_name",
            "last_name",
            "city",
            "first_seen",
            "last_seen",
            "record_count",
            "source_count",
        )
        out.print(", ".join(f"{k}: {p.get(k)}" for k in keys if p.get(k) is not None))
    t = Table("type", "value", "first seen", "last seen", "records", title="Identifiers")
    for r in rep["identifiers"]:
        t.add_row(
            r["identifier_type"],
            str(r["identifier_value"]),
            str(r["first_seen"])[:19],
            str(r["last_seen"])[:19],
            f"{r['record_count']:,}",
        )
    out.print(t)
    _print_history(rep["history"])


def _print_history(rows: list[dict]) -> None:
    if not rows:
        return
    h = Table("when", "kind", "unified_id", "other_id", "identifier", "reason", title="History")
    for r in rows:
        ident = (
            f"{r.get('identifier_type')}:{r.get('identifier_value')}"
            if r.get("identifier_type")
            else ""
        )
        h.add_row(
            str(r["ts"])[:19],
            r["kind"],
            str(r.get("unified_id") or ""),
            str(r.get("other_id") or ""),
            ident,
            str(r.get("reason") or ""),
        )
    out.print(h)


@identity_app.command("blocked")
def blocked(
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 50,
    as_json: _JSON = False,
) -> None:
    """Identifiers not used for linking (over-merge guard or operator) and whom they would join."""
    with workspace().open_store() as store:
        if not store.has_table("identity_blocked"):
            raise NotFoundError("no identity tables yet; run `cip unify` first")
        df = store.sql(
            "SELECT identifier_type, identifier_value, reason, persons, max_persons, "
            "record_count, unified_ids FROM identity_blocked "
            "ORDER BY persons DESC, record_count DESC LIMIT ?",
            [limit],
        )
    if as_json:
        emit_json(df.to_dict("records"))
        return
    t = Table("type", "value", "reason", "persons", "limit", "records", title="Blocked identifiers")
    for r in df.to_dict("records"):
        t.add_row(
            r["identifier_type"],
            str(r["identifier_value"]),
            r["reason"],
            str(r["persons"]),
            str(r["max_persons"]),
            f"{r['record_count']:,}",
        )
    out.print(t)


@identity_app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, help="Rows to show (latest first).")] = 50,
    as_json: _JSON = False,
) -> None:
    """Latest merges and splits, with the linking identifier and evidence record."""
    with workspace().open_store() as store:
        if not store.has_table("identity_history"):
            raise NotFoundError("no identity history yet; run `cip unify` first")
        df = identity_history(store, limit=limit)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    if as_json:
        emit_json(rows)
        return
    _print_history(rows)


@identity_app.command("forbidden")
def forbidden(as_json: _JSON = False) -> None:
    """Forbidden links recorded in the store (config ones are in cip.yaml)."""
    with workspace().open_store() as store:
        df = forbidden_links(store)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    if as_json:
        emit_json(rows)
        return
    t = Table("a", "b", "reason", "created", title="Forbidden links")
    for r in rows:
        t.add_row(
            str(r["a"]),
            str(r["b"] or "(never link)"),
            str(r["reason"] or ""),
            str(r["created_at"])[:19],
        )
    out.print(t)
