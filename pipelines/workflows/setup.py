"""Workspace plumbing shared by the workflows: secrets, source declarations, the lock,
serving settings, and the simulated shop."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cip.pipelines.config import load_config
from cip.pipelines.workflows.results import SimulateResult
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError, ConflictError, DataError
from cip.profiles.identity import IdentityOptions

__all__ = [
    "EVENTS_DIR",
    "salt_path",
    "identity_options",
    "register_sources",
    "serving_settings",
    "ensure_events_source",
    "workspace_lock",
    "simulate_shop",
    "resolve_as_of",
]

#: where the HTTP service writes accepted /events (the ``http_events`` source)
EVENTS_DIR = "sources/_http_events"


def salt_path(ws: Workspace) -> Path:
    """The workspace's secret salt for identifier hashes."""
    return ws.root / "secrets" / "salt"


def identity_options(ws: Workspace) -> IdentityOptions:
    """The library options of the workspace's ``identity:`` config section.

    New unified ids are seeded from the workspace secret (``secrets/salt``), so
    rebuilding the store from the same sources gives every person the same id.
    """
    from cip.profiles.privacy import hash_identifier, load_salt

    seed = hash_identifier("unified_id", "seed", load_salt(salt_path(ws)))
    return IdentityOptions.from_mapping({**ws.config.identity.model_dump(), "id_salt": seed})


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


def serving_settings(ws: Workspace, **overrides: Any) -> Any:
    """The service settings of a workspace (``serving:`` section plus resolved paths)."""
    from cip.serving.settings import ServingSettings

    st = ws.config.store
    opts = ws.config.serving.model_dump()
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return ServingSettings(
        **opts,
        store_backend=st.backend,
        store_path=str(ws.store_path),
        store_url=st.url,
        store_schema=st.db_schema,
        mlflow_tracking_uri=ws.mlflow_tracking_uri,
        model_cache_dir=str(ws.root / "serving" / "models"),
        events_dir=str(ws.root / EVENTS_DIR),
        keys_path=str(ws.root / "keys.json"),
        salt_path=str(salt_path(ws)),
        erasure_journal=str(ws.root / "serving" / "erasures.jsonl"),
        reload_stamp=str(ws.root / "serving" / "reload.stamp"),
        log_path=str(ws.logs_dir / "serving.log"),
        blocks_path=str(ws.models_dir / "blocks" / "blocks.pkl"),
    )


def demo_browser_key(ws: Workspace, settings: Any) -> Any:
    """Settings with a fresh publishable key for the demo storefront at ``/web/demo/``.

    The key (scope ``browser``, named ``web-demo``) allows the origin the service is
    served on; earlier ``web-demo`` keys are revoked. Browser keys are publishable (the
    page shows it), so it travels in the settings like any other setting.
    """
    from cip.serving.auth import KeyStore

    ks = KeyStore(ws.root / "keys.json")
    for k in ks.list_keys():
        if k.name == "web-demo" and k.scope == "browser" and k.revoked_at is None:
            ks.revoke(k.id)
    hosts = [settings.host]
    if settings.host in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
        hosts = ["127.0.0.1", "localhost"] if settings.host in ("0.0.0.0", "::") else hosts
    origins = [f"http://{h}:{settings.port}" for h in hosts]
    key, _ = ks.create("browser", "web-demo", origins=origins)
    return settings.model_copy(update={"web_demo": True, "web_demo_key": key})


def ensure_events_source(ws: Workspace) -> bool:
    """Declare the ``http_events`` source in ``cip.yaml`` if missing; returns True if added."""
    from cip.serving.events import EventSink, source_declaration

    EventSink.ensure_schema_file(ws.root / EVENTS_DIR)
    decl = source_declaration(EVENTS_DIR)
    if any(s.name == decl["name"] for s in ws.config.sources):
        return False
    register_sources(ws, [decl])
    return True


@contextmanager
def workspace_lock(ws: Workspace, what: str = "cip run") -> Iterator[None]:
    """Hold the workspace's exclusive lock, or raise ConflictError at once.

    ``fcntl.flock`` on ``<workspace>/.cip.lock``: the kernel releases it even on ``kill -9``.
    """
    path = ws.root / ".cip.lock"
    fh = open(path, "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConflictError(
                f"workspace {ws.root} is busy: {holder} holds its lock; wait for it to finish "
                f"(nothing was changed)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what} (pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)")
        fh.flush()
        yield
    finally:
        fh.close()


def simulate_shop(
    ws: Workspace,
    *,
    customers: int = 2000,
    days: int = 365,
    seed: int = 0,
    end: date | None = None,
    progress: Callable[[int, int], None] | None = None,
    campaigns: int = 0,
) -> SimulateResult:
    """Write a simulated shop's sources into ``<workspace>/sources`` and register them.

    ``end`` is the last simulated day (default 2025-12-31); ``progress(done, total)``
    is called as people are simulated. Sources of the same names are replaced.
    """
    from cip.pipelines.simulator import simulate

    prefix = os.path.relpath(ws.sources_dir, ws.root)
    ws.sources_dir.mkdir(parents=True, exist_ok=True)
    result = simulate(
        ws.sources_dir,
        customers=customers,
        days=days,
        seed=seed,
        end=end or date(2025, 12, 31),
        path_prefix=prefix,
        progress=progress,
        campaigns=campaigns,
    )
    replaced = register_sources(ws, result.sources)
    return SimulateResult(
        people=result.people,
        counts=result.counts,
        truth_rows=result.truth_rows,
        sources=[d["name"] for d in result.sources],
        replaced=replaced,
        files={k: str(v) for k, v in result.files.items()},
        seconds=round(result.elapsed_s, 2),
        declarations=list(result.sources),
    )


def resolve_as_of(ws: Workspace) -> date:
    """The day after the last order or event: the natural as_of for scoring today."""
    import pandas as pd

    with ws.open_store() as store:
        row = store.sql(
            "SELECT greatest((SELECT max(ts) FROM orders), (SELECT max(ts) FROM events)) AS t"
        )
    t = row["t"].iloc[0]
    if t is None or pd.isna(t):
        raise DataError("the store holds no orders or events yet; run `cip ingest` first")
    return pd.Timestamp(t).date() + timedelta(days=1)
