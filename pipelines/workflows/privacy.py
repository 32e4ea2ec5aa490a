"""Privacy workflows: erasure (``forget``) and access requests (``export_person``).

``forget`` holds the workspace lock and then

1. brings the identity graph up to date (incremental unify) when records were
   ingested since the last one, so every record of the person is found;
2. erases the person from the store in one transaction
   (:func:`cip.profiles.erasure.erase_persons`: raw records, quarantine, identity
   graph, profiles, features, scores, segments, webhook batches; tombstones;
   an audit row of counts);
3. before that transaction commits (so a failure leaves everything to redo):
   tells running services through the erasure journal (hashes, watched by
   every worker, which then also drop in-process sessions) and the reload
   stamp (a new store snapshot), deletes the Redis session keys when Redis is
   configured, and removes the person from workspace files: ``exports/``,
   rotated HTTP events files, saved recommenders in the MLflow artifacts and
   the model cache, and the fitted recommendation blocks (their purchase,
   view and repeat-purchase histories);
4. rewrites the DuckDB file so deleted bytes do not survive in free blocks
   (``VACUUM FULL`` of the touched tables on PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cip.pipelines._privacy_files import scrub_events_files, scrub_exports, scrub_recommenders
from cip.pipelines.workflows.blocks import forget_in_blocks
from cip.pipelines.workflows.data import unify
from cip.pipelines.workflows.results import ForgetResult, PersonExport
from cip.pipelines.workflows.setup import (
    EVENTS_DIR,
    identity_options,
    salt_path,
    serving_settings,
    workspace_lock,
)
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError
from cip.profiles.privacy import load_salt

__all__ = ["forget", "export_person"]


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
        "blocks": forget_in_blocks(ws, list(report.unified_ids)),
    }


def _config_mentions(ws: Workspace, report: Any) -> bool:
    text = ws.config_path.read_text().lower()
    return any(len(v) >= 5 and v.lower() in text for _, v in report.identifiers_erased)


def forget(
    ws: Workspace,
    identifiers: list[str] | None = None,
    unified_ids: list[str] | None = None,
    *,
    rewrite: bool = True,
    actor: str | None = None,
) -> ForgetResult:
    """Erase persons everywhere (see the module docstring); the result holds counts only.

    ``identifiers`` are ``TYPE:VALUE`` (``email:ann@example.com``); one identifier
    erases every record of the person it belongs to. An incomplete erasure
    (Redis unreachable, values left behind) is reported in ``warnings``.
    """
    from cip.profiles.erasure import erase_persons, rewrite_duckdb, vacuum_postgres

    identifiers, unified_ids = list(identifiers or []), list(unified_ids or [])
    if not identifiers and not unified_ids:
        raise ConfigError("give the person: --identifier TYPE:VALUE or --unified-id ID")
    with workspace_lock(ws, "cip forget"):
        before = unify(ws) if _needs_unify(ws) else None
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
                options=identity_options(ws),
                actor=actor,
                on_erased=outside_the_store,
            )
            touched = [t for t in report.rows_deleted if store.has_table(t)]
            backend = store.backend
        online = dict(report.cleanup.get("online", {}))
        warnings = [online.pop("warning")] if "warning" in online else []
        if report.leftovers:
            where = ", ".join(f"{t} ({n})" for t, n in report.leftovers.items())
            warnings.append(f"erased values still found in: {where}")
        if _config_mentions(ws, report):
            warnings.append(f"{ws.config_path.name} mentions an erased identifier: remove it")
        rewritten = None
        if rewrite and backend == "duckdb":
            rewritten = rewrite_duckdb(ws.store_path)
        elif rewrite:
            with ws.open_store() as store:
                rewritten = vacuum_postgres(store, touched)
    return ForgetResult(
        report=report,
        online=online,
        files=dict(report.cleanup.get("files", {})),
        unify_before=before.mode if before else None,
        store_rewrite=rewritten,
        warnings=warnings,
    )


def export_person(
    ws: Workspace,
    identifiers: list[str] | None = None,
    unified_ids: list[str] | None = None,
    *,
    actor: str | None = None,
) -> PersonExport:
    """Everything held on the persons as one JSON-able document (access request)."""
    from cip.profiles.access import export_person as export

    identifiers, unified_ids = list(identifiers or []), list(unified_ids or [])
    if not identifiers and not unified_ids:
        raise ConfigError("give the person: --identifier TYPE:VALUE or --unified-id ID")
    with ws.open_store() as store:
        doc = export(store, identifiers, unified_ids, options=identity_options(ws), actor=actor)
    return PersonExport(doc)
