"""The frames a CLV model trains and scores on: features + BTYD summary, and the BTYD features.

* :func:`clv_frame`: labelled snapshots (:func:`features.build_training_set`) joined
  with the BTYD summary of each snapshot (:mod:`features.btyd`), columns renamed
  to :data:`~models.clv.model.SUMMARY_COLUMNS` plus ``last_period_spend``;
* :func:`clv_score_frame`: the same at one ``as_of`` without labels (what scoring reads);
* :func:`fit_btyd` / :func:`add_btyd_features`: BG/NBD and Gamma-Gamma fitted per
  snapshot on data before its ``as_of``, their outputs added as features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from cip.models.clv.btyd import BetaGeoModel, GammaGammaModel, snap
from cip.models.clv.model import BTYD_FEATURES, btyd_features
from cip.profiles.errors import DataError

__all__ = ["clv_frame", "clv_score_frame", "with_btyd_summary", "fit_btyd", "add_btyd_features"]

_PREFIX = {
    "frequency": "btyd_frequency",
    "recency": "btyd_recency",
    "T": "btyd_T",
    "monetary_value": "btyd_monetary_value",
}


def _with_summary(
    store: Any,
    feats: pd.DataFrame,
    as_of: Any,
    horizon_days: int,
    persons: Callable[[Any], Any] | None = None,
) -> pd.DataFrame:
    from cip.features.btyd import build_btyd_summary

    s = build_btyd_summary(store, as_of, horizon_days, persons=persons).rename(columns=_PREFIX)
    out = feats.merge(s, on="unified_id", how="left", validate="1:1")
    out["last_period_spend"] = out["last_period_spend"].fillna(0.0)
    # a parallel engine's float sums differ in their last bits from run to run; two persons
    # with the same spend can then be two distinct values for LightGBM's binning, and the
    # two-part model differs between two trainings on the same data. Snapped to 36 bits
    # (1.5e-11 relative), the same data gives the same frame and the same model.
    for c in out.columns[(out.dtypes == "float64").to_numpy()]:
        out[c] = snap(out[c].to_numpy())
    return out


def with_btyd_summary(
    store: Any, feats: pd.DataFrame, as_of: Any, horizon_days: int
) -> pd.DataFrame:
    """``feats`` (one row per person at ``as_of``) joined with the BTYD summary at ``as_of``.

    What :func:`clv_score_frame` returns, for callers that built the features already
    (``cip score`` builds them once for every model).
    """
    return _with_summary(store, feats, as_of, horizon_days)


def clv_frame(
    store: Any,
    as_ofs: Sequence[Any],
    horizon_days: int,
    feature_params: Any = None,
    fractions: Mapping[Any, float] | None = None,
) -> pd.DataFrame:
    """Labelled CLV snapshots: :func:`features.build_training_set` plus the BTYD summary.

    The summary columns are :data:`~models.clv.model.SUMMARY_COLUMNS` and
    ``last_period_spend`` (NaN summary = no completed order before ``as_of``).
    ``fractions`` maps a snapshot's ``as_of`` to the share of persons it keeps (the
    row budget's hash sample, :mod:`models.clv.sampling`, filtered in the engine
    before anything is computed); a snapshot not in it, or at 1, keeps everyone.
    """
    from cip.features import build_training_set
    from cip.models.clv.sampling import person_filter

    share = {pd.Timestamp(a): float(f) for a, f in (fractions or {}).items()}
    parts = []
    attrs: dict[str, Any] = {}
    for a in as_ofs:
        persons = person_filter(share.get(pd.Timestamp(a), 1.0))
        part = build_training_set(store, [a], horizon_days, params=feature_params, persons=persons)
        attrs = attrs or dict(part.attrs)
        parts.append(_with_summary(store, part, a, horizon_days, persons))
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs = {**attrs, "horizon_days": horizon_days}
    return frame


def clv_score_frame(
    store: Any, as_of: Any, horizon_days: int, feature_params: Any = None
) -> pd.DataFrame:
    """What a :class:`CLVModel` scores at ``as_of``: the features and the BTYD summary (no labels)."""
    from cip.features import build_features

    return _with_summary(
        store, build_features(store, as_of, params=feature_params), as_of, horizon_days
    )


def fit_btyd(frame: pd.DataFrame, penalizer: float = 0.0) -> tuple[BetaGeoModel, GammaGammaModel]:
    """BG/NBD and Gamma-Gamma fitted on the summary rows of one snapshot of ``frame``."""
    s = frame[frame["btyd_frequency"].notna()]
    if len(s) < 10:
        raise DataError(
            f"BTYD models need at least 10 customers with a purchase; the snapshot has {len(s)}"
        )
    bg = BetaGeoModel(penalizer=penalizer).fit(s["btyd_frequency"], s["btyd_recency"], s["btyd_T"])
    gg = GammaGammaModel(penalizer=penalizer).fit(s["btyd_frequency"], s["btyd_monetary_value"])
    return bg, gg


def add_btyd_features(
    frame: pd.DataFrame, horizon_days: int, penalizer: float = 0.0
) -> tuple[pd.DataFrame, dict[pd.Timestamp, tuple[BetaGeoModel, GammaGammaModel]]]:
    """Fit BTYD per snapshot and add :data:`~models.clv.model.BTYD_FEATURES` (point-in-time)."""
    out = frame.drop(columns=list(BTYD_FEATURES), errors="ignore").copy()
    for c in BTYD_FEATURES:
        out[c] = np.nan
    fitted = {}
    as_of = pd.to_datetime(out["as_of"])
    for a in sorted(as_of.unique()):
        rows = (as_of == a).to_numpy()
        bg, gg = fit_btyd(out[rows], penalizer)
        out.loc[rows, list(BTYD_FEATURES)] = btyd_features(
            out[rows], bg, gg, horizon_days
        ).to_numpy()
        fitted[pd.Timestamp(a)] = (bg, gg)
    return out, fitted
