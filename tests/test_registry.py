"""The promotion gate and the champion alias history in a real MLflow store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from cip.models import registry
from cip.profiles.errors import NotFoundError


def test_gate_requires_beating_baselines_and_champion() -> None:
    d = registry.decide_promotion(0.80, None, {"recency": 0.70, "logreg": 0.75})
    assert d.promote and "no champion" in d.reason
    d = registry.decide_promotion(0.74, None, {"recency": 0.70, "logreg": 0.75})
    assert not d.promote and "logreg" in d.reason
    d = registry.decide_promotion(0.80, 0.81, {"recency": 0.70})
    assert not d.promote and "champion" in d.reason
    assert not registry.decide_promotion(0.80, 0.80, {}).promote  # ties are not promoted
    assert registry.decide_promotion(0.2, 0.3, {}, higher_is_better=False).promote


class _Const(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_champion_alias_history_and_rollback(tmp_path) -> None:
    registry.configure_mlflow(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "art"))
    registry.ensure_experiment("t", str(tmp_path / "art"))
    versions = []
    for _ in range(3):
        with mlflow.start_run() as run:
            mlflow.pyfunc.log_model(name="model", python_model=_Const())
        versions.append(registry.register_model(f"runs:/{run.info.run_id}/model", "cip-test"))
    assert registry.champion_version("cip-test") is None
    registry.set_champion("cip-test", versions[0])
    registry.set_champion("cip-test", versions[2])
    assert registry.champion_version("cip-test") == versions[2]
    assert registry.rollback("cip-test") == versions[0]
    assert registry.champion_version("cip-test") == versions[0]
    with pytest.raises(NotFoundError):
        registry.rollback("cip-test")
    rows = registry.list_models(["cip-test"])
    assert [r["champion"] for r in rows] == [True, False, False]
    with pytest.raises(NotFoundError):
        registry.set_champion("cip-test", "99")


def test_a_promotion_cut_off_by_a_crash_is_finished_not_repeated(tmp_path, monkeypatch) -> None:
    registry.configure_mlflow(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "art"))
    registry.ensure_experiment("t", str(tmp_path / "art"))

    def log() -> str:
        with mlflow.start_run() as run:
            mlflow.pyfunc.log_model(name="model", python_model=_Const())
        return f"runs:/{run.info.run_id}/model"

    assert registry.finish_pending_promotion("cip-none") is None  # not registered: a no-op
    v1 = registry.register_model(log(), "cip-crash", promote=True)
    assert registry.champion_version("cip-crash") == v1
    assert registry.finish_pending_promotion("cip-crash") is None  # nothing was cut off

    def killed(name: str, version: str) -> None:
        raise SystemExit("killed between registering and promoting")

    real = registry.set_champion
    monkeypatch.setattr(registry, "set_champion", killed)
    with pytest.raises(SystemExit):
        registry.register_model(log(), "cip-crash", promote=True)
    monkeypatch.setattr(registry, "set_champion", real)
    assert registry.champion_version("cip-crash") == v1  # the crash left v2 unpromoted
    assert registry.finish_pending_promotion("cip-crash") == "2"
    assert registry.champion_version("cip-crash") == "2"
    assert registry.rollback("cip-crash") == v1  # the history has both
    assert registry.finish_pending_promotion("cip-crash") is None  # done once, not again
    tags = mlflow.MlflowClient().get_model_version("cip-crash", "2").tags
    assert "cip.promotion_pending" not in tags

    # a pending version older than the champion is only cleared
    monkeypatch.setattr(registry, "set_champion", killed)
    with pytest.raises(SystemExit):
        registry.register_model(log(), "cip-crash", promote=True)
    monkeypatch.setattr(registry, "set_champion", real)
    v4 = registry.register_model(log(), "cip-crash", promote=True)
    assert registry.finish_pending_promotion("cip-crash") is None
    assert registry.champion_version("cip-crash") == v4
    assert (
        "cip.promotion_pending"
        not in mlflow.MlflowClient().get_model_version("cip-crash", "3").tags
    )
    # a version registered without promote is never promoted by the repair
    registry.register_model(log(), "cip-crash")
    assert registry.finish_pending_promotion("cip-crash") is None
    assert registry.champion_version("cip-crash") == v4


_INIT_CHILD = """
import sys
from cip.models.registry import configure_mlflow
configure_mlflow(sys.argv[1])
"""


def test_tracking_store_killed_while_created_is_rebuilt_whole(tmp_path: Path) -> None:
    """A process killed while MLflow builds the SQLite schema leaves no half-built store."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    killed_inside = 0
    for delay in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        child = subprocess.Popen([sys.executable, "-c", _INIT_CHILD, uri])
        time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed_inside += 1
        child.wait()
        if not db.exists():
            continue
        break  # a child finished: the store it left must be whole
    assert killed_inside >= 1  # at least one kill landed before the store was complete
    registry.configure_mlflow(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("after-kill")
    assert client.get_experiment(exp).name == "after-kill"
    assert client.search_registered_models() == []
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]  # no side files left
