"""Settings of the serving layer: the ``serving:`` section of ``cip.yaml`` plus resolved paths.

:class:`ServingOptions` is what a user writes in ``cip.yaml`` (``pipelines.config``
embeds it as the ``serving`` section). :class:`ServingSettings` adds the paths and
URLs the service needs, resolved by ``cip serve`` from the workspace (the serving
layer never reads ``cip.yaml`` nor imports ``pipelines``). ``cip serve`` passes them
to the BentoML worker processes as JSON in the environment variable
``CIP_SERVING_SETTINGS`` and also saves them as ``serving/settings.json`` in the
workspace; :meth:`ServingSettings.load` finds them in that order:

1. ``$CIP_SERVING_SETTINGS`` -- the JSON itself (set by ``cip serve``);
2. ``$CIP_SERVING_SETTINGS_FILE`` -- a JSON file (``cip serve --print-settings > F``);
3. ``$CIP_WORKSPACE/serving/settings.json`` -- saved by the last ``cip serve``
   (or ``cip serve --check``) of that workspace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cip.profiles.contracts import RECOMMENDER_MODEL
from cip.profiles.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ServingOptions",
    "ServingSettings",
    "SETTINGS_ENV",
    "SETTINGS_FILE_ENV",
    "WORKSPACE_SETTINGS",
]

#: Environment variable holding the JSON of :class:`ServingSettings`.
SETTINGS_ENV = "CIP_SERVING_SETTINGS"
#: Environment variable holding the path of a JSON file of :class:`ServingSettings`.
SETTINGS_FILE_ENV = "CIP_SERVING_SETTINGS_FILE"
#: Where ``cip serve`` saves the settings, relative to the workspace folder.
WORKSPACE_SETTINGS = "serving/settings.json"


class ServingOptions(BaseModel):
    """The ``serving:`` section of ``cip.yaml`` (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    #: ``memory``: one store per worker process; ``redis``: shared by every worker.
    session_store: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    redis_prefix: str = "cip:"
    session_ttl_seconds: int = Field(1800, ge=10)
    session_max_items: int = Field(50, ge=1, le=1000)
    #: Seconds between checks for a new champion or a changed store (0: never).
    reload_interval_seconds: float = Field(30.0, ge=0)
    #: ``opt_out``: personalise unless the person refused (explicit ``false``);
    #: ``opt_in``: personalise only with an explicit ``true``.
    personalization_consent: Literal["opt_out", "opt_in"] = "opt_out"
    recommender_model: str = RECOMMENDER_MODEL
    #: Rotate the HTTP events file after this many seconds (ingest reads rotated files).
    events_rotate_seconds: float = Field(60.0, ge=1)
    access_log: bool = True
    #: Serve the demo storefront at ``/web/demo/`` (``cip serve --demo`` turns it on).
    web_demo: bool = False
    #: Also append every accepted event to this Redis Stream (needs ``redis_url``): the
    #: durable feed of ``cip triggers run`` with ``trigger_worker.feed: redis``.
    event_stream: str | None = None

    @model_validator(mode="after")
    def _redis(self) -> ServingOptions:
        if self.session_store == "redis" and not self.redis_url:
            raise ValueError("serving.session_store 'redis' needs serving.redis_url")
        if self.event_stream and not self.redis_url:
            raise ValueError("serving.event_stream needs serving.redis_url")
        return self


class ServingSettings(ServingOptions):
    """Everything a service process needs: options plus resolved locations."""

    store_backend: Literal["duckdb", "postgres"] = "duckdb"
    store_path: str | None = None
    store_url: str | None = None
    store_schema: str = "cip"
    mlflow_tracking_uri: str | None = None
    #: Folder where champion model artifacts are downloaded and cached.
    model_cache_dir: str
    #: Folder of the durable HTTP events files (the ``http_events`` source reads it).
    events_dir: str
    #: The API keys file (hashes only), see :mod:`serving.auth`.
    keys_path: str
    #: The workspace's secret salt for identifier hashes (logs, session keys, erasures).
    salt_path: str
    #: Journal of erased identifiers (hashes), shared by every worker and ``cip forget``.
    erasure_journal: str
    #: Touching this file makes every worker reload within a second.
    reload_stamp: str
    #: Service log file (request ids, no identifiers); None: BentoML's logging only.
    log_path: str | None = None
    #: The publishable (``browser``) key the demo storefront uses; made by ``cip serve --demo``.
    web_demo_key: str | None = None
    #: The fitted recommendation blocks (``cip recommend fit-blocks``); None: no blocks.
    blocks_path: str | None = None

    @classmethod
    def for_folder(cls, root: str | Path, **options: object) -> ServingSettings:
        """Settings with every location under ``root`` (tests and ad-hoc use)."""
        r = Path(root)
        return cls(
            store_path=str(r / "cip.duckdb"),
            mlflow_tracking_uri=f"sqlite:///{r / 'mlflow.db'}",
            model_cache_dir=str(r / "serving" / "models"),
            events_dir=str(r / "sources" / "_http_events"),
            keys_path=str(r / "keys.json"),
            salt_path=str(r / "secrets" / "salt"),
            erasure_journal=str(r / "serving" / "erasures.jsonl"),
            reload_stamp=str(r / "serving" / "reload.stamp"),
            log_path=str(r / "logs" / "serving.log"),
            blocks_path=str(r / "models" / "blocks" / "blocks.pkl"),
            **options,  # type: ignore[arg-type]
        )

    def to_env(self) -> str:
        """The settings as JSON (the value of ``$CIP_SERVING_SETTINGS``)."""
        return self.model_dump_json()

    def save(self, path: str | Path) -> Path:
        """Write the settings as JSON to ``path`` (owner-only: URLs may hold passwords)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_env())
        tmp.replace(p)
        return p

    @classmethod
    def from_env(cls) -> ServingSettings:
        """Settings from ``$CIP_SERVING_SETTINGS`` (set by ``cip serve``)."""
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(
                f"${SETTINGS_ENV} is not set: start the service with `cip serve` "
                f"(or export the JSON printed by `cip serve --print-settings`)"
            )
        return cls._parse(raw, f"${SETTINGS_ENV}")

    @classmethod
    def from_file(cls, path: str | Path) -> ServingSettings:
        """Settings from a JSON file (``cip serve --print-settings`` output)."""
        try:
            raw = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the serving settings {path}: {exc.strerror}") from None
        return cls._parse(raw, str(path))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """The settings of a service process, found as the module docstring lists."""
        env = os.environ if environ is None else environ
        if env.get(SETTINGS_ENV):
            return cls._parse(env[SETTINGS_ENV], f"${SETTINGS_ENV}")
        if env.get(SETTINGS_FILE_ENV):
            return cls.from_file(env[SETTINGS_FILE_ENV])
        if env.get("CIP_WORKSPACE"):
            path = Path(env["CIP_WORKSPACE"]) / WORKSPACE_SETTINGS
            if not path.exists():
                raise ConfigError(
                    f"{path} does not exist: run `cip serve --check` in that workspace once"
                )
            return cls.from_file(path)
        raise ConfigError(
            f"set {SETTINGS_ENV} (done by `cip serve`), {SETTINGS_FILE_ENV} or CIP_WORKSPACE "
            f"to serve CIP"
        )

    @classmethod
    def _parse(cls, raw: str, where: str) -> ServingSettings:
        try:
            return cls.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"{where} is not valid serving settings: {exc}") from None
