"""End to end through the CLI on an orders-only store: train, score, export, registry."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from cip.pipelines.cli import main

from tests._models_support import load_orders, mlflow_db


def _run(capsys, *args: str) -> dict | list:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_score_promote_rollback(tmp_workspace, capsys) -> None:
    ws = tmp_workspace
    w = ["--workspace", str(ws.root)]
    assert mlflow_db(ws.root / "mlflow.db") == ws.mlflow_tracking_uri
    with ws.open_store() as store:
        orders = load_orders(store, n_customers=500, seed=1)
    common = ["--as-of", "2024-04-01", "--horizon-days", "60", "--snapshots", "4", "--json"]

    churn = _run(capsys, *w, "train", "churn", *common)
    assert churn["promoted"] and churn["version"] == "1"
    assert churn["holdout_as_of"] == "2024-04-01"  # a backtest: the data cover D + 60 days
    assert churn["fit_as_ofs"] == ["2023-11-03", "2023-12-03", "2024-01-02", "2024-02-01"]
    assert set(churn["baselines"]) == {"recency_rule", "logreg_rfm", "logreg_recency"}

    prop = _run(capsys, *w, "train", "propensity", *common, "--tune-trials", "3")
    assert prop["tuning"]["trials_new"] == 3 and (ws.models_dir / "optuna.db").exists()
    again = _run(capsys, *w, "train", "propensity", *common, "--tune-trials", "3")
    assert again["tuning"]["trials_new"] == 0  # the stored study is complete: resumed, not redone
    assert again["metrics"] == prop["metrics"] and not again["promoted"]

    listed = _run(capsys, *w, "models", "list", "--json")
    assert [(r["name"], r["version"], r["champion"]) for r in listed] == [
        ("cip-churn", "1", True),
        ("cip-propensity", "1", True),
        ("cip-propensity", "2", False),
    ]

    out = ws.root / "exports" / "scores.parquet"
    res = _run(capsys, *w, "score", "--as-of", "2024-06-24", "--out", str(out), "--json")
    assert res["models"] == {"cip-churn": "1", "cip-propensity": "1"}
    assert res["profiles_scored"] == orders.customer_id.nunique()
    # no CLV model: its columns are left null, and the command says so and why
    assert res["skipped"] == {"clv": "cip-clv has no champion: no version trained yet"}
    assert main([*w, "score", "--as-of", "2024-06-24"]) == 0  # idempotent
    said = " ".join(capsys.readouterr().out.split())
    assert "clv not scored (left null): cip-clv has no champion: no version trained yet" in said
    with ws.open_store() as store:
        scores = store.read_table("scores")
    assert len(scores) == res["profiles_scored"] and scores.unified_id.is_unique
    exported = pd.read_parquet(out)
    assert (exported.customer_id == exported.unified_id).all()  # no identity step: same id
    reasons = json.loads(exported.reasons.iloc[0])
    assert len(reasons) == 6 and "churn risk" in reasons[0] and "purchase" in reasons[-1]

    # consent: profiles that refused profiling are not scored
    refused = sorted(scores.unified_id)[:5]
    with ws.open_store() as store:
        store.load_arrow(
            "profiles",
            pd.DataFrame({"unified_id": refused, "consent_profiling": [False] * 5}),
            mode="replace",
        )
    res2 = _run(capsys, *w, "score", "--as-of", "2024-06-24", "--json")
    assert res2["excluded_no_consent"] == 5
    with ws.open_store() as store:
        ids = set(store.read_table("scores").unified_id)
    assert len(ids) == res["profiles_scored"] - 5 and not ids & set(refused)

    _run(capsys, *w, "models", "promote", "propensity", "2", "--json")
    back = _run(capsys, *w, "models", "rollback", "cip-propensity", "--json")
    assert back == {"name": "cip-propensity", "champion": "1"}
    assert main([*w, "models", "rollback", "churn"]) == 4  # nothing to roll back to
    assert "no previous champion" in capsys.readouterr().err
    assert main([*w, "train", "churn", "--as-of", "2024-13-01"]) == 2  # usage error


@pytest.mark.slow
def test_shared_training_sets_build_once_and_change_no_result(tmp_workspace, monkeypatch) -> None:
    import cip.models.training as training
    from cip.pipelines.workflows.modeling import train as run_train

    ws = tmp_workspace
    with ws.open_store() as store:
        load_orders(store, n_customers=300, seed=2)
    kw = {"horizon_days": 60, "n_snapshots": 3}
    alone = {k: run_train(ws, k, date(2024, 4, 1), **kw).metrics for k in ("churn", "propensity")}
    builds = []
    real = training._build_frame
    monkeypatch.setattr(training, "_build_frame", lambda *a: builds.append(1) or real(*a))
    with training.shared_training_sets():
        shared = {k: run_train(ws, k, date(2024, 4, 1), **kw).metrics for k in alone}
    assert len(builds) == 1 and shared == alone
    run_train(ws, "churn", date(2024, 4, 1), **kw)  # outside the block: built again
    assert len(builds) == 2 and training._SHARED is None
