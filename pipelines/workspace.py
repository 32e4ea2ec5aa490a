"""A workspace: one folder holding ``cip.yaml``, the store, the MLflow store and sources.

``cip init`` creates it; every command opens it through :class:`Workspace`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cip.pipelines.config import CIPConfig, load_config
from cip.profiles.errors import ConfigError, NotFoundError
from cip.profiles.store import Store, open_store

__all__ = ["Workspace", "DEFAULT_WORKSPACE", "resolve_workspace"]

DEFAULT_WORKSPACE = "cip-workspace"
CONFIG_NAME = "cip.yaml"

_DEFAULT_CONFIG = """\
# CIP workspace configuration. See the README for every key.
version: 1
engine: store            # or spark: every table as Parquet under spark.warehouse, run by Spark
store:
  backend: duckdb        # or postgres (then set url: postgresql://...)
  path: cip.duckdb
# spark:                 # used with engine: spark (needs pyspark and Java 17)
#   master: local[*]     # or spark://host:7077, yarn, k8s://...
#   warehouse: spark-warehouse   # relative to the workspace; shared storage on a cluster
#   conf: {}             # extra Spark settings, e.g. spark.executor.memory: 4g
sources: []              # `cip simulate` registers simulated sources here
"""


def resolve_workspace(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$CIP_WORKSPACE``, else ``./cip-workspace``."""
    return Path(path or os.environ.get("CIP_WORKSPACE") or DEFAULT_WORKSPACE).resolve()


@dataclass
class Workspace:
    """An opened workspace folder."""

    root: Path
    config: CIPConfig

    @classmethod
    def init(
        cls,
        root: str | os.PathLike[str],
        *,
        config_file: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> Workspace:
        """Create a workspace folder (idempotent unless ``force`` replaces the config)."""
        root = Path(root).resolve()
        cfg_path = root / CONFIG_NAME
        if cfg_path.exists() and config_file is not None and not force:
            raise ConfigError(f"{cfg_path} already exists; use --force to replace its config")
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("sources", "logs", "exports", "models", "mlartifacts"):
            (root / sub).mkdir(exist_ok=True)
        if config_file is not None:
            src = Path(config_file)
            if not src.is_file():
                raise ConfigError(f"config file not found: {src}")
            text = src.read_text()
            # relative data paths keep pointing where the original config meant
            load_config(src)  # validate before copying
            cfg_path.write_text(_rebase_paths(text, src.resolve().parent, root))
        elif not cfg_path.exists():
            cfg_path.write_text(_DEFAULT_CONFIG)
        ws = cls.open(root)
        ws.open_store().close()
        return ws

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        r = resolve_workspace(root)
        cfg_path = r / CONFIG_NAME
        if not cfg_path.is_file():
            raise NotFoundError(f"no workspace at {r} (no {CONFIG_NAME}); run `cip init {r}` first")
        return cls(r, load_config(cfg_path))

    # -- paths ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def path(self, p: str) -> Path:
        """A config path resolved against the workspace folder."""
        q = Path(p)
        return q if q.is_absolute() else (self.root / q)

    @property
    def store_path(self) -> Path:
        return self.path(self.config.store.path)

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.config.mlflow.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return str(self.path(self.config.mlflow.artifact_location or "mlartifacts"))

    @property
    def spark_warehouse(self) -> Path:
        """The Parquet warehouse of ``engine: spark``."""
        return self.path(self.config.spark.warehouse)

    def open_store(self, *, read_only: bool = False) -> Store:
        """The workspace's store: DuckDB or PostgreSQL, or Spark with ``engine: spark``."""
        if self.config.engine == "spark":
            sp = self.config.spark
            return open_store(
                "spark",
                path=self.spark_warehouse,
                read_only=read_only,
                spark={"master": sp.master, "conf": sp.conf},
            )
        st = self.config.store
        return open_store(
            st.backend,
            path=self.store_path,
            url=st.url,
            schema=st.db_schema,
            read_only=read_only,
            memory_limit=st.memory_limit,
        )

    def reload(self) -> Workspace:
        self.config = load_config(self.config_path)
        return self

    def remove(self) -> None:  # used by tests and `cip demo --fresh`
        shutil.rmtree(self.root)


def _rebase_paths(text: str, src_dir: Path, dest_dir: Path) -> str:
    """Make relative source ``path:`` values absolute against the config's original folder.

    Only lines inside the top-level ``sources:`` block are touched; comments and
    ``${VAR}`` references are kept as written.
    """
    import re

    out, in_sources = [], False
    pat = re.compile(r"^(\s*-?\s*)path:\s*(\S.*)$")
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            in_sources = line.startswith("sources:")
        m = pat.match(line) if in_sources else None
        if m and src_dir != dest_dir:
            value = m.group(2).strip().strip("'\"")
            if not value.startswith(("/", "$", "~")):
                line = f"{m.group(1)}path: {(src_dir / value).as_posix()}"
        out.append(line)
    return "\n".join(out) + "\n"
