"""A straightforward pandas implementation of the RFM core, the baseline of the speed benchmark.

Same definitions as ``features.compute_rfm`` on orders only (see ``features.rfm``):
the benchmark checks that both give the same table before comparing speed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from cip.features.segments import rfm_segment

__all__ = ["pandas_rfm"]


def pandas_rfm(orders: pd.DataFrame, as_of: pd.Timestamp, lookback_days: int = 365) -> pd.DataFrame:
    """RFM columns, scores and segment per ``customer_id`` from an orders DataFrame."""
    o = orders[orders["ts"] < as_of]
    status = o["status"].fillna("completed")
    done = status == "completed"
    ret = status == "returned"
    in_lb = o["ts"] >= as_of - pd.Timedelta(days=lookback_days)
    in_365 = o["ts"] >= as_of - pd.Timedelta(days=365)
    key = o["customer_id"]

    first_any = o.groupby(key)["ts"].min()
    df = pd.DataFrame(index=first_any.index)
    df.index.name = "unified_id"
    c = o[done]
    last_c = c.groupby(c["customer_id"])["ts"].max()
    first_c = c.groupby(c["customer_id"])["ts"].min()
    lb = o[done & in_lb]
    freq = lb.groupby(lb["customer_id"]).size()
    gross_lb = lb.groupby(lb["customer_id"])["amount"].sum()
    rlb = o[ret & in_lb]
    ret_lb = rlb.groupby(rlb["customer_id"])["amount"].sum()
    g365 = o[done & in_365]
    r365 = o[ret & in_365]
    gross_365 = g365.groupby(g365["customer_id"])["amount"].sum()
    ret_365 = r365.groupby(r365["customer_id"])["amount"].sum()

    def days(ts: pd.Series) -> pd.Series:
        secs = (as_of - ts.reindex(df.index)).dt.total_seconds()
        return np.ceil(secs) / 86400.0  # whole seconds (timestamps floored), as in SQL

    df["recency_days"] = days(last_c)
    df["frequency"] = freq.reindex(df.index, fill_value=0).astype("int64")
    g = gross_lb.reindex(df.index, fill_value=0.0)
    df["monetary"] = g - ret_lb.reindex(df.index, fill_value=0.0)
    df["avg_order_value"] = (g / df["frequency"]).where(df["frequency"] > 0)
    df["tenure_days"] = days(first_any)
    df["days_since_first"] = days(first_c)
    df["monetary_365d"] = gross_365.reindex(df.index, fill_value=0.0) - ret_365.reindex(
        df.index, fill_value=0.0
    )

    buyers = df[df["recency_days"].notna()]
    n = len(buyers)
    scores = pd.DataFrame(index=buyers.index)
    for name, values, ascending in (
        ("r_score", buyers["recency_days"], False),
        ("f_score", buyers["frequency"], True),
        ("m_score", buyers["monetary"].round(2), True),
    ):
        rank0 = values.rank(method="min", ascending=ascending).astype("int64") - 1
        scores[name] = 1 + (5 * rank0) // n
    scores = scores.reindex(df.index).astype("Int64")
    df["rfm_segment"] = rfm_segment(scores["r_score"], scores["f_score"], scores["m_score"])
    df = pd.concat([df, scores], axis=1).reset_index()
    return df.sort_values("unified_id").reset_index(drop=True)
