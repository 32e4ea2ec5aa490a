"""The CLV model that is registered and scored: BTYD outputs for everyone, and a ``clv`` column.

A :class:`CLVModel` holds a fitted BG/NBD and Gamma-Gamma (their parameters)
and, depending on ``kind``, what gives the ``clv`` column, the predicted net
revenue in ``[as_of, as_of + horizon_days)``:

* ``btyd``: expected purchases in the horizon x expected spend per purchase
  (BG/NBD x Gamma-Gamma; no discounting over the horizon);
* ``last_period``: the net revenue of the previous ``horizon_days`` ("same again");
* ``two_part``: :class:`~models.clv.two_part.TwoPartLGBM` on the feature set plus
  the BTYD columns.

Whatever the kind, every row also gets ``expected_orders`` (BG/NBD, in the
horizon), ``p_alive``, ``expected_spend_per_order`` (Gamma-Gamma) and
``next_order_days``: the median time from ``as_of`` to the next purchase given
the customer is alive (:meth:`BetaGeoModel.time_to_next_purchase`; multiply by
nothing, read it with ``p_alive``). Persons without a completed order (no
summary row) get ``clv = 0``, ``expected_orders = 0`` and NaN for the others.

Input frame columns (:func:`models.clv.training.clv_frame` builds them):
``btyd_frequency, btyd_recency, btyd_T, btyd_monetary_value, last_period_spend``
and, for ``two_part``, the model's ``feature_names_``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cip.models.clv.btyd import BetaGeoModel, GammaGammaModel
from cip.models.clv.two_part import TwoPartLGBM
from cip.profiles.errors import DataError

__all__ = [
    "CLVModel",
    "KINDS",
    "SUMMARY_COLUMNS",
    "BTYD_FEATURES",
    "OUTPUT_COLUMNS",
    "load_clv_model",
]

KINDS = ("btyd", "last_period", "two_part")
SUMMARY_COLUMNS = ("btyd_frequency", "btyd_recency", "btyd_T", "btyd_monetary_value")
BTYD_FEATURES = (
    "btyd_p_alive",
    "btyd_expected_orders",
    "btyd_expected_spend",
    "btyd_clv",
    "btyd_next_order_days",
)
OUTPUT_COLUMNS = (
    "clv",
    "expected_orders",
    "p_alive",
    "expected_spend_per_order",
    "next_order_days",
)
_META = "clv_model.json"


def btyd_features(
    frame: pd.DataFrame, bg: BetaGeoModel, gg: GammaGammaModel, horizon_days: int
) -> pd.DataFrame:
    """The BTYD outputs (:data:`BTYD_FEATURES`) of each row, NaN-safe for persons without a summary."""
    missing = [c for c in SUMMARY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"the CLV frame lacks the BTYD summary columns {missing}")
    has = frame["btyd_frequency"].notna().to_numpy()
    x = frame["btyd_frequency"].to_numpy(dtype=np.float64)[has]
    t_x = frame["btyd_recency"].to_numpy(dtype=np.float64)[has]
    T = frame["btyd_T"].to_numpy(dtype=np.float64)[has]
    m = frame["btyd_monetary_value"].to_numpy(dtype=np.float64)[has]
    out = pd.DataFrame(index=frame.index, columns=list(BTYD_FEATURES), dtype=np.float64)
    orders = np.zeros(len(frame))
    orders[has] = bg.expected_purchases(float(horizon_days), x, t_x, T)
    spend = np.full(len(frame), np.nan)
    spend[has] = gg.expected_spend(x, m)
    out["btyd_expected_orders"] = orders
    out["btyd_expected_spend"] = spend
    out["btyd_clv"] = np.where(has, orders * np.nan_to_num(spend), 0.0)
    p = np.full(len(frame), np.nan)
    p[has] = bg.p_alive(x, t_x, T)
    out["btyd_p_alive"] = p
    nxt = np.full(len(frame), np.nan)
    nxt[has] = bg.time_to_next_purchase(x, t_x, T)
    out["btyd_next_order_days"] = nxt
    return out


class CLVModel:
    """Predicted net revenue in the horizon plus the BTYD outputs (see the module docstring).

    Args:
        kind: ``btyd``, ``last_period`` or ``two_part``.
        horizon_days: the horizon the model predicts.
        bgnbd: fitted :class:`BetaGeoModel`; gamma_gamma: fitted :class:`GammaGammaModel`.
        two_part: the fitted :class:`TwoPartLGBM` (``kind == "two_part"`` only).
        total_scale: ``clv`` is multiplied by it: the total calibration, actual /
            predicted net revenue on a time-held-out snapshot (never the holdout),
            so that the predicted total of a population matches the actual one
            (it changes no ranking).
    """

    def __init__(
        self,
        kind: str,
        horizon_days: int,
        bgnbd: BetaGeoModel,
        gamma_gamma: GammaGammaModel,
        two_part: TwoPartLGBM | None = None,
        total_scale: float = 1.0,
    ) -> None:
        if kind not in KINDS:
            raise DataError(f"unknown CLV model kind {kind!r}; expected one of {KINDS}")
        if (kind == "two_part") != (two_part is not None):
            raise DataError("a two_part CLV model needs its fitted TwoPartLGBM (and only it does)")
        self.kind = kind
        self.horizon_days = int(horizon_days)
        self.bgnbd = bgnbd
        self.gamma_gamma = gamma_gamma
        self.two_part = two_part
        self.total_scale = float(total_scale)

    @property
    def feature_names_(self) -> list[str]:
        """Columns :meth:`predict` reads."""
        extra = ["last_period_spend"] if self.kind == "last_period" else []
        lgbm = (
            [c for c in self.two_part.feature_names_ if c not in BTYD_FEATURES]
            if self.two_part
            else []
        )
        return list(dict.fromkeys([*SUMMARY_COLUMNS, *extra, *lgbm]))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """:data:`OUTPUT_COLUMNS` per row of ``frame`` (same index)."""
        b = btyd_features(frame, self.bgnbd, self.gamma_gamma, self.horizon_days)
        if self.kind == "btyd":
            clv = b["btyd_clv"].to_numpy()
        elif self.kind == "last_period":
            clv = np.clip(
                frame["last_period_spend"].fillna(0.0).to_numpy(dtype=np.float64), 0.0, None
            )
        else:
            X = pd.concat([frame.drop(columns=list(BTYD_FEATURES), errors="ignore"), b], axis=1)
            clv = self.two_part.predict(X)  # type: ignore[union-attr]
        return pd.DataFrame(
            {
                "clv": np.asarray(clv, dtype=np.float64) * self.total_scale,
                "expected_orders": b["btyd_expected_orders"].to_numpy(),
                "p_alive": b["btyd_p_alive"].to_numpy(),
                "expected_spend_per_order": b["btyd_expected_spend"].to_numpy(),
                "next_order_days": b["btyd_next_order_days"].to_numpy(),
            },
            index=frame.index,
        )

    def save(self, path: str | Path) -> Path:
        """As data: ``clv_model.json`` (kind, horizon, BTYD parameters) and the LightGBM text files."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "kind": self.kind,
            "horizon_days": self.horizon_days,
            "bgnbd": self.bgnbd.params_,
            "gamma_gamma": self.gamma_gamma.params_,
            "total_scale": self.total_scale,
        }
        if self.two_part is not None:
            self.two_part.save(d / "two_part")
            meta["two_part"] = {
                "params": self.two_part.get_params(),
                "feature_names": self.two_part.feature_names_,
            }
        (d / _META).write_text(json.dumps(meta, indent=1))
        return d


def load_clv_model(path: str | Path) -> CLVModel:
    """Read a :class:`CLVModel` written by :meth:`CLVModel.save`."""
    d = Path(path)
    meta = json.loads((d / _META).read_text())
    bg = BetaGeoModel()
    bg.r_, bg.alpha_, bg.a_, bg.b_ = (float(meta["bgnbd"][k]) for k in ("r", "alpha", "a", "b"))
    gg = GammaGammaModel()
    gg.p_, gg.q_, gg.gamma_ = (float(meta["gamma_gamma"][k]) for k in ("p", "q", "gamma"))
    tp = None
    if "two_part" in meta:
        tp = TwoPartLGBM.load(
            d / "two_part", meta["two_part"]["params"], meta["two_part"]["feature_names"]
        )
    return CLVModel(
        meta["kind"], meta["horizon_days"], bg, gg, tp, float(meta.get("total_scale", 1.0))
    )
