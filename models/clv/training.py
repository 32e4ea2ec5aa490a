"""CLV training: predict each person's net revenue in ``[as_of, as_of + H)``, honestly.

Same machinery as churn and propensity (:mod:`models.training`):

* point-in-time snapshots from :func:`models.training.plan_snapshots` (the holdout
  is ``as_of`` when its horizon is observed, else the latest labelled snapshot;
  snapshots overlapping the holdout's label window are not fitted on); each row
  carries the feature set, the BTYD summary (:mod:`features.btyd`) and the
  label ``future_spend`` (completed - returned revenue in the horizon);
* BG/NBD and Gamma-Gamma are fitted **per snapshot** on that snapshot's summary
  (data before its ``as_of`` only), and their outputs become features;
* candidates, all scored on the same holdout: ``btyd`` (BG/NBD x Gamma-Gamma),
  ``last_period`` (last ``H`` days' net revenue) and ``two_part``
  (:class:`~models.clv.two_part.TwoPartLGBM`, early-stopped on the latest
  fitting snapshot with purging, optionally tuned with Optuna on that snapshot's
  normalized Gini; the holdout is never seen while tuning);
* total calibration: each candidate's ``clv`` is multiplied by actual / predicted
  total net revenue on a fitting snapshot (time-held-out, before the holdout): the
  one a year before the holdout when the history has it (same season), else the
  latest (:attr:`CLVModel.total_scale`), so totals match without changing ranks.
  The two-part model's factor is measured out of sample, on its validation snapshot,
  and carried to that season by the BTYD model's ratio of the two (see
  :func:`_total_scales`);
* metrics (:mod:`models.clv.metrics`): normalized Gini, total predicted / actual,
  Spearman, decile MAE; a decile chart of every candidate is logged to MLflow;
* the gate: ``two_part`` wins only if its holdout normalized Gini beats both
  baselines' (by ``min_delta``); otherwise the better baseline wins. The winner
  is always registered (``cip-clv``) as a real model with its metrics, and gets
  the ``champion`` alias when there is no champion or it beats the current
  champion on the same holdout. A shop is never left without a CLV model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from cip.models.clv._logging import REGISTRY_NAME, champion_metrics_on, log_clv_run
from cip.models.clv.frames import add_btyd_features, clv_frame, clv_score_frame, fit_btyd
from cip.models.clv.metrics import evaluate_values
from cip.models.clv.model import CLVModel
from cip.models.clv.sampling import DEFAULT_HOLDOUT_ROWS, DEFAULT_MAX_ROWS
from cip.models.clv.two_part import TwoPartLGBM
from cip.profiles.errors import DataError

__all__ = [
    "REGISTRY_NAME",
    "CLVTrainResult",
    "CLVFitted",
    "clv_frame",
    "clv_score_frame",
    "fit_btyd",
    "add_btyd_features",
    "fit_clv_candidates",
    "train_clv_on_frame",
    "train_clv",
]

log = logging.getLogger(__name__)

TARGET = "future_spend"


@dataclass
class CLVFitted:
    """Everything :func:`fit_clv_candidates` produced (before logging)."""

    models: dict[str, CLVModel]
    metrics: dict[str, dict[str, float]]
    predictions: dict[str, np.ndarray]
    y_hold: np.ndarray
    winner: str
    reason: str
    holdout_as_of: pd.Timestamp
    fit_as_ofs: list[pd.Timestamp]
    X_example: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None


def _tune(X, y, snap, base, n_trials, minutes, seed, say) -> tuple[dict[str, Any], dict[str, Any]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        p = {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        }
        g = TwoPartLGBM(**{**base, **p}).fit(X, y, snapshot=snap).validation_gini_
        say(f"trial {trial.number}: validation normalized Gini {g:.4f}")
        return g if np.isfinite(g) else -1.0

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials, timeout=None if minutes is None else minutes * 60)
    return dict(study.best_params), {
        "best_valid_gini": study.best_value,
        "trials": len(study.trials),
    }


#: bounds of the total calibration factor (a larger correction means a broken model)
SCALE_BOUNDS = (0.25, 4.0)


def _calibration_snapshot(fit_as_ofs: list[pd.Timestamp], holdout: pd.Timestamp) -> pd.Timestamp:
    """The fitting snapshot the total is calibrated on: same season a year earlier if any.

    Spend is seasonal (a horizon holding December is not one holding February), so the
    fitting snapshot within 31 days of ``holdout - 365 days`` is used when the history
    has one; else the latest fitting snapshot (a young shop).
    """
    year_ago = holdout - pd.Timedelta(days=365)
    near = [a for a in fit_as_ofs if abs((a - year_ago).days) <= 31]
    if near:
        return min(near, key=lambda a: abs((a - year_ago).days))
    return max(fit_as_ofs)


def _total_ratio(model: CLVModel, rows: pd.DataFrame, btyd: tuple[Any, Any], target: str) -> float:
    """Actual / predicted total net revenue of ``model`` on ``rows`` (one snapshot); NaN if undefined.

    The model is evaluated with the BTYD models fitted on that snapshot's own history.
    """
    twin = CLVModel(model.kind, model.horizon_days, *btyd, model.two_part)
    pred = float(twin.predict(rows)["clv"].sum())
    actual = float(rows[target].to_numpy(dtype=np.float64).sum())
    return actual / pred if pred > 0 and np.isfinite(pred) else float("nan")


def _total_scales(
    models: Mapping[str, CLVModel],
    frame: pd.DataFrame,
    btyd: Mapping[pd.Timestamp, tuple[Any, Any]],
    calib_ts: pd.Timestamp,
    valid_ts: pd.Timestamp,
    target: str,
) -> dict[str, float]:
    """Per candidate, the factor that makes its predicted total match the actual one.

    Every factor is measured on fitting snapshots (their labels are observed before
    the holdout starts), never on the holdout, and only where the candidate's
    predictions are **out of sample**:

    * ``btyd`` and ``last_period`` never see a label, so any fitting snapshot is out of
      sample for them: their factor is actual / predicted on the calibration snapshot
      ``calib_ts`` (:func:`_calibration_snapshot`: same season a year before the
      holdout when the history has it, else the latest);
    * ``two_part`` was trained on the labels of every fitting snapshot but its
      validation snapshot ``valid_ts`` (the latest, used only to stop boosting), so its
      factor there is out of sample, but not of the holdout's season. It is carried
      to the calibration snapshot's season with the BTYD model, measured on both:
      ``f_two_part(valid) x f_btyd(calib) / f_btyd(valid)`` (the same as
      ``f_two_part(valid)`` when the calibration snapshot is the latest). Measuring it on
      ``calib_ts`` directly, a snapshot the model was trained on, understates its
      out-of-time error (Online Retail: x1.08 in sample, holdout total 1.235).

    Bounded by :data:`SCALE_BOUNDS`; 1 when undefined.
    """
    as_of = pd.to_datetime(frame["as_of"])

    def rows(ts: pd.Timestamp) -> pd.DataFrame:
        return frame[(as_of == ts).to_numpy()]

    out = {}
    for k, m in models.items():
        if m.kind == "two_part":
            f = _total_ratio(m, rows(valid_ts), btyd[valid_ts], target)
            if calib_ts != valid_ts:
                b = models.get("btyd") or CLVModel("btyd", m.horizon_days, *btyd[valid_ts])
                season = _total_ratio(b, rows(calib_ts), btyd[calib_ts], target) / _total_ratio(
                    b, rows(valid_ts), btyd[valid_ts], target
                )
                f = f * season
        else:
            f = _total_ratio(m, rows(calib_ts), btyd[calib_ts], target)
        out[k] = float(np.clip(f, *SCALE_BOUNDS)) if np.isfinite(f) else 1.0
    return out


def fit_clv_candidates(
    frame: pd.DataFrame,
    holdout_as_of: Any,
    horizon_days: int,
    *,
    seed: int = 0,
    tune_trials: int | None = 5,
    tune_minutes: float | None = None,
    model_params: Mapping[str, Any] | None = None,
    min_delta: float = 0.0,
    btyd_penalizer: float = 0.0,
    say: Callable[[str], None] = log.info,
) -> CLVFitted:
    """Fit the three candidates, score them on the holdout and pick the winner (the gate's first half)."""
    from cip.models.training import feature_columns

    hold_ts = pd.Timestamp(holdout_as_of)
    if TARGET not in frame or "btyd_frequency" not in frame:
        raise DataError("the CLV frame needs future_spend and the BTYD summary (use clv_frame)")
    say("fitting BG/NBD and Gamma-Gamma per snapshot")
    frame, btyd = add_btyd_features(frame, horizon_days, btyd_penalizer)
    as_of = pd.to_datetime(frame["as_of"])
    fit_mask, hold_mask = (as_of < hold_ts).to_numpy(), (as_of == hold_ts).to_numpy()
    if not hold_mask.any() or not fit_mask.any():
        raise DataError(f"the CLV frame needs rows before and at the holdout {hold_ts.date()}")
    feats = feature_columns(frame)
    y = frame[TARGET].to_numpy(dtype=np.float64)
    X_fit, y_fit, snap = frame.loc[fit_mask, feats], y[fit_mask], as_of[fit_mask].to_numpy()
    hold, y_hold = frame[hold_mask], y[hold_mask]
    bg, gg = btyd[hold_ts]
    models = {
        "btyd": CLVModel("btyd", horizon_days, bg, gg),
        "last_period": CLVModel("last_period", horizon_days, bg, gg),
    }
    base = {"random_state": seed, "purge_days": horizon_days}
    tuning = None
    if tune_trials or tune_minutes:
        say("tuning the two-part LightGBM with Optuna")
        best, tuning = _tune(
            X_fit,
            y_fit,
            snap,
            {**base, **dict(model_params or {})},
            tune_trials,
            tune_minutes,
            seed,
            say,
        )
        base.update(best)
    params = {**base, **dict(model_params or {})}
    say(f"fitting the two-part LightGBM on {len(y_fit):,} rows")
    tp = TwoPartLGBM(**params).fit(X_fit, y_fit, snapshot=snap)
    models["two_part"] = CLVModel("two_part", horizon_days, bg, gg, tp)
    fit_ts = [pd.Timestamp(a) for a in pd.Series(snap).unique()]
    cal_ts, valid_ts = _calibration_snapshot(fit_ts, hold_ts), max(fit_ts)
    scales = _total_scales(models, frame, btyd, cal_ts, valid_ts, TARGET)
    for k, m in models.items():
        m.total_scale = scales[k]
    say(
        f"total calibration on the snapshot {cal_ts.date()} (two_part: out of sample on "
        f"{valid_ts.date()}, carried to that season): "
        + ", ".join(f"{k} x{v:.3f}" for k, v in scales.items())
    )
    preds = {k: m.predict(hold)["clv"].to_numpy() for k, m in models.items()}
    metrics = {k: evaluate_values(y_hold, p) for k, p in preds.items()}
    gini = {k: m["normalized_gini"] for k, m in metrics.items()}
    best_base = max(("btyd", "last_period"), key=lambda k: gini[k])
    if gini["two_part"] - max(gini["btyd"], gini["last_period"]) > min_delta:
        winner = "two_part"
        reason = f"two_part Gini {gini['two_part']:.4f} beats btyd {gini['btyd']:.4f} and last_period {gini['last_period']:.4f}"
    else:
        winner = best_base
        reason = (
            f"two_part Gini {gini['two_part']:.4f} does not beat {best_base} {gini[best_base]:.4f}: "
            f"the baseline {best_base} is the candidate"
        )
    say(reason)
    example_cols = models[winner].feature_names_
    return CLVFitted(
        models=models,
        metrics=metrics,
        predictions=preds,
        y_hold=y_hold,
        winner=winner,
        reason=reason,
        holdout_as_of=hold_ts,
        fit_as_ofs=sorted(pd.Timestamp(a) for a in pd.Series(snap).unique()),
        X_example=hold[example_cols].head(5).astype(np.float64).reset_index(drop=True),
        params=params,
        tuning=tuning,
    )


@dataclass
class CLVTrainResult:
    """Outcome of one CLV training run (the future ``--json`` output of ``cip train clv``)."""

    winner: str
    metrics: dict[str, float]
    candidates: dict[str, dict[str, float]]
    run_id: str
    version: str
    promoted: bool
    decision: str
    champion_before: str | None
    champion_metrics: dict[str, float] | None
    holdout_as_of: str
    fit_as_ofs: list[str]
    btyd_params: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    #: the row budget's sample (:meth:`models.clv.sampling.SamplePlan.as_params`)
    sample: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_clv_on_frame(
    frame: pd.DataFrame,
    holdout_as_of: Any,
    horizon_days: int,
    *,
    tracking_uri: str,
    artifact_location: str,
    seed: int = 0,
    tune_trials: int | None = 5,
    tune_minutes: float | None = None,
    model_params: Mapping[str, Any] | None = None,
    min_delta: float = 0.0,
    lineage: Mapping[str, Any] | None = None,
    run_params: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CLVTrainResult:
    """Fit the candidates, compare with the champion, log to MLflow, register, maybe promote."""
    say = progress or log.info
    fitted = fit_clv_candidates(
        frame,
        holdout_as_of,
        horizon_days,
        seed=seed,
        tune_trials=tune_trials,
        tune_minutes=tune_minutes,
        model_params=model_params,
        min_delta=min_delta,
        say=say,
    )
    champ_version, champ_metrics, decision = champion_metrics_on(
        fitted, frame, tracking_uri, min_delta
    )
    say("logging the CLV run to MLflow")
    run_id, version = log_clv_run(
        fitted,
        decision,
        champ_version,
        champ_metrics,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        lineage=dict(lineage or {}),
        run_params={"seed": seed, "horizon_days": horizon_days, **dict(run_params or {})},
    )
    say(f"{REGISTRY_NAME} version {version} ({fitted.winner}): {decision.reason}")
    bg, gg = fitted.models[fitted.winner].bgnbd, fitted.models[fitted.winner].gamma_gamma
    return CLVTrainResult(
        winner=fitted.winner,
        metrics=fitted.metrics[fitted.winner],
        candidates=fitted.metrics,
        run_id=run_id,
        version=version,
        promoted=decision.promote,
        decision=f"{fitted.reason}; {decision.reason}",
        champion_before=champ_version,
        champion_metrics=champ_metrics,
        holdout_as_of=str(fitted.holdout_as_of.date()),
        fit_as_ofs=[str(a.date()) for a in fitted.fit_as_ofs],
        btyd_params={**bg.params_, **gg.params_},
        params=fitted.params,
        tuning=fitted.tuning,
        sample={
            k.removeprefix("sample."): v
            for k, v in dict(run_params or {}).items()
            if k.startswith("sample.")
        },
    )


def train_clv(
    store: Any,
    as_of: date | None,
    horizon_days: int,
    tracking_uri: str,
    artifact_location: str,
    *,
    seed: int = 0,
    tune_trials: int | None = 5,
    tune_minutes: float | None = None,
    snapshot_every_days: int = 30,
    n_snapshots: int = 12,
    holdout: str = "auto",
    min_fit_snapshots: int = 6,
    feature_params: Any = None,
    model_params: Mapping[str, Any] | None = None,
    min_delta: float = 0.0,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    holdout_rows: int | None = DEFAULT_HOLDOUT_ROWS,
    progress: Callable[[str], None] | None = None,
) -> CLVTrainResult:
    """Train the CLV model on a store (snapshots as in :func:`models.training.plan_snapshots`).

    Args:
        store: a :class:`profiles.store.Store` with orders.
        as_of: the as-of date ``D`` (``None``: the last day with data).
        horizon_days: the CLV horizon ``H`` in days.
        tracking_uri, artifact_location: the MLflow stores.
        seed: random seed of LightGBM and Optuna.
        tune_trials, tune_minutes: Optuna budget for the two-part model (both None: defaults).
        snapshot_every_days, n_snapshots, holdout: the snapshot grid; with a short
            history the spacing is reduced to 14 or 7 days until ``min_fit_snapshots``
            snapshots fit (:func:`models.training.snapshot_spacing`).
        feature_params: :class:`features.FeatureParams` (``None``: defaults).
        model_params: :class:`TwoPartLGBM` parameters overriding defaults and tuned values.
        min_delta: normalized-Gini margin the two-part model must win by.
        max_rows, holdout_rows: the row budget (``models.clv.max_rows`` /
            ``holdout_rows``): at most this many fitting rows in all / holdout rows, by
            a deterministic hash sample of persons filtered in the engine before the
            features are built (:mod:`models.clv.sampling`); below it nothing is
            sampled. None: no budget.
        progress: ``progress(message)`` callback.
    """
    from cip.features import data_end
    from cip.models.clv.sampling import count_rows, plan_sample
    from cip.models.tracking import data_fingerprint
    from cip.models.training import plan_snapshots, snapshot_spacing

    say = progress or log.info
    end_day = pd.Timestamp(data_end(store)).date()
    as_of = as_of or end_day
    start = store.sql("SELECT min(ts) AS t FROM orders")["t"].iloc[0]
    first = pd.Timestamp(start).date()
    asked = snapshot_every_days
    snapshot_every_days, n_snapshots = snapshot_spacing(
        first,
        as_of,
        horizon_days,
        every_days=asked,
        n_snapshots=n_snapshots,
        data_end=end_day,
        holdout=holdout,
        min_fit_snapshots=min_fit_snapshots,
    )
    if snapshot_every_days != asked:
        say(f"short history: snapshots every {snapshot_every_days} days instead of {asked}")
    plan = plan_snapshots(
        as_of,
        horizon_days,
        every_days=snapshot_every_days,
        n_snapshots=n_snapshots,
        data_end=end_day,
        holdout=holdout,
    )
    dates = [
        a
        for a in plan.all_as_ofs
        if a > first + timedelta(days=snapshot_every_days) or a == plan.holdout_as_of
    ]
    sample = plan_sample(count_rows(store, dates), plan.holdout_as_of, max_rows, holdout_rows)
    if sample.sampled:
        say(
            f"row budget: {sample.fit_rows:,} fitting rows sampled to {sample.fit_fraction:.2%} of "
            f"persons (max_rows {max_rows}), {sample.holdout_rows:,} holdout rows to "
            f"{sample.holdout_fraction:.2%} (holdout_rows {holdout_rows})"
        )
    say(f"building the CLV training set ({len(dates)} snapshots, holdout {plan.holdout_as_of})")
    frame = clv_frame(
        store,
        dates,
        horizon_days,
        feature_params,
        fractions={a: sample.fraction(a, plan.holdout_as_of) for a in dates},
    )
    fp, _ = data_fingerprint(store)
    return train_clv_on_frame(
        frame,
        plan.holdout_as_of,
        horizon_days,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        seed=seed,
        tune_trials=tune_trials,
        tune_minutes=tune_minutes,
        model_params=model_params,
        min_delta=min_delta,
        lineage={
            "data_fingerprint": fp,
            "data_end": str(end_day),
            "holdout_mode": plan.mode,
            "snapshot_dates": [str(a) for a in dates],
            "feature_set_version": frame.attrs.get("feature_set_version", ""),
        },
        run_params={
            "as_of": str(as_of),
            "snapshot_every_days": snapshot_every_days,
            "n_snapshots": n_snapshots,
            "tune_trials": tune_trials,
            "tune_minutes": tune_minutes,
            **sample.as_params(),
        },
        progress=say,
    )
