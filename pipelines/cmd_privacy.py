"""Privacy commands: ``cip forget`` (erasure) and ``cip export-person`` (access request).

``cip forget`` holds the workspace lock and then

1. brings the identity graph up to date (incremental unify) when records were
   ingested since the last one, so every record of the person is found;
2. erases the person from the store in one transaction
   (:func:`profiles.erasure.erase_persons`: raw records, quarantine, identity
   graph, profiles, features, scores, segments, webhook batches; tombstones;
   an audit row of counts);
3. before that transaction commits (so a failure leaves everything to redo):
   tells running services through the erasure journal (hashes, watched by
   every worker, which then also drop in-process sessions) and the reload
   stamp (a new store snapshot), deletes the Redis session keys when Redis is
   configured, and removes the person from workspace files: ``exports/``,
   rotated HTTP events files, saved recommenders in the MLflow artifacts and
   the model cache;
4. rewrites the DuckDB file so deleted bytes do not survive in free blocks
   (``VACUUM FULL`` of the touched tables on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines._privacy_files import scrub_events_files, scrub_exports, scrub_recommenders
from cip.pipelines.cmd_identity import options, unify_workspace
from cip.pipelines.cmd_serve import EVENTS_DIR, salt_path, serving_settings
from cip.pipelines.run import workspace_lock
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError, PrivacyError
from cip.profiles.privacy import load_salt
from rich.table import Table

__all__ = ["run_forget", "run_export_person"]

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


def _needs_unify(ws: Workspace) -> bool:
    with ws.open_store() as store:
        if not store.has_table("identity_map") or not store.has_table("_identity_records"):
            return False
        raw = " + ".join(f"(SELECT count(*) FROM {t})" for t in ("customers", "orders", "events"))
        n = int(store.sql(f"SELECT {raw} AS n")["n"].iloc[0])
        return n != store.count("_identity_records")


def _online(ws: Workspace, salt: bytes, report: Any) -> dict[str, Any]:
    """Serving journal, reload stamp and Redis sessions; returns what was done."""
    from cip.serving.erasure import record_erasure

    s = serving_settings(ws)
    pairs = record_erasure(
        s.erasure_journal,
        salt,
        unified_ids=report.unified_ids,
        identifiers=report.identifiers_erased,
    )
    stamp = Path(s.reload_stamp)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    result: dict[str, Any] = {"journal_entries": len(pairs), "redis_sessions_deleted": None}
    if s.redis_url:
        from cip.serving.session_store import RedisSessionStore

        visitors = [(k, v) for k, v in report.identifiers_erased]
        visitors += [("unified_id", u) for u in report.unified_ids]
        try:
            r = RedisSessionStore(s.redis_url, salt, prefix=s.redis_prefix)
            try:
                result["redis_sessions_deleted"] = r.forget(visitors)
            finally:
                r.close()
        except Exception as exc:  # redis errors, OSError: reported, the erasure stands
            result["warning"] = f"Redis sessions not deleted ({type(exc).__name__}); they expire "
            result["warning"] += f"within {s.session_ttl_seconds}s and are never served"
    return result


def _files(ws: Workspace, report: Any) -> dict[str, Any]:
    values = sorted({v for _, v in report.identifiers_erased} | set(report.unified_ids))
    roots = [Path(ws.mlflow_artifact_location), ws.root / "serving" / "models"]
    return {
        "exports": scrub_exports(ws.exports_dir, values),
        "http_events": scrub_events_files(ws.root / EVENTS_DIR, values),
        "recommenders": scrub_recommenders(roots, report.unified_ids),
    }


def _config_mentions(ws: Workspace, report: Any) -> bool:
    text = ws.config_path.read_text().lower()
    return any(len(v) >= 5 and v.lower() in text for _, v in report.identifiers_erased)


def run_forget(
    ws: Workspace,
    identifiers: list[str],
    unified_ids: list[str],
    *,
    rewrite: bool = True,
    actor: str | None = None,
) -> dict[str, Any]:
    """Erase persons everywhere (see the module docstring); returns counts, no identifiers."""
    from cip.profiles.erasure import erase_persons, rewrite_duckdb, vacuum_postgres

    if not identifiers and not unified_ids:
        raise ConfigError("give the person: --identifier TYPE:VALUE or --unified-id ID")
    with workspace_lock(ws, "cip forget"):
        unify = unify_workspace(ws, show_progress=False) if _needs_unify(ws) else None
        salt = load_salt(salt_path(ws))

        def outside_the_store(report: Any) -> dict[str, Any]:
            # before the commit: if this fails nothing is committed and a re-run redoes it all
            return {"online": _online(ws, salt, report), "files": _files(ws, report)}

        with ws.open_store() as store:
            report = erase_persons(
                store,
                identifiers,
                unified_ids,
                salt=salt,
                options=options(ws),
                actor=actor,
                on_erased=outside_the_store,
            )
            touched = [t for t in report.rows_deleted if store.has_table(t)]
            backend = store.backend
        result: dict[str, Any] = report.as_dict()
        result.update(result.pop("cleanup"))
        result["unify_before"] = unify["mode"] if unify else None
        warnings = [result["online"].pop("warning")] if "warning" in result["online"] else []
        if report.leftovers:
            where = ", ".join(f"{t} ({n})" for t, n in report.leftovers.items())
            warnings.append(f"erased values still found in: {where}")
        if _config_mentions(ws, report):
            warnings.append(f"{ws.config_path.name} mentions an erased identifier: remove it")
        if rewrite and backend == "duckdb":
            result["store_rewrite"] = rewrite_duckdb(ws.store_path)
        elif rewrite:
            with ws.open_store() as store:
                result["store_rewrite"] = vacuum_postgres(store, touched)
        result["warnings"] = warnings
    return result


def run_export_person(
    ws: Workspace, identifiers: list[str], unified_ids: list[str], *, actor: str | None = None
) -> dict[str, Any]:
    """Everything held on the persons as one JSON-able document (access request)."""
    from cip.profiles.access import export_person

    if not identifiers and not unified_ids:
        raise ConfigError("give the person: --identifier TYPE:VALUE or --unified-id ID")
    with ws.open_store() as store:
        return export_person(store, identifiers, unified_ids, options=options(ws), actor=actor)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    ws = workspace()
    res = run_forget(ws, identifier or [], unified_id or [], rewrite=not no_rewrite, actor=actor)
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
    ws = workspace()
    doc = run_export_person(ws, identifier or [], unified_id or [], actor=actor)
    text = json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n"
    if out_path is None:
        typer.echo(text, nl=False)
        return
    _write_atomic(out_path, text)
    n = sum(len(v) for v in doc["records"].values())
    console.print(f"wrote {out_path} ({len(doc['persons'])} person(s), {n:,} source records)")
