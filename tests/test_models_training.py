"""Training runs on a synthetic frame: snapshot plan, MLflow logging, promotion gate, rollback."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from cip.models import plan_snapshots, registry, train_on_frame
from cip.models._synthetic import synthetic_training_frame
from cip.models.tuning import sqlite_storage
from cip.profiles.errors import ConfigError, DataError

from tests._models_support import mlflow_db

D = date(2024, 6, 1)
AS_OFS = [D - timedelta(days=30 * k) for k in range(7, -1, -1)]


def test_plan_backtest_when_the_future_is_in_the_data() -> None:
    plan = plan_snapshots(D, 90, every_days=30, n_snapshots=3, data_end=D + timedelta(days=90))
    assert plan.mode == "as_of"
    assert plan.holdout_as_of == D
    assert plan.fit_as_ofs == [date(2024, 1, 3), date(2024, 2, 2), date(2024, 3, 3)]
    assert plan.all_as_ofs[-1] == D


def test_plan_latest_labelled_purges_overlapping_snapshots() -> None:
    plan = plan_snapshots(D, 90, every_days=30, n_snapshots=6, data_end=D)
    assert plan.mode == "latest_labelled"
    assert plan.holdout_as_of == date(2024, 3, 3)  # D - 90
    # snapshots within 90 days of the holdout overlap its label window: left out
    assert plan.fit_as_ofs == [date(2023, 10, 5), date(2023, 11, 4), date(2023, 12, 4)]
    assert all(s + timedelta(days=90) <= plan.holdout_as_of for s in plan.fit_as_ofs)
    with pytest.raises(ConfigError, match="as_of"):
        plan_snapshots(D, 90, data_end=D, holdout="as_of")
    with pytest.raises(ConfigError, match="snapshots"):
        plan_snapshots(D, 90, n_snapshots=3, data_end=D)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = synthetic_training_frame(1500, AS_OFS, seed=5)
    df.attrs["horizon_days"] = 30
    return df


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


def _train(frame: pd.DataFrame, d: Path, kind: str = "churn", **kw):
    db = d / "mlflow.db"
    return train_on_frame(
        frame,
        kind,
        AS_OFS[-1],
        tracking_uri=f"sqlite:///{db}" if db.exists() else mlflow_db(db),
        artifact_location=str(d / "artifacts"),
        lineage={"feature_set_version": "synthetic-1", "data_fingerprint": "abc"},
        **kw,
    )


@pytest.mark.slow
def test_gate_promotes_better_keeps_worse_out_and_rolls_back(frame, mlflow_dir) -> None:
    first = _train(frame, mlflow_dir, seed=0)
    assert first.promoted and first.decision.endswith("no champion yet")
    assert first.metrics["roc_auc"] > max(b["roc_auc"] for b in first.baselines.values())
    assert registry.champion_version("cip-churn") == first.version

    # a deliberately worse model: one stump
    worse = _train(frame, mlflow_dir, seed=0, model_params={"n_estimators": 1, "num_leaves": 2})
    assert not worse.promoted
    assert worse.champion_before == first.version
    assert worse.champion_metrics["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert registry.champion_version("cip-churn") == first.version
    run = mlflow.get_run(worse.run_id)
    assert run.data.tags["promotion.promoted"] == "false"
    assert "does not beat" in run.data.tags["promotion.reason"]
    assert run.data.metrics["champion.roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert run.data.metrics["promotion.promoted"] == 0.0

    # same seed and data: the same metrics, and a tie is not a promotion
    again = _train(frame, mlflow_dir, seed=0)
    assert again.metrics == first.metrics and not again.promoted

    registry.set_champion("cip-churn", worse.version)  # `cip models promote` by hand
    assert registry.rollback("cip-churn") == first.version
    assert registry.champion_version("cip-churn") == first.version

    # a feature set without a column the champion needs: not comparable, not promoted
    narrow = _train(frame.drop(columns=["cart_adds_30d"]), mlflow_dir, seed=0)
    assert not narrow.promoted and "not comparable" in narrow.decision
    assert registry.champion_version("cip-churn") == first.version


@pytest.mark.slow
def test_run_logs_plots_lineage_and_a_model_without_ids(frame, mlflow_dir) -> None:
    res = _train(frame, mlflow_dir, kind="propensity", seed=1)
    client = mlflow.MlflowClient()
    run = client.get_run(res.run_id)
    names = {a.path for a in client.list_artifacts(res.run_id, "plots")}
    assert names == {
        f"plots/{n}.png"
        for n in ("roc", "pr", "calibration", "cumulative_gain", "feature_importance")
    }
    tags = run.data.tags
    assert tags["lineage.feature_set_version"] == "synthetic-1"
    assert tags["lineage.data_fingerprint"] == "abc"
    assert tags["lineage.holdout_as_of"] == str(AS_OFS[-1])
    assert tags["lineage.fit_as_ofs"].split(",")[0] == str(AS_OFS[0])
    m = run.data.metrics
    for k in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_top10", "capture_top10", "ece"):
        assert f"holdout.{k}" in m
    assert m["gain_over.logreg_rfm.roc_auc"] == pytest.approx(
        m["holdout.roc_auc"] - m["baseline.logreg_rfm.roc_auc"]
    )
    assert "baseline.recency_rule.roc_auc" in m
    # the registered model: calibrated probabilities, the feature list, no identifiers
    pm = mlflow.pyfunc.load_model(f"models:/cip-propensity/{res.version}")
    names = pm.unwrap_python_model().feature_names
    hold = frame[frame.as_of == pd.Timestamp(AS_OFS[-1])]
    out = pm.predict(hold[names].head(4))
    assert list(out.columns) == ["probability"] and out["probability"].between(0, 1).all()
    example = pm.metadata.load_input_example(pm.metadata.artifact_path or "")
    assert example is None or "unified_id" not in example.columns
    local = Path(mlflow.artifacts.download_artifacts(f"models:/cip-propensity/{res.version}"))
    text = " ".join(p.read_text(errors="ignore") for p in local.rglob("*") if p.is_file())
    assert "u000" not in text  # synthetic unified ids look like u0000123
    assert "unified_id" not in json.loads((local / "input_example.json").read_text())["columns"]


def test_tuning_study_resumes_in_sqlite(frame, tmp_path) -> None:
    from cip.models.estimators import PropensityModel
    from cip.models.tuning import tune

    fit = frame[frame.as_of < frame.as_of.max()]
    X = fit.drop(columns=["unified_id", "as_of", "rfm_segment", "churn", "active", "purchase",
                          "future_spend"]).astype(float)  # fmt: skip
    storage = sqlite_storage(str(tmp_path / "optuna.db"))

    def make(**p):
        return PropensityModel(n_estimators=60, random_state=0, purge_days=30, **p)

    r1 = tune(
        make, X, fit.purchase.to_numpy(), fit.as_of, n_trials=3, storage=storage, study_name="s"
    )
    assert r1.n_new == 3
    r2 = tune(
        make, X, fit.purchase.to_numpy(), fit.as_of, n_trials=5, storage=storage, study_name="s"
    )
    assert r2.n_new == 2 and r2.n_complete + r2.n_pruned == 5
    assert r2.best_value >= r1.best_value
    fresh = tune(make, X, fit.purchase.to_numpy(), fit.as_of, n_trials=3, study_name="t")
    assert fresh.best_params == r1.best_params  # same seed, same data, same proposals
    timed = tune(make, X, fit.purchase.to_numpy(), fit.as_of, timeout_minutes=0.01)
    assert timed.n_new >= 1  # a time budget stops after the trial that crosses it
    with pytest.raises(ValueError, match="n_trials or timeout"):
        tune(make, X, fit.purchase.to_numpy(), fit.as_of)


def test_holdout_without_both_outcomes_is_a_clear_error(frame, tmp_path) -> None:
    bad = frame.copy()
    bad.loc[bad.as_of == bad.as_of.max(), "purchase"] = 0
    with pytest.raises(DataError, match="holdout"):
        _train(bad, tmp_path, kind="propensity")
    with pytest.raises(ConfigError, match="kind"):
        _train(frame, tmp_path, kind="clv")


def test_a_losing_lightgbm_leaves_the_best_baseline_as_a_scoreable_champion(
    frame, tmp_path
) -> None:
    from cip.models.scoring import load_champions, score_frame

    # a deliberately weak LightGBM (one stump): a logistic baseline must win and be promoted
    res = _train(frame, tmp_path, seed=0, model_params={"n_estimators": 1, "num_leaves": 2})
    assert res.winner in ("logreg_rfm", "logreg_recency") and res.promoted
    aucs = {k: m["roc_auc"] for k, m in res.candidates.items()}
    assert res.metrics["roc_auc"] == max(aucs.values()) == aucs[res.winner]
    others = [b["roc_auc"] for k, b in res.baselines.items() if k != res.winner]
    assert res.margin == pytest.approx(res.metrics["roc_auc"] - max([*others, aucs["lightgbm"]]))
    assert res.winner in res.decision and "lightgbm" in res.decision
    assert registry.champion_version("cip-churn") == res.version
    run = mlflow.get_run(res.run_id)
    assert run.data.tags["cip.winner"] == res.winner

    # loaded as a champion and scored like LightGBM: probabilities, reasons
    champs = load_champions(f"sqlite:///{tmp_path / 'mlflow.db'}")
    version, model = champs["cip-churn"]
    assert version == res.version
    hold = frame[frame.as_of == pd.Timestamp(AS_OFS[-1])].reset_index(drop=True)
    out = score_frame(hold, champs, AS_OFS[-1])
    active = hold["active"].to_numpy() == 1
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(hold["churn"][active], out["churn_probability"][active])
    assert auc == pytest.approx(res.metrics["roc_auc"], abs=1e-6)
    assert out["reasons"].str.contains("churn risk").all()
    # the portable pyfunc gives the same probabilities
    pm = mlflow.pyfunc.load_model(f"models:/cip-churn/{res.version}")
    p = pm.predict(hold[pm.unwrap_python_model().feature_names])["probability"].to_numpy()
    assert p == pytest.approx(out["churn_probability"].to_numpy(), abs=1e-9)


def _no_signal(frame: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """The frame with purchase (and churn) labels drawn independently of every feature."""
    df = frame.copy()
    buy = (np.random.default_rng(seed).random(len(df)) < 0.3).astype(np.int64)
    df["purchase"] = buy
    df["churn"] = np.where(df["active"] == 1, 1.0 - buy, np.nan)
    return df


@pytest.mark.parametrize(
    "params", [None, {"n_estimators": 1, "num_leaves": 2}], ids=["lgbm", "stump"]
)
def test_no_candidate_without_skill_is_promoted(frame, tmp_path, params) -> None:
    """Labels independent of the features: whichever candidate wins (LightGBM or a baseline),
    its holdout ROC AUC is not above models.min_auc, so nothing is promoted and the registry
    says why the model has no champion."""
    noise = _no_signal(frame)
    for kind in ("churn", "propensity"):
        res = _train(noise, tmp_path, kind=kind, seed=0, model_params=params)
        best = max(m["roc_auc"] for m in res.candidates.values())
        assert 0.4 < best <= 0.55, res.candidates  # the premise: no skill to rank with
        assert not res.promoted and res.winner in res.candidates
        assert res.no_skill == f"not promoted: best holdout AUC {best:.2f} <= 0.55 (models.min_auc)"
        assert res.decision.startswith(res.no_skill)
        assert registry.champion_version(f"cip-{kind}") is None
        assert mlflow.get_run(res.run_id).data.tags["promotion.promoted"] == "false"
        assert registry.no_champion_reason(f"cip-{kind}") == (
            f"cip-{kind} has no champion: version {res.version} {res.no_skill}"
        )
    # the same rows with their real labels have skill and are promoted
    real = _train(frame, tmp_path, kind="churn", seed=0, model_params=params)
    assert real.promoted and real.no_skill is None and real.metrics["roc_auc"] > 0.55
    assert registry.champion_version("cip-churn") == real.version


def test_min_auc_is_the_bar_and_is_validated(frame, tmp_path) -> None:
    from cip.pipelines.config import load_config
    from cip.profiles.contracts import DEFAULT_MIN_AUC

    res = _train(frame, tmp_path, kind="propensity", seed=0, min_auc=0.99)
    auc = res.metrics["roc_auc"]
    assert 0.6 < auc < 0.99 and not res.promoted
    assert res.no_skill == f"not promoted: best holdout AUC {auc:.2f} <= 0.99 (models.min_auc)"
    assert (
        registry.no_champion_reason("cip-churn")
        == "cip-churn has no champion: no version trained yet"
    )

    p = tmp_path / "cip.yaml"
    p.write_text("models: {}\n")
    assert load_config(p).models.min_auc == DEFAULT_MIN_AUC == 0.55
    p.write_text("models: {min_auc: 0.6}\n")
    assert load_config(p).models.min_auc == 0.6
    for bad in ("0.45", "1.0", "high"):
        p.write_text(f"models: {{min_auc: {bad}}}\n")
        with pytest.raises(ConfigError, match="min_auc"):
            load_config(p)


def test_short_history_gets_denser_snapshots() -> None:
    from cip.models.training import snapshot_spacing

    as_of, end = date(2011, 9, 9), date(2011, 9, 9)
    # 9 months of orders, 91-day horizon, as of the last day: monthly leaves 3 fitting
    # snapshots after the purge, fortnightly 6: fortnightly is chosen
    young = date(2010, 12, 1)
    assert snapshot_spacing(young, as_of, 91, data_end=end)[0] == 14
    # 7 months: even weekly gives fewer than 6; the spacing with the most is chosen
    assert snapshot_spacing(date(2011, 2, 1), as_of, 91, data_end=end)[0] == 7
    # a long history keeps the configured monthly spacing
    assert snapshot_spacing(date(2008, 1, 1), as_of, 91, data_end=end) == (30, 24)
    # and never goes wider than asked
    assert snapshot_spacing(date(2008, 1, 1), as_of, 91, every_days=10, data_end=end)[0] == 10


def test_monotone_constraints_hold(frame) -> None:
    import numpy as np
    from cip.models.estimators import ChurnModel

    fit = frame[frame.active == 1]
    X = fit[["recency_days", "frequency", "monetary"]].astype(float)
    m = ChurnModel(
        n_estimators=40, monotone={"recency_days": 1, "frequency": -1}, random_state=0
    ).fit(X, fit.churn.to_numpy(dtype=int), snapshot=fit.as_of)
    row = X.iloc[[0] * 50].copy()
    row["recency_days"] = np.linspace(0, 400, 50)
    assert np.all(np.diff(m.predict_proba(row)[:, 1]) >= -1e-12)  # churn never falls with recency
    row = X.iloc[[0] * 30].copy()
    row["frequency"] = np.arange(30)
    assert np.all(np.diff(m.predict_proba(row)[:, 1]) <= 1e-12)
    assert ChurnModel.load(m.save(Path(__import__("tempfile").mkdtemp()))).monotone == m.monotone


def test_short_history_validation_splits_by_person() -> None:
    import numpy as np
    from cip.models.estimators import PropensityModel

    rng = np.random.default_rng(0)
    person = np.repeat(np.arange(200), 3)  # 3 snapshots, 10 days apart: none 90+ days older
    snap = np.tile(pd.to_datetime(["2024-01-01", "2024-01-11", "2024-01-21"]).to_numpy(), 200)
    X = np.column_stack([person, rng.random(600)]).astype(float)
    y = rng.integers(0, 2, 600)
    m = PropensityModel(purge_days=90, random_state=0)
    X_tr, _, X_va, _ = m._split(X, y, snap, None, person)
    tr, va = set(X_tr[:, 0]), set(X_va[:, 0])
    assert tr and va and not tr & va  # every snapshot of a person on one side
    assert 0.1 < len(va) / 200 < 0.3
