"""CLV through the product: `cip train clv`, the registry, `cip score` with the CLV columns, consent.

One small orders-only shop (300 customers, no identity step) and one CLV training run are
shared by the module; the CLV champion is the only champion, so scoring also shows that
`cip score` uses whatever champions exist.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from cip.models.clv import clv_score_frame, load_clv_champion, predict_clv
from cip.pipelines.cli import main

from tests._models_support import load_orders, mlflow_db

AS_OF, SCORE_AT = "2024-04-01", "2024-06-24"


def _run(capsys, *args: str) -> dict | list:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workspace, the `cip train clv --json` output)."""
    from cip.pipelines.workspace import Workspace

    ws = Workspace.init(tmp_path_factory.mktemp("clv") / "ws")
    mlflow_db(ws.root / "mlflow.db")
    with ws.open_store() as store:
        load_orders(store, n_customers=300, seed=1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            ["-w", str(ws.root), "train", "clv", "--as-of", AS_OF, "--horizon-days", "60",
             "--snapshots", "3", "--json"]
        )  # fmt: skip
    assert code == 0
    return ws, json.loads(buf.getvalue())


def test_train_clv_reports_the_winner_and_registers_cip_clv(trained, capsys) -> None:
    ws, r = trained
    assert set(r["candidates"]) == {"two_part", "btyd", "last_period"}
    assert r["winner"] in r["candidates"] and r["promoted"] and r["version"] == "1"
    assert r["metrics"] == r["candidates"][r["winner"]]
    gini = {k: m["normalized_gini"] for k, m in r["candidates"].items()}
    if r["winner"] == "two_part":  # the gate: the LightGBM must beat both baselines
        assert gini["two_part"] > max(gini["btyd"], gini["last_period"])
    else:
        assert gini[r["winner"]] == max(gini["btyd"], gini["last_period"])
    assert r["holdout_as_of"] == AS_OF and r["champion_before"] is None
    listed = _run(capsys, "-w", str(ws.root), "models", "list", "--json")
    assert [(v["name"], v["version"], v["champion"]) for v in listed] == [("cip-clv", "1", True)]
    assert listed[0]["tags"]["kind"] == r["winner"] and listed[0]["tags"]["horizon_days"] == "60"
    capsys.readouterr()
    assert main(["-w", str(ws.root), "models", "list"]) == 0
    assert "Gini" in capsys.readouterr().out


def test_score_with_only_a_clv_champion_fills_the_clv_columns(trained, capsys) -> None:
    ws, _ = trained
    w = ["-w", str(ws.root)]
    with ws.open_store() as store:  # a scores table written before the CLV columns existed
        store.execute(
            "CREATE TABLE scores (unified_id VARCHAR, as_of TIMESTAMP, model VARCHAR, "
            "model_version VARCHAR, churn_probability DOUBLE, purchase_probability DOUBLE, "
            "reasons VARCHAR, rfm_segment VARCHAR)"
        )
        store.execute(
            "INSERT INTO scores VALUES ('old', TIMESTAMP '2024-01-01', 'cip-churn', '1', 0.5, "
            "NULL, '[]', 'Lost')"
        )
        store.load_arrow(  # five persons objected to profiling
            "profiles",
            pd.DataFrame(
                {"unified_id": [f"c{i:05d}" for i in range(5)], "consent_profiling": False}
            ),
            mode="replace",
        )
    out = ws.root / "exports" / "scores.csv"
    res = _run(capsys, *w, "score", "--as-of", SCORE_AT, "--out", str(out), "--json")
    assert res["models"] == {"cip-clv": "1"} and res["clv_horizon_days"] == 60
    assert res["excluded_no_consent"] == 5 and res["profiles_scored"] == 295
    with ws.open_store() as store:
        s = store.sql("SELECT * FROM scores WHERE as_of = ?", [pd.Timestamp(SCORE_AT)])
        old = store.sql("SELECT * FROM scores WHERE unified_id = 'old'")
        frame = clv_score_frame(store, SCORE_AT, 60)
    assert len(old) == 1 and old["churn_probability"].iloc[0] == 0.5 and old["clv"].isna().all()
    assert len(s) == 295 and not set(s.unified_id) & {f"c{i:05d}" for i in range(5)}
    assert s["churn_probability"].isna().all() and s["purchase_probability"].isna().all()
    assert (s["model"] == "cip-clv").all() and (s["clv_model_version"] == "1").all()
    assert s["clv"].notna().all() and (s["clv"] >= 0).all()
    alive = s["p_alive"].dropna()  # null: no completed order before as_of
    assert len(alive) > 0.9 * len(s) and alive.between(0, 1).all()
    buyers = s["next_order_date"].notna()
    assert buyers.mean() > 0.9 and (pd.to_datetime(s["next_order_date"][buyers]) >= SCORE_AT).all()
    # the stored values are the champion's predictions for the same persons
    version, model = load_clv_champion(ws.mlflow_tracking_uri)
    want = predict_clv(model, frame, SCORE_AT, version).set_index("unified_id")
    got = s.set_index("unified_id")
    np.testing.assert_allclose(got["clv"], want.loc[got.index, "clv"], rtol=1e-9)
    np.testing.assert_allclose(got["p_alive"], want.loc[got.index, "p_alive"], rtol=1e-9)
    exported = pd.read_csv(out)
    assert {"clv", "expected_orders", "p_alive", "next_order_date"} <= set(exported.columns)
    assert len(exported) == 295


def test_models_clv_config(tmp_path) -> None:
    from cip.pipelines.config import load_config
    from cip.profiles.errors import ConfigError

    p = tmp_path / "cip.yaml"
    p.write_text("models:\n  clv: false\n")
    assert load_config(p).models.clv.train is False
    p.write_text("models:\n  clv: {horizon_days: 365, tune_trials: 5}\n")
    clv = load_config(p).models.clv
    assert (clv.train, clv.horizon_days, clv.tune_trials) == (True, 365, 5)
    p.write_text("models:\n  clv: {horizon_days: 0}\n")
    with pytest.raises(ConfigError, match="horizon_days"):
        load_config(p)
    p.write_text("models:\n  clv: {horizon: 365}\n")
    with pytest.raises(ConfigError, match="horizon"):
        load_config(p)
