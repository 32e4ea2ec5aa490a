"""``cip serve`` and ``cip keys``: the HTTP service and its API keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.workflows.setup import (
    EVENTS_DIR,
    demo_browser_key,
    ensure_events_source,
    salt_path,
    serving_settings,
)
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError
from cip.serving.settings import WORKSPACE_SETTINGS
from rich.table import Table

# re-exported from their former home (serving.service and scripts import them from here)
__all__ = ["EVENTS_DIR", "serving_settings", "ensure_events_source", "salt_path"]

keys_app = typer.Typer(
    help="API keys of the HTTP service (scopes shop, campaign, admin, browser).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", min=1, max=65535, help="Port (default serving.port)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (default serving.workers)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Load the model and data once, report, and exit.")
    ] = False,
    print_settings: Annotated[
        bool, typer.Option("--print-settings", help="Print the service settings JSON and exit.")
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also serve the demo storefront at /web/demo/ (makes a browser key "
            "'web-demo' for this host and port; same as serving.web_demo: true).",
        ),
    ] = False,
) -> None:
    """Serve recommendations, scores, segments and events over HTTP (BentoML).

    Loads the champion recommender from the MLflow registry and a snapshot of the
    store, then picks up new champions and store changes without a restart
    (``POST /admin/reload`` or every serving.reload_interval_seconds). Calls need
    an API key (``cip keys create``); /livez, /readyz and /metrics are open.
    Accepted /events are written to sources/_http_events and loaded by the next
    ``cip ingest`` (source ``http_events``). The browser tracker is served at
    /web/cip.js; with --demo, a demo storefront at /web/demo/.
    """
    ws = workspace()
    settings = serving_settings(ws, port=port, workers=workers, host=host)
    if (demo or settings.web_demo) and not check and not print_settings:
        settings = demo_browser_key(ws, settings)
    if print_settings:
        typer.echo(settings.to_env())
        return
    if ensure_events_source(ws):
        console.print("registered source [bold]http_events[/] (HTTP events -> events) in cip.yaml")
    settings.save(ws.root / WORKSPACE_SETTINGS)  # for `CIP_WORKSPACE=... bentoml serve`
    if check:
        _check(settings)
        return
    from cip.serving.auth import KeyStore

    if not KeyStore(settings.keys_path).list_keys():
        console.print("[yellow]no API keys yet: every call will get 401; run `cip keys create`[/]")
    if settings.workers > 1 and settings.session_store == "memory":
        console.print(
            "[yellow]several workers with the in-process session store: a visitor's /events "
            "may land on another worker; set serving.session_store: redis[/]"
        )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["CIP_SERVING_SETTINGS"] = settings.to_env()
    env["CIP_SERVE_WORKERS"] = str(settings.workers)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("BENTOML_HOME", str(ws.root / "serving" / "bentoml"))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # one thread per worker: see serving.service
    console.print(
        f"serving on http://{settings.host}:{settings.port} ({settings.workers} worker(s))"
    )
    if settings.web_demo:
        shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        console.print(f"demo storefront: http://{shown}:{settings.port}/web/demo/")
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "cip.serving.service:CIPService",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--working-dir",
        str(root),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _check(settings: Any) -> None:
    from cip.serving.state import StateHolder

    holder = StateHolder(settings)
    rep = holder.reload()
    try:
        if holder.state is None:
            raise ConfigError(f"cannot load the serving state: {rep.error}")
        snap = holder.state.snapshot
        emit_json(
            {
                "model": settings.recommender_model,
                "model_version": holder.state.model_version,
                "products": int(len(snap.item_ids)),
                "people_with_purchases": len(snap.purchases),
                "scores": 0 if snap.scores is None else int(len(snap.scores)),
                "scores_as_of": snap.scores_as_of,
                "erased_identifiers": len(holder.state.erasure),
                "api_keys": len([k for k in holder.keys.list_keys() if k.revoked_at is None]),
                "seconds": round(rep.seconds, 3),
            }
        )
    finally:
        holder.stop()


def _keystore(ws: Workspace) -> Any:
    from cip.serving.auth import KeyStore

    return KeyStore(ws.root / "keys.json")


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        Literal["shop", "campaign", "admin", "browser"],
        typer.Option(
            "--scope",
            help="What the key may call. browser: a publishable pk_ key for web pages "
            "(/events and /recommend only, from the --origin pages only).",
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin",
            help="Page origin a browser key may be used from, e.g. https://shop.example "
            "(repeatable; browser keys only).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create an API key and print it ONCE (only its salted hash is stored)."""
    key, rec = _keystore(workspace()).create(scope, name, origins=origin)
    if as_json:
        emit_json({**rec.public(), "key": key})
        return
    out.print(f"API key [bold]{rec.name}[/] (id {rec.id}, scope {rec.scope}):")
    typer.echo(key)
    if rec.scope == "browser":
        console.print(
            "A publishable key for pages on " + ", ".join(rec.origins or ()) + ": "
            "cip.init({host: ..., key: ...}) with /web/cip.js. It cannot be shown again."
        )
        return
    console.print("Store it now: it cannot be shown again. Send it as the X-API-Key header.")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List API keys (ids, names, scopes, dates; never the keys)."""
    keys = _keystore(workspace()).list_keys()
    if as_json:
        emit_json([k.public() for k in keys])
        return
    t = Table("id", "name", "scope", "origins", "created", "revoked", title="API keys")
    for k in keys:
        t.add_row(
            k.id, k.name, k.scope, " ".join(k.origins or ()), k.created_at, k.revoked_at or ""
        )
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (or unique name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Revoke an API key; running services refuse it within a second."""
    rec = _keystore(workspace()).revoke(key_id)
    if as_json:
        emit_json(rec.public())
        return
    out.print(f"revoked key {rec.id} ({rec.name})")
