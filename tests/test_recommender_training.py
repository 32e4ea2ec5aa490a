"""Training end to end: store -> MLflow run -> registry alias, through the CLI and the pyfunc."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cip.pipelines.cli import main

from tests.test_recommender_store import _frame
from tests.test_recommender_tuning import clustered


def _load_lines(ws) -> None:
    df = clustered(n_users=90, n_items=30, per_user=10)
    rows = [
        {
            "source": "shop",
            "record_id": f"r{i}",
            "order_id": f"o{i}",
            "ts": r.ts,
            "customer_id": r.user_id,
            "item_id": r.item_id,
            "quantity": 1.0,
            "unit_price": 1.0,
            "status": "completed",
        }
        for i, r in enumerate(df.itertuples())
    ]
    with ws.open_store() as store:
        store.load_arrow("order_lines", _frame("order_lines", rows))


@pytest.mark.slow
def test_train_recommender_cli_registers_and_promotes(tmp_workspace, capsys):
    import mlflow

    ws = tmp_workspace
    _load_lines(ws)
    args = ["--workspace", str(ws.root), "train-recommender", "--algorithm", "itemknn", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["promoted"] is True and first["version"] == "1"
    m = first["metrics"]
    assert m["ndcg_at_10"] > m["popular_ndcg_at_10"] and "champion_ndcg_at_10" not in m

    # popularity cannot beat itself: registered as v2, champion stays v1
    assert main(args[:3] + ["--algorithm", "popular", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["promoted"] is False and second["version"] == "2"
    assert second["metrics"]["champion_ndcg_at_10"] == m["ndcg_at_10"]

    mlflow.set_tracking_uri(ws.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("cip-recommender", "champion").version) == "1"
    run = client.get_run(first["run_id"])
    assert run.data.params["algorithm"] == "itemknn"
    assert float(run.data.metrics["ndcg_lift_vs_popular"]) > 1.0
    assert run.data.tags["promotion.promoted"] == "true"
    second_run = client.get_run(second["run_id"]).data.tags
    assert "does not beat" in second_run["promotion.reason"]

    model = mlflow.pyfunc.load_model("models:/cip-recommender@champion")
    recs = model.predict(pd.DataFrame({"user_id": ["u0", "nobody"], "n": [3, 3]}))
    assert list(recs.columns)[:4] == ["user_id", "item_id", "score", "rank"] and len(recs) == 6
    local = Path(mlflow.artifacts.download_artifacts("models:/cip-recommender@champion"))
    files = {p.name for p in local.rglob("*") if p.is_file()}
    assert {"arrays.npz", "model.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle")) for f in files)


def test_train_recommender_errors(tmp_workspace, capsys):
    root = str(tmp_workspace.root)
    assert main(["--workspace", root, "train-recommender"]) == 3  # DataError
    assert "no interactions" in capsys.readouterr().err
    assert main(["--workspace", root, "train-recommender", "--algorithm", "svd"]) == 2  # usage
    assert "--algorithm" in capsys.readouterr().err


def test_a_model_that_does_not_converge_is_a_one_line_error(tmp_workspace, capsys, monkeypatch):
    import cip.models.recommender.tracking as tracking
    from implicit.recommender_base import ModelFitError

    def diverge(*args, **kwargs):
        raise ModelFitError("NaN encountered in factors")

    monkeypatch.setattr(tracking, "train_recommender_run", diverge)
    _load_lines(tmp_workspace)
    root = str(tmp_workspace.root)
    assert main(["--workspace", root, "train", "recommender", "--algorithm", "bpr"]) == 3
    err = capsys.readouterr().err.strip()
    assert "bpr did not converge" in err and "nothing was registered" in err and "\n" not in err
