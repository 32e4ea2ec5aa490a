"""CLV training on a small simulated orders-only shop: candidates, gate, registry, pyfunc, metrics."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from cip.models import registry
from cip.models.clv import (
    CLV_SCORE_COLUMNS,
    OUTPUT_COLUMNS,
    clv_frame,
    clv_score_frame,
    evaluate_values,
    fit_clv_candidates,
    load_clv_champion,
    load_clv_model,
    normalized_gini,
    score_clv,
    train_clv_on_frame,
)
from cip.models.training import plan_snapshots
from cip.profiles.store import open_store

from tests._models_support import START, load_orders, mlflow_db

H = 90


@pytest.fixture(scope="module")
def shop():
    """(frame, holdout) of a 1,200-customer shop: 5 fitting snapshots and the holdout."""
    with open_store("duckdb") as store:
        load_orders(store, 1200, seed=2)
        end = (START + pd.Timedelta(days=539)).date()
        plan = plan_snapshots(end, H, every_days=30, n_snapshots=8, data_end=end)
        dates = [d for d in plan.all_as_ofs if d > START.date() + pd.Timedelta(days=60)]
        yield clv_frame(store, dates, H), plan.holdout_as_of, store


def test_normalized_gini_known_answers() -> None:
    y = np.array([0.0, 0.0, 10.0, 0.0, 50.0, 5.0])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, y * 3 + 1) == pytest.approx(1.0)  # only the order matters
    assert normalized_gini(y, -y) < -0.5
    # hand computed: ranking [10, 50, 5, 0, 0, 0] captures 10/65, 60/65, 1, 1, 1, 1
    g = (10 / 65 + 60 / 65 + 4 - (1 + 2 + 3 + 4 + 5 + 6) / 6) / 6
    g_best = (50 / 65 + 60 / 65 + 4 - 21 / 6) / 6
    assert normalized_gini(y, [0, 0, 2, 0, 1, 0.5]) == pytest.approx(g / g_best)
    m = evaluate_values(y, np.full(6, 65 / 6))
    assert m["total_ratio"] == pytest.approx(1.0)


def test_candidates_are_point_in_time_and_comparable(shop) -> None:
    frame, hold, _ = shop
    f = fit_clv_candidates(frame, hold, H, tune_trials=None)
    assert set(f.metrics) == {"btyd", "last_period", "two_part"}
    assert all(pd.Timestamp(a) + pd.Timedelta(days=H) <= pd.Timestamp(hold) for a in f.fit_as_ofs)
    for name, m in f.metrics.items():
        assert m["n"] == len(f.y_hold)
        assert 0.3 < m["normalized_gini"] <= 1.0, name
    # BG/NBD x Gamma-Gamma is unbiased in total on data with a BTYD-like process
    assert f.metrics["btyd"]["total_ratio"] == pytest.approx(1.0, abs=0.25)
    # the total calibration (fitted on the latest fitting snapshot, before the holdout)
    # brings every candidate's total near the actual on a stationary shop
    for name, m in f.metrics.items():
        assert m["total_ratio"] == pytest.approx(1.0, abs=0.15), name
        assert 0.25 <= f.models[name].total_scale <= 4.0
    out = f.models["two_part"].predict(frame[pd.to_datetime(frame["as_of"]) == pd.Timestamp(hold)])
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    buyers = out["p_alive"].notna()
    assert ((out.loc[buyers, "p_alive"] > 0) & (out.loc[buyers, "p_alive"] <= 1)).all()
    assert (out.loc[buyers, "next_order_days"] > 0).all()
    assert (out["clv"] >= 0).all() and (out["expected_orders"] >= 0).all()


def test_run_registers_a_champion_even_when_the_lightgbm_loses(shop, tmp_path: Path) -> None:
    frame, hold, store = shop
    uri = mlflow_db(tmp_path / "mlflow.db")
    kw = {"tracking_uri": uri, "artifact_location": str(tmp_path / "art"), "tune_trials": None}
    # a crippled two-part model (one stump per part) cannot beat the baselines
    weak = train_clv_on_frame(
        frame, hold, H, model_params={"n_estimators": 1, "num_leaves": 2}, **kw
    )
    assert weak.winner in ("btyd", "last_period")
    assert weak.promoted and weak.version == "1"
    assert weak.metrics == weak.candidates[weak.winner]
    assert registry.champion_version("cip-clv") == "1"
    # the registered champion is a real model: it reproduces its holdout metrics
    version, model = load_clv_champion(uri)
    assert (version, model.kind) == ("1", weak.winner)
    hold_rows = frame[pd.to_datetime(frame["as_of"]) == pd.Timestamp(hold)]
    again = evaluate_values(hold_rows["future_spend"], model.predict(hold_rows)["clv"])
    assert again["normalized_gini"] == pytest.approx(weak.metrics["normalized_gini"], abs=1e-9)
    # the run logged the decile chart and every candidate's metrics
    run = mlflow.get_run(weak.run_id)
    assert "candidate.two_part.normalized_gini" in run.data.metrics
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(weak.run_id, "plots")}
    assert "plots/deciles.png" in arts

    # a normal run: the two-part model wins if it beats both baselines; it must also
    # beat the champion to take the alias
    strong = train_clv_on_frame(frame, hold, H, **kw)
    gini = {k: v["normalized_gini"] for k, v in strong.candidates.items()}
    two_part_wins = gini["two_part"] > max(gini["btyd"], gini["last_period"])
    assert strong.winner == (
        "two_part" if two_part_wins else max(("btyd", "last_period"), key=gini.get)
    )
    assert strong.champion_before == "1"
    assert strong.promoted == (strong.metrics["normalized_gini"] > weak.metrics["normalized_gini"])
    expected = strong.version if strong.promoted else "1"
    assert registry.champion_version("cip-clv") == expected
    # the pyfunc form answers every output column
    pm = mlflow.pyfunc.load_model(f"models:/cip-clv/{strong.version}")
    res = pm.predict(hold_rows[load_clv_champion(uri)[1].feature_names_].head(20))
    assert list(res.columns) == list(OUTPUT_COLUMNS) and len(res) == 20

    # scoring with the champion: every person but the excluded one, dates from days
    first = hold_rows["unified_id"].iloc[0]
    scored = score_clv(store, hold, uri, exclude=[first])
    assert list(scored.columns) == list(CLV_SCORE_COLUMNS)
    assert len(scored) == len(hold_rows) - 1 and first not in set(scored["unified_id"])
    assert set(scored["clv_model_version"]) == {registry.champion_version("cip-clv")}
    due = pd.Timestamp(hold) + pd.to_timedelta(scored["next_order_days"], unit="D")
    pd.testing.assert_series_equal(scored["next_order_date"], due, check_names=False)


def test_model_round_trips_as_data(shop, tmp_path: Path) -> None:
    frame, hold, _ = shop
    f = fit_clv_candidates(frame, hold, H, tune_trials=None, model_params={"n_estimators": 30})
    rows = frame[pd.to_datetime(frame["as_of"]) == pd.Timestamp(hold)]
    for name, m in f.models.items():
        back = load_clv_model(m.save(tmp_path / name))
        pd.testing.assert_frame_equal(back.predict(rows), m.predict(rows))


def test_the_scoring_frame_is_the_training_frame_without_labels(shop) -> None:
    frame, hold, store = shop
    scored = clv_score_frame(store, hold, H)
    train = frame[pd.to_datetime(frame["as_of"]) == pd.Timestamp(hold)].reset_index(drop=True)
    assert "future_spend" not in scored.columns
    cols = [c for c in scored.columns if c != "as_of"]
    pd.testing.assert_frame_equal(scored[cols], train[cols], check_dtype=False)


def test_prediction_on_all_cores_equals_one_thread(shop) -> None:
    """CLV scoring predicts with every core (``n_jobs``); the values are the single-thread ones."""
    from cip.models.clv import predict_clv

    frame, hold, _ = shop
    f = fit_clv_candidates(frame, hold, H, tune_trials=None, model_params={"n_estimators": 60})
    rows = frame[pd.to_datetime(frame["as_of"]) == pd.Timestamp(hold)].reset_index(drop=True)
    model = f.models["two_part"]
    one = predict_clv(model, rows, hold, "1", n_jobs=1)
    assert model.two_part.n_jobs == 1
    for threads in (2, 4, None):  # None: all cores
        many = predict_clv(model, rows, hold, "1", n_jobs=threads)
        assert model.two_part.n_jobs == (threads or 0)
        pd.testing.assert_frame_equal(many, one, check_exact=True)
    assert one["clv"].gt(0).any()


def test_two_part_total_factor_is_out_of_sample_and_seasonal(shop) -> None:
    """The two-part factor: its own validation snapshot, carried to the calibration season."""
    from cip.models.clv.frames import add_btyd_features
    from cip.models.clv.training import _total_ratio, _total_scales

    frame, hold, _ = shop
    f = fit_clv_candidates(frame, hold, H, tune_trials=None)
    fr, btyd = add_btyd_features(frame, H)
    valid, calib = f.fit_as_ofs[-1], f.fit_as_ofs[-3]
    as_of = pd.to_datetime(fr["as_of"])

    def scales(data: pd.DataFrame, c: pd.Timestamp = calib) -> dict[str, float]:
        return _total_scales(f.models, data, btyd, c, valid, "future_spend")

    base = scales(fr)
    # the pieces, each measured where the candidate never saw the labels
    on = {a: fr[(as_of == a).to_numpy()] for a in (valid, calib)}
    tp_valid = _total_ratio(f.models["two_part"], on[valid], btyd[valid], "future_spend")
    bt = {a: _total_ratio(f.models["btyd"], on[a], btyd[a], "future_spend") for a in on}
    assert base["btyd"] == pytest.approx(bt[calib])
    assert base["two_part"] == pytest.approx(tp_valid * bt[calib] / bt[valid])
    # a calibration season that spends 1.5 times as much: every factor follows it
    more = fr.copy()
    more.loc[(as_of == calib).to_numpy(), "future_spend"] *= 1.5
    for k, v in scales(more).items():
        assert v == pytest.approx(1.5 * base[k], rel=1e-9), k
    # a validation snapshot that spends more moves no factor (it is another season) ...
    odd = fr.copy()
    odd.loc[(as_of == valid).to_numpy(), "future_spend"] *= 1.5
    for k, v in scales(odd).items():
        assert v == pytest.approx(base[k], rel=1e-9), k
    # ... unless it is the calibration snapshot itself (a young shop: no year-ago snapshot)
    young = scales(fr, valid)
    assert young["two_part"] == pytest.approx(tp_valid)
    assert scales(odd, valid)["two_part"] == pytest.approx(1.5 * tp_valid)
