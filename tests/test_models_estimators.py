"""ChurnModel / PropensityModel: scikit-learn contract, time split, calibration, reasons."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from cip.models import ChurnModel, PropensityModel
from cip.models._run import feature_columns
from cip.models._synthetic import synthetic_training_frame
from cip.models.calibration import EPS, apply_calibrator, fit_calibrator
from cip.models.estimators import load_model
from cip.models.metrics import calibration_table, expected_calibration_error
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

AS_OFS = [date(2024, 6, 1) - timedelta(days=30 * k) for k in (4, 3, 2, 1, 0)]


@pytest.mark.parametrize("cls", [ChurnModel, PropensityModel])
def test_sklearn_contract(cls) -> None:
    """Every scikit-learn estimator check passes.

    The one check not run is ``check_array_api_input``: it needs the environment
    variable SCIPY_ARRAY_API and applies to estimators claiming array-API support,
    which LightGBM-based models do not.
    """
    results = check_estimator(cls(n_estimators=20, random_state=0), on_skip=None, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert failed == []
    not_run = {r["check_name"] for r in results if r["status"] != "passed"}
    assert not_run == {"check_array_api_input"}
    assert len(results) > 50


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_training_frame(3000, AS_OFS, seed=3)


def _xy(df: pd.DataFrame, target: str = "purchase"):
    return df[feature_columns(df)].astype(float), df[target].astype(int)


def test_latest_snapshot_is_the_validation_set(frame: pd.DataFrame) -> None:
    fit = frame[frame.as_of < frame.as_of.max()]
    X, y = _xy(fit)
    m = PropensityModel(n_estimators=300, random_state=0).fit(X, y, snapshot=fit.as_of)
    last = (fit.as_of == fit.as_of.max()).to_numpy()
    same = PropensityModel(n_estimators=300, random_state=0).fit(
        X[~last], y[~last], eval_set=(X[last], y[last])
    )
    np.testing.assert_array_equal(m.predict_proba(X), same.predict_proba(X))
    raw = m.booster_.predict(X[last].to_numpy(), raw_score=True, num_iteration=m.best_iteration_)
    assert m.validation_auc_ == pytest.approx(roc_auc_score(y[last], raw))
    assert 1 <= m.best_iteration_ < 300  # early stopping on the validation snapshot
    assert m.get_params()["n_estimators"] == 300  # params untouched by fit


def test_calibrated_on_a_later_holdout(frame: pd.DataFrame) -> None:
    """Predicted probability vs observed rate per bin on a snapshot never used for fitting."""
    hold = frame.as_of == frame.as_of.max()
    X, y = _xy(frame)
    m = PropensityModel(random_state=0, calibration="isotonic").fit(
        X[~hold], y[~hold], snapshot=frame.as_of[~hold]
    )
    p = m.predict_proba(X[hold])[:, 1]
    table = calibration_table(y[hold], p, n_bins=10)
    big = table[table["n"] >= 150]
    assert len(big) >= 4
    assert (big["observed_rate"] - big["mean_predicted"]).abs().max() < 0.08
    assert expected_calibration_error(y[hold], p) < 0.04
    assert p.min() >= EPS and p.max() <= 1 - EPS


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, 40_000)
    y = rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))
    cal = fit_calibrator(raw, y, "sigmoid")
    assert cal["a"] == pytest.approx(0.5, abs=0.03) and cal["b"] == pytest.approx(-1.0, abs=0.05)
    iso = fit_calibrator(raw, y, "isotonic")
    p = apply_calibrator(iso, np.sort(raw))
    assert np.all(np.diff(p) >= 0)
    assert fit_calibrator(raw, y, "auto")["method"] == "isotonic"
    assert fit_calibrator(raw[:200], y[:200], "auto")["method"] == "sigmoid"
    assert fit_calibrator(raw[:50], np.zeros(50), "auto") == {"method": "none"}


def test_isotonic_steps_keep_the_raw_order() -> None:
    """Isotonic calibration is a step function; its ties are broken by the raw score."""
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    raw = rng.normal(0, 2, 5_000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-raw))).astype(int)
    cal = fit_calibrator(raw[:2_000], y[:2_000], "isotonic")
    steps = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw[:2_000], y[:2_000])
    new = raw[2_000:]
    stepped = np.clip(steps.predict(new), EPS, 1 - EPS)
    assert len(np.unique(stepped)) < 200  # the plain steps tie most rows
    p = apply_calibrator(cal, new)
    order = np.argsort(new)
    assert np.all(np.diff(p[order]) > 0)  # strictly increasing: no ties left
    assert np.abs(p - stepped).max() <= 1e-6  # the calibration itself is unchanged
    assert roc_auc_score(y[2_000:], p) == pytest.approx(roc_auc_score(y[2_000:], new), abs=1e-12)
    assert roc_auc_score(y[2_000:], stepped) < roc_auc_score(y[2_000:], p)
    assert p.min() >= EPS and p.max() <= 1 - EPS


def test_explain_names_the_feature_that_drives_the_score() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    X = pd.DataFrame(
        {"recency_days": rng.integers(0, 365, n).astype(float), "noise": rng.random(n)}
    )
    y = (rng.random(n) < np.where(X.recency_days > 180, 0.9, 0.1)).astype(int)
    m = ChurnModel(
        random_state=0, feature_descriptions={"recency_days": "days since last purchase"}
    ).fit(X, y)
    probe = pd.DataFrame({"recency_days": [300.0, 10.0], "noise": [0.5, 0.5]}, index=["a", "b"])
    why = m.explain(probe, top=2)
    assert list(why.index) == ["a", "b"]
    assert why.loc["a", "feature_1"] == "recency_days"
    assert (
        why.loc["a", "reason_1"]
        == "recency_days = 300 (days since last purchase) raises churn risk"
    )
    assert (
        why.loc["b", "reason_1"].endswith("lowers churn risk")
        or why.loc["b", "feature_1"] == "noise"
    )
    assert why.loc["a", "contribution_1"] >= why.loc["a", "contribution_2"]
    assert why.loc["b", "value_1"] in (10.0, 0.5)
    # the fast path attribution agrees on the dominant feature and both decompose the raw score
    fast = m.explain(probe, top=1, method="path")
    assert fast.loc["a", "feature_1"] == "recency_days"
    raw = m.booster_.predict(probe.to_numpy(), raw_score=True, num_iteration=m.best_iteration_)
    for method in ("shap", "path"):
        assert m.contributions(probe, method).sum(axis=1) == pytest.approx(raw)
    p, why2 = m.predict_explain(probe, top=2, method="shap")
    assert p == pytest.approx(m.predict_proba(probe)[:, 1])
    pd.testing.assert_frame_equal(why2, why)


def test_reason_values_format_missing_and_decimals() -> None:
    from cip.models._reasons import format_values

    assert format_values(np.array([120.0, 0.12345, np.nan, -3.5])).to_pylist() == [
        "120",
        "0.12",
        "missing",
        "-3.5",
    ]


def test_save_load_roundtrip_as_data(tmp_path, frame: pd.DataFrame) -> None:
    X, y = _xy(frame[frame.active == 1], "churn")
    m = ChurnModel(n_estimators=60, random_state=0, calibration="sigmoid").fit(
        X, y, snapshot=frame.as_of[frame.active == 1]
    )
    m.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["booster.txt", "model.json"]
    back = ChurnModel.load(tmp_path / "m")
    assert isinstance(back, ChurnModel) and back.get_params() == m.get_params()
    np.testing.assert_allclose(back.predict_proba(X), m.predict_proba(X))
    pd.testing.assert_frame_equal(back.explain(X.head(20)), m.explain(X.head(20)))
    with pytest.raises(TypeError):
        PropensityModel.load(tmp_path / "m")
    assert isinstance(load_model(tmp_path / "m"), ChurnModel)


def test_same_seed_same_model(frame: pd.DataFrame) -> None:
    X, y = _xy(frame)
    a = PropensityModel(random_state=7).fit(X, y, snapshot=frame.as_of)
    b = clone(a).fit(X, y, snapshot=frame.as_of)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_rejects_multiclass_and_single_class() -> None:
    X = np.random.default_rng(0).random((30, 2))
    with pytest.raises(ValueError, match="Only binary"):
        ChurnModel().fit(X, np.arange(30) % 3)
    with pytest.raises(ValueError, match="1 class"):
        ChurnModel().fit(X, np.ones(30))


def test_refit_learns_from_the_validation_snapshot(frame: pd.DataFrame, tmp_path) -> None:
    """``refit=True``: early stopping and calibration on the latest snapshot, then every row."""
    fit = frame[frame.as_of < frame.as_of.max()]
    X, y = _xy(fit)
    kw = {"n_estimators": 300, "random_state": 0, "purge_days": 30}
    plain = PropensityModel(**kw).fit(X, y, snapshot=fit.as_of)
    again = PropensityModel(**kw, refit=True).fit(X, y, snapshot=fit.as_of)
    assert again.refitted_ and not plain.refitted_
    # the same early stopping and calibration, measured before the refit
    assert again.best_iteration_ == plain.best_iteration_
    assert again.validation_auc_ == plain.validation_auc_
    assert again.calibrator_ == plain.calibrator_
    assert again.booster_.current_iteration() == plain.best_iteration_
    # the final booster is the one trained on every row, the validation snapshot included
    last = (fit.as_of == fit.as_of.max()).to_numpy()
    on_all = PropensityModel(
        **{**kw, "n_estimators": plain.best_iteration_},
        early_stopping_rounds=None,
        validation_fraction=0.0,
    ).fit(X, y)
    np.testing.assert_allclose(
        again.booster_.predict(X.to_numpy(), raw_score=True),
        on_all.booster_.predict(X.to_numpy(), raw_score=True),
    )
    assert not np.allclose(again.predict_proba(X[last]), plain.predict_proba(X[last]))
    # saved and loaded as data
    again.save(tmp_path / "r")
    back = PropensityModel.load(tmp_path / "r")
    assert back.refitted_ and back.get_params()["refit"] is True
    np.testing.assert_allclose(back.predict_proba(X), again.predict_proba(X))
    # an explicit eval_set keeps the early-stopped booster
    es = PropensityModel(**kw, refit=True).fit(X[~last], y[~last], eval_set=(X[last], y[last]))
    assert not es.refitted_
