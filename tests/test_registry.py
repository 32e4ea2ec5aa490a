"""The promotion gate and the champion alias history in a real MLflow store."""

from __future__ import annotations

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
