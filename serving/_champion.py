"""The champion recommender: its registry version, loaded from MLflow and cached on disk.

The registered model ``cip-recommender`` (alias ``champion``) is an MLflow
pyfunc whose artifacts hold the recommender's saved folder (``model.json`` +
``arrays.npz``). The service downloads the version's artifacts once into
``model_cache_dir/<name>/<version>`` (atomically: a temporary folder renamed
into place, so concurrent workers never see half a download) and loads the
folder with :func:`models.load_recommender`; no pickle is ever read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cip.profiles.errors import CIPError, NotFoundError
from cip.profiles.privacy import hash_identifier

__all__ = ["Champion", "load_champion", "find_model_dir"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Champion:
    """A loaded champion (``version`` None and ``model`` None: no champion yet)."""

    name: str
    version: str | None
    model: Any = None
    dropped: frozenset[str] = frozenset()
    _hashes: dict[str, Any] = field(default_factory=dict, repr=False)

    def user_hashes(self, salt: bytes) -> dict[str, str]:
        """``hash(user id) -> user id`` for the model's users (computed once)."""
        if "index" not in self._hashes:
            users = getattr(self.model, "user_ids_", [])
            self._hashes["index"] = {
                hash_identifier(kind, str(u).strip(), salt): str(u)
                for u in users
                for kind in ("unified_id", "customer_id")
            }
        return self._hashes["index"]

    def replaced(self, model: Any, dropped: frozenset[str]) -> Champion:
        return Champion(self.name, self.version, model, dropped, self._hashes)


def find_model_dir(root: Path) -> Path:
    """The saved recommender folder inside downloaded artifacts."""
    for meta in sorted(root.rglob("model.json")):
        try:
            if json.loads(meta.read_text()).get("format") == "cip-recommender":
                return meta.parent
        except (ValueError, OSError):
            continue
    raise NotFoundError(f"no saved CIP recommender (model.json) inside {root}")


def _default_loader(path: Path) -> Any:
    from cip.models.recommender import load_recommender

    return load_recommender(path)


def load_champion(
    name: str,
    tracking_uri: str | None,
    cache_dir: str,
    current: Champion | None,
    loader: Callable[[Path], Any] | None = None,
) -> Champion:
    """The registry's champion of ``name``; ``current`` is reused when the version is unchanged.

    Raises:
        CIPError: the registry or the artifacts cannot be read (the caller keeps
            serving the current champion).
    """
    from cip.models.registry import champion_version, configure_mlflow

    try:
        if tracking_uri:
            configure_mlflow(tracking_uri)
        version = champion_version(name)
    except Exception as exc:  # MLflow raises many kinds; none may stop the service
        raise CIPError(f"cannot read the model registry: {type(exc).__name__}: {exc}") from None
    if current is not None and current.version == version:
        return current
    if version is None:
        return Champion(name, None)
    target = Path(cache_dir) / name / str(version)
    if not target.is_dir():
        _download(name, version, target)
    try:
        model = (loader or _default_loader)(find_model_dir(target))
    except CIPError:
        raise
    except Exception as exc:  # a model we cannot read must not stop the service
        raise CIPError(
            f"cannot load {name} version {version}: {type(exc).__name__}: {exc}"
        ) from None
    log.info("loaded %s version %s", name, version)
    return Champion(name, str(version), model)


def _download(name: str, version: str, target: Path) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    tmp = target.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp)
        )
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not "another worker was faster"
                raise
    except Exception as exc:
        raise CIPError(
            f"cannot download {name} version {version}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
