"""MLflow tracking and registry helpers shared by every model family.

Models are promoted with the registry *alias* ``champion`` (registry stages are
deprecated in MLflow 3). The history of champions is kept as the registered
model's tag ``champion_history`` (a JSON list of versions), so ``rollback``
restores the previous champion exactly.

The promotion gate (:func:`decide_promotion`) is pure: the caller evaluates the
candidate, the current champion and the baselines on the *same* holdout and
passes the numbers in; the decision and the numbers are logged by the caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cip.profiles.contracts import DEFAULT_MIN_AUC
from cip.profiles.errors import NotFoundError

__all__ = [
    "CHAMPION",
    "PromotionDecision",
    "configure_mlflow",
    "ensure_experiment",
    "register_model",
    "decide_promotion",
    "skill_gate",
    "DEFAULT_MIN_AUC",
    "set_champion",
    "finish_pending_promotion",
    "rollback",
    "champion_version",
    "champion_uri",
    "no_champion_reason",
    "list_models",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"
_HISTORY_TAG = "champion_history"
#: Version tag set in the same registry write as the version when the gate promoted it, and
#: removed once the alias is set: a version still carrying it was cut off by a crash.
_PENDING_TAG = "cip.promotion_pending"


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_sqlite_store(tracking_uri: str) -> None:
    """Create a missing SQLite tracking store whole, or not at all.

    MLflow builds its schema with a long chain of migrations the first time a
    store is used; a process killed in the middle leaves a half-built file that
    every later run fails on ("table ... already exists"). The schema is built
    in a side file and linked into place only when complete (``os.link`` fails
    if another process got there first, whose complete store is then kept).
    """
    import os

    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    path = Path(tracking_uri[len(prefix) :])
    if path.exists() or str(path) in ("", ":memory:"):
        return
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.init-*"):  # left by killed processes
        pid = stale.name.rsplit("-", 1)[-1].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    side = path.with_name(f".{path.name}.init-{os.getpid()}")
    side.unlink(missing_ok=True)
    try:
        RegistryStore(f"{prefix}{side}")  # runs every migration of the tracking schema
        with contextlib.suppress(FileExistsError):  # another process built it first
            os.link(side, path)
    finally:
        side.unlink(missing_ok=True)
        for extra in side.parent.glob(f"{side.name}-*"):  # SQLite journal files
            extra.unlink(missing_ok=True)


def configure_mlflow(tracking_uri: str, artifact_location: str | None = None) -> None:
    """Point MLflow's tracking and registry at the workspace stores."""
    import mlflow

    _ensure_sqlite_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if artifact_location:
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def ensure_experiment(name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (with its artifact folder) when missing."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        mlflow.set_experiment(name)
        return exp.experiment_id
    loc = None
    if artifact_location:
        p = Path(artifact_location) / name
        p.mkdir(parents=True, exist_ok=True)
        loc = p.resolve().as_uri()
    exp_id = mlflow.create_experiment(name, artifact_location=loc)
    mlflow.set_experiment(name)
    return exp_id


def register_model(
    model_uri: str, name: str, tags: dict[str, str] | None = None, *, promote: bool = False
) -> str:
    """Register ``model_uri`` (e.g. ``runs:/<id>/model``) as a new version of ``name``.

    With ``promote=True`` the new version is made champion. The intent is written with the
    version itself (one registry write), so a process killed between registering and promoting
    leaves a version that :func:`finish_pending_promotion` completes on the next run instead of
    training and registering the same model again.
    """
    import mlflow

    tags = dict(tags or {})
    if promote:
        tags[_PENDING_TAG] = "true"
    mv = mlflow.register_model(model_uri, name, tags=tags)
    version = str(mv.version)
    if promote:
        set_champion(name, version)
    return version


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the promotion gate, with the numbers it was based on."""

    promote: bool
    reason: str
    candidate: float
    champion: float | None
    best_baseline: float | None

    def as_tags(self) -> dict[str, str]:
        return {
            "promotion.promoted": str(self.promote).lower(),
            "promotion.reason": self.reason,
        }


def skill_gate(candidate: str, candidates: Mapping[str, float], min_auc: float) -> str | None:
    """``None`` when ``candidates[candidate]`` (holdout ROC AUC) is above ``min_auc``, else why not.

    ``candidates`` are every registrable model's holdout ROC AUC. When none is above
    ``min_auc`` the reason names the best ("not promoted: best holdout AUC 0.50 <= 0.55
    (models.min_auc)"), else the chosen candidate's. A NaN AUC (one class in the holdout)
    has no skill either.
    """
    auc = candidates[candidate]
    if auc > min_auc:  # False for NaN
        return None
    best = max((v for v in candidates.values() if v == v), default=float("nan"))
    if not best > min_auc:
        return f"not promoted: best holdout AUC {best:.2f} <= {min_auc:.2f} (models.min_auc)"
    return f"not promoted: {candidate} holdout AUC {auc:.2f} <= {min_auc:.2f} (models.min_auc)"


def decide_promotion(
    candidate: float,
    champion: float | None,
    baselines: dict[str, float],
    *,
    min_delta: float = 0.0,
    higher_is_better: bool = True,
) -> PromotionDecision:
    """Promote only if the candidate beats every baseline and the current champion.

    All numbers must come from the same holdout. ``min_delta`` is the margin the
    candidate must exceed them by (ties are not promoted).
    """
    sign = 1.0 if higher_is_better else -1.0
    best_name, best = None, None
    for k, v in baselines.items():
        if best is None or sign * v > sign * best:
            best_name, best = k, v
    if best is not None and not sign * (candidate - best) > min_delta:
        return PromotionDecision(
            False,
            f"candidate {candidate:.4f} does not beat baseline {best_name} {best:.4f}",
            candidate,
            champion,
            best,
        )
    if champion is not None and not sign * (candidate - champion) > min_delta:
        return PromotionDecision(
            False,
            f"candidate {candidate:.4f} does not beat the champion {champion:.4f}",
            candidate,
            champion,
            best,
        )
    what = "no champion yet" if champion is None else f"beats champion {champion:.4f}"
    return PromotionDecision(True, f"candidate {candidate:.4f} {what}", candidate, champion, best)


def _history(name: str) -> list[str]:
    rm = _client().get_registered_model(name)
    return json.loads(rm.tags.get(_HISTORY_TAG, "[]"))


def _versions(name: str) -> list[str]:
    return [str(v.version) for v in _client().search_model_versions(f"name='{name}'")]


def set_champion(name: str, version: str) -> None:
    """Give ``version`` the ``champion`` alias and record it in the history."""
    version = str(version)
    if version not in _versions(name):
        raise NotFoundError(f"model {name!r} has no version {version}")
    client = _client()
    client.set_registered_model_alias(name, CHAMPION, version)
    hist = _history(name)
    if not hist or hist[-1] != version:
        hist.append(version)
    client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(hist))
    if _PENDING_TAG in (client.get_model_version(name, version).tags or {}):
        client.delete_model_version_tag(name, version, _PENDING_TAG)
    log.info("model %s: version %s is now the champion", name, version)


def finish_pending_promotion(name: str) -> str | None:
    """Complete a promotion that a crash cut off; the version made champion, or None.

    A version registered with ``promote=True`` whose process died before the alias was set
    still carries the pending tag. The newest such version becomes champion unless a newer
    version already is; older pending tags are cleared. A no-op when ``name`` is not
    registered yet.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        pending = sorted(
            int(v.version)
            for v in client.search_model_versions(f"name='{name}'")
            if (v.tags or {}).get(_PENDING_TAG) == "true"
        )
    except MlflowException:
        return None
    if not pending:
        return None
    current = champion_version(name)
    newest = str(pending[-1])
    done = None
    if current is None or int(current) <= pending[-1]:  # <=: the alias may be set already
        log.warning(
            "model %s: finishing the promotion of version %s cut off by a crash", name, newest
        )
        set_champion(name, newest)
        done = newest
    for v in pending:
        with contextlib.suppress(MlflowException):
            client.delete_model_version_tag(name, str(v), _PENDING_TAG)
    return done


def champion_version(name: str) -> str | None:
    """The version holding the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def no_champion_reason(name: str) -> str:
    """Why ``name`` has no champion, in one line (for ``cip score`` to say what it skipped).

    Names the latest registered version and why it was not promoted (its
    ``promotion_reason`` tag, e.g. "not promoted: best holdout AUC 0.50 <= 0.55
    (models.min_auc)"), or says that no version was ever registered.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = _client().search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    if not versions:
        return f"{name} has no champion: no version trained yet"
    latest = max(versions, key=lambda v: int(v.version))
    why = latest.tags.get("promotion_reason", "not promoted")
    return f"{name} has no champion: version {latest.version} {why}"


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


def rollback(name: str) -> str:
    """Restore the previous champion; returns its version."""
    from mlflow.exceptions import MlflowException

    try:
        hist = _history(name)
    except MlflowException:
        raise NotFoundError(f"no registered model named {name!r}") from None
    current = champion_version(name)
    if current is not None and hist and hist[-1] == current:
        hist = hist[:-1]
    if not hist:
        raise NotFoundError(f"model {name!r} has no previous champion to roll back to")
    previous = hist[-1]
    client = _client()
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(hist))
    log.info("model %s: rolled back from %s to %s", name, current, previous)
    return previous


def list_models(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Every version of the registered models (optionally only ``names``)."""
    client = _client()
    rows: list[dict[str, Any]] = []
    for rm in client.search_registered_models():
        if names and rm.name not in names:
            continue
        champ = champion_version(rm.name)
        for v in client.search_model_versions(f"name='{rm.name}'"):
            rows.append(
                {
                    "name": rm.name,
                    "version": str(v.version),
                    "champion": str(v.version) == champ,
                    "run_id": v.run_id,
                    "created": v.creation_timestamp,
                    "tags": dict(v.tags),
                }
            )
    rows.sort(key=lambda r: (r["name"], int(r["version"])))
    return rows
