"""Privacy commands: ``cip forget`` (erasure) and ``cip export-person`` (access request).

The work is :meth:`cip.Workspace.forget` and :meth:`cip.Workspace.export_person`
(see :mod:`cip.pipelines.workflows.privacy` for what an erasure touches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.files import write_text_atomic
from cip.profiles.errors import PrivacyError
from rich.table import Table

_IDS = Annotated[
    list[str] | None,
    typer.Option("--identifier", "-i", help="TYPE:VALUE, e.g. email:ann@example.com (repeatable)."),
]
_UIDS = Annotated[
    list[str] | None, typer.Option("--unified-id", "-u", help="A unified id (repeatable).")
]
_ACTOR = Annotated[
    str | None,
    typer.Option("--actor", help="Who asks, for the audit log (default $CIP_ACTOR, else $USER)."),
]


@app.command()
def forget(
    identifier: _IDS = None,
    unified_id: _UIDS = None,
    no_rewrite: Annotated[
        bool,
        typer.Option(
            "--no-rewrite",
            help="Skip rewriting the store file (deleted bytes stay in its free blocks).",
        ),
    ] = False,
    actor: _ACTOR = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Erase a person everywhere: store, quarantine, identity graph, features, scores, segments,
    online sessions, served answers and workspace files; tombstones keep them out of re-ingests.

    The person is found through the identity graph: one identifier erases all of
    theirs. Nothing identifying is logged; the audit log keeps counts only.
    """
    res = (
        workspace()
        .forget(identifier or [], unified_id or [], rewrite=not no_rewrite, actor=actor)
        .as_dict()
    )
    if as_json:
        emit_json(res)
    else:
        _print_forget(res)
    if res["warnings"]:
        raise PrivacyError("erasure incomplete: " + "; ".join(res["warnings"]))


def _print_forget(res: dict[str, Any]) -> None:
    if not res["persons"] and res["already_erased"] and not res["rows_total"]:
        out.print("Already erased: nothing of this person is left in the store.")
    t = Table("table", "rows deleted", title=f"Erasure {res['erasure_id']}")
    for name, n in res["rows_deleted"].items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    files = res["files"]
    rewritten = sum(len(v) for v in files.values())
    ids = ", ".join(f"{n} {k}" for k, n in res["identifiers"].items())
    out.print(
        f"Erased {res['persons']} person(s) ({ids or 'no identifiers'}), "
        f"{res['rows_total']:,} rows; {res['tombstones_added']} tombstones added; "
        f"{rewritten} workspace file(s) rewritten; service journal updated"
        + (
            f", {res['online']['redis_sessions_deleted']} Redis session(s) deleted"
            if res["online"].get("redis_sessions_deleted") is not None
            else ""
        )
        + "."
    )
    if "store_rewrite" in res:
        console.print(f"store rewritten in {res['store_rewrite']['seconds']:.1f}s")


@app.command("export-person")
def export_person(
    identifier: _IDS = None,
    unified_id: _UIDS = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here (atomically).")
    ] = None,
    actor: _ACTOR = None,
) -> None:
    """Access request: everything held on a person (profile, identifiers, source records,
    quarantine hits, features, scores, segments, identity history) as one JSON document.
    """
    result = workspace().export_person(identifier or [], unified_id or [], actor=actor)
    text = json.dumps(result.document, indent=2, default=str, ensure_ascii=False) + "\n"
    if out_path is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(out_path, text, private=True)
    console.print(
        f"wrote {out_path} ({result.persons} person(s), {result.source_records:,} source records)"
    )
