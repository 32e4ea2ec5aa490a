"""A synthetic training frame with the columns of :func:`features.build_training_set`.

For tests, benchmarks and examples that must not depend on a store: customers
with a latent purchase rate, point-in-time RFM and behavioural features per
snapshot, and labels drawn from a known non-linear model (so gradient boosting
has something to find that logistic regression on RFM does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

__all__ = ["synthetic_training_frame", "FEATURE_COLUMNS"]

FEATURE_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "orders_90d",
    "spend_90d",
    "sessions_30d",
    "cart_adds_30d",
    "email_clicks_90d",
    "return_rate",
    "r_score",
    "f_score",
    "m_score",
)


def synthetic_training_frame(
    n_customers: int = 2000,
    as_ofs: Sequence[date] | None = None,
    horizon_days: int = 90,
    seed: int = 0,
    labels: bool = True,
) -> pd.DataFrame:
    """Rows (unified_id, as_of) with features, ``rfm_segment`` and labels.

    Args:
        n_customers: customers per snapshot.
        as_ofs: snapshot dates (default: four snapshots 30 days apart ending 2024-06-01).
        horizon_days: label horizon (only scales the purchase rate).
        seed: random seed; the same seed gives the same frame.
        labels: include ``churn``, ``active``, ``purchase`` and ``future_spend``.
    """
    if as_ofs is None:
        as_ofs = [date(2024, 6, 1) - timedelta(days=30 * k) for k in (3, 2, 1, 0)]
    rng = np.random.default_rng(seed)
    n = n_customers
    rate = rng.gamma(1.5, 1.0 / 60.0, n)  # purchases per day
    engaged = rng.random(n) < 0.4
    aov = rng.lognormal(3.5, 0.6, n)
    start = rng.integers(30, 720, n)
    frames = []
    for k, as_of in enumerate(sorted(as_ofs)):
        r = np.random.default_rng([seed, k])
        tenure = start + 30 * k
        freq = r.poisson(rate * tenure) + 1
        recency = np.minimum(r.exponential(1.0 / np.maximum(rate, 1e-3)), tenure).round()
        recency = np.where(r.random(n) < 0.05, np.nan, recency)  # a few never purchased
        orders_90 = r.poisson(rate * 90 * np.where(recency > 90, 0.1, 1.0))
        sessions = r.poisson(np.where(engaged, 6.0, 1.0))
        carts = r.binomial(sessions, 0.3)
        clicks = r.poisson(np.where(engaged, 2.0, 0.3))
        returns = r.beta(1, 12, n)
        monetary = freq * aov * (1 - returns)
        logit = (
            -1.0
            + 0.9 * np.log1p(freq)
            - 1.6 * np.log1p(np.nan_to_num(recency, nan=720.0) / 30.0)
            + 1.3 * (carts >= 2) * (clicks >= 1)  # an interaction RFM cannot see
            + 0.6 * np.sin(np.nan_to_num(recency, nan=0.0) / 25.0)
            + 0.3 * r.standard_normal(n)
        )
        p_buy = 1.0 / (1.0 + np.exp(-(logit + np.log(horizon_days / 90.0))))
        df = pd.DataFrame(
            {
                "unified_id": [f"u{i:07d}" for i in range(n)],
                "as_of": pd.Timestamp(as_of),
                "recency_days": recency,
                "frequency": freq.astype(np.int64),
                "monetary": monetary,
                "avg_order_value": monetary / freq,
                "tenure_days": tenure.astype(np.int64),
                "orders_90d": orders_90.astype(np.int64),
                "spend_90d": orders_90 * aov,
                "sessions_30d": sessions.astype(np.int64),
                "cart_adds_30d": carts.astype(np.int64),
                "email_clicks_90d": clicks.astype(np.int64),
                "return_rate": returns,
            }
        )
        rec = np.nan_to_num(recency, nan=9999.0)
        df["r_score"] = 5 - np.searchsorted([30, 60, 120, 240], rec, side="right")
        df["f_score"] = 1 + np.searchsorted([1, 2, 4, 8], freq, side="left")
        df["m_score"] = 1 + pd.qcut(monetary, 5, labels=False, duplicates="drop").astype(int)
        df["rfm_segment"] = np.where(
            df["r_score"] >= 4, "champions", np.where(df["r_score"] >= 2, "at_risk", "lost")
        )
        df["rfm_segment"] = df["rfm_segment"].astype("string")
        if labels:
            buy = r.random(n) < p_buy
            active = (rec <= 365).astype(np.int64)
            df["purchase"] = buy.astype(np.int64)
            df["active"] = active
            df["churn"] = np.where(active == 1, 1.0 - buy, np.nan)
            df["future_spend"] = np.where(buy, r.gamma(2.0, aov / 2.0), 0.0)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["feature_set_version"] = "synthetic-1"
    out.attrs["as_ofs"] = [pd.Timestamp(a) for a in sorted(as_ofs)]
    return out
