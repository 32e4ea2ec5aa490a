"""Settings of the serving layer: the ``serving:`` section of ``cip.yaml`` plus resolved paths.

:class:`ServingOptions` is what a user writes in ``cip.yaml`` (``pipelines.config``
embeds it as the ``serving`` section). :class:`ServingSettings` adds the paths and
URLs the service needs, resolved by ``cip serve`` from the workspace, and travels
to the BentoML worker processes as JSON in the environment variable
``CIP_SERVING_SETTINGS`` (the service reads nothing else).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from cip.profiles.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["ServingOptions", "ServingSettings", "SETTINGS_ENV"]

#: Environment variable holding the JSON of :class:`ServingSettings`.
SETTINGS_ENV = "CIP_SERVING_SETTINGS"


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
    recommender_model: str = "cip-recommender"
    #: Rotate the HTTP events file after this many seconds (ingest reads rotated files).
    events_rotate_seconds: float = Field(60.0, ge=1)
    access_log: bool = True

    @model_validator(mode="after")
    def _redis(self) -> ServingOptions:
        if self.session_store == "redis" and not self.redis_url:
            raise ValueError("serving.session_store 'redis' needs serving.redis_url")
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
            **options,  # type: ignore[arg-type]
        )

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServingSettings:
        """Settings from ``$CIP_SERVING_SETTINGS`` (set by ``cip serve``)."""
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(
                f"${SETTINGS_ENV} is not set: start the service with `cip serve` "
                f"(or export the JSON printed by `cip serve --print-settings`)"
            )
        try:
            return cls.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"${SETTINGS_ENV} is not valid serving settings: {exc}") from None
