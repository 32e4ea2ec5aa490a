"""Incremental lift: treatment vs control per campaign or trigger, with 95 % intervals.

For each campaign with a control group the persons are split into those sent
the message (treatment) and those held out (control); the outcome is what each
person did in the ``window_days`` after the decision (their first one in the
campaign): converted (placed an order), revenue and orders.

Intervals (95 %, two-sided):

* conversion rate difference: **Newcombe's hybrid score interval** (method 10
  of Newcombe 1998, built from the two Wilson score intervals) -- good coverage
  even for small groups and rare conversions;
* revenue per person and orders per person: **Welch's t interval** (unequal
  variances, Welch-Satterthwaite degrees of freedom).

The **minimum detectable effect** (MDE) is the smallest conversion-rate
difference the groups can detect with 80 % power at the 5 % level
(``(z_0.975 + z_0.8) * sqrt(p (1 - p) (1/n_t + 1/n_c))``, ``p`` the pooled
rate); a warning is raised when it exceeds the effect the user cares about
(``effect``, a relative lift of the control rate, 10 % by default).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "CONVERSION_METHOD",
    "MEAN_METHOD",
    "MetricLift",
    "CampaignLift",
    "wilson_interval",
    "newcombe_interval",
    "welch_interval",
    "mde_proportion",
    "lift",
    "campaign_outcomes",
]

CONVERSION_METHOD = "Newcombe hybrid score (Wilson) interval"
MEAN_METHOD = "Welch t interval"
_Z = stats.norm.ppf(0.975)
_Z_POWER = stats.norm.ppf(0.8)


def wilson_interval(successes: float, n: float, z: float = _Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (``(nan, nan)`` when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    x1: float, n1: float, x0: float, n0: float, z: float = _Z
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x0/n0``."""
    if n1 <= 0 or n0 <= 0:
        return math.nan, math.nan
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, z)
    l0, u0 = wilson_interval(x0, n0, z)
    d = p1 - p0
    lo = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return lo, hi


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Welch's t interval of ``mean(a) - mean(b)`` (``(nan, nan)`` with < 2 values in a group)."""
    n1, n0 = len(a), len(b)
    if n1 < 2 or n0 < 2:
        return math.nan, math.nan
    v1, v0 = float(np.var(a, ddof=1)) / n1, float(np.var(b, ddof=1)) / n0
    d = float(np.mean(a) - np.mean(b))
    se = math.sqrt(v1 + v0)
    if se == 0:
        return d, d
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    return d - t * se, d + t * se


def mde_proportion(p: float, n1: int, n0: int) -> float:
    """Minimum detectable difference in a rate ``p`` (80 % power, 5 % two-sided)."""
    if n1 <= 0 or n0 <= 0:
        return math.nan
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float((_Z + _Z_POWER) * math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0)))


@dataclass(frozen=True)
class MetricLift:
    """One metric in treatment vs control and their difference with its 95 % interval."""

    metric: str
    treatment: float
    control: float
    difference: float
    ci_low: float
    ci_high: float
    method: str

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


@dataclass(frozen=True)
class CampaignLift:
    """Lift of one campaign (or ``*``: the global control group)."""

    campaign: str
    n_treatment: int
    n_control: int
    metrics: list[MetricLift]
    mde: float  # absolute conversion-rate difference detectable (80 % power)
    warnings: list[str] = field(default_factory=list)

    def metric(self, name: str) -> MetricLift:
        """The metric named ``name`` (conversion_rate, revenue_per_person, orders_per_person)."""
        return next(m for m in self.metrics if m.metric == name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as null)."""
        d = asdict(self)
        for m in d["metrics"]:
            for k, v in m.items():
                if isinstance(v, float):
                    m[k] = None if math.isnan(v) else round(v, 6)
            m["significant"] = self.metric(m["metric"]).significant
        d["mde"] = None if math.isnan(self.mde) else round(self.mde, 6)
        return d


def lift(outcomes: pd.DataFrame, campaign: str = "", *, effect: float = 0.10) -> CampaignLift:
    """Treatment vs control lift from one row per person.

    Args:
        outcomes: ``treated`` (bool: sent vs held out), ``converted`` (bool),
            ``revenue`` and ``orders`` (numbers) per person.
        campaign: the name reported.
        effect: the relative lift of the control conversion rate the user wants
            to be able to detect; a warning is added when the MDE is larger.
    """
    t = outcomes[outcomes["treated"].astype(bool)]
    c = outcomes[~outcomes["treated"].astype(bool)]
    n1, n0 = len(t), len(c)
    x1, x0 = float(t["converted"].sum()), float(c["converted"].sum())
    p1 = x1 / n1 if n1 else math.nan
    p0 = x0 / n0 if n0 else math.nan
    lo, hi = newcombe_interval(x1, n1, x0, n0)
    metrics = [MetricLift("conversion_rate", p1, p0, p1 - p0, lo, hi, CONVERSION_METHOD)]
    for name, col in (("revenue_per_person", "revenue"), ("orders_per_person", "orders")):
        a = t[col].to_numpy(float)
        b = c[col].to_numpy(float)
        m1 = float(a.mean()) if n1 else math.nan
        m0 = float(b.mean()) if n0 else math.nan
        lo, hi = welch_interval(a, b)
        metrics.append(MetricLift(name, m1, m0, m1 - m0, lo, hi, MEAN_METHOD))
    warnings: list[str] = []
    if n0 == 0:
        warnings.append("no control group: lift cannot be measured")
    pooled = (x1 + x0) / (n1 + n0) if n1 + n0 else math.nan
    base = p0 if n0 and p0 > 0 else pooled  # a control rate of 0 says nothing of scale
    mde = mde_proportion(pooled, n1, n0) if n1 and n0 else math.nan
    if n1 and n0 and not math.isnan(mde) and base > 0:
        wanted = effect * base
        if mde > wanted:
            warnings.append(
                f"groups too small: the minimum detectable conversion difference is "
                f"{mde:.2%} (80 % power), larger than the {effect:.0%} relative lift "
                f"wanted ({wanted:.2%}); about {_needed(base, wanted, n1, n0):,} persons "
                f"per group would be needed"
            )
    return CampaignLift(campaign, n1, n0, metrics, mde, warnings)


def _needed(p: float, diff: float, n1: int, n0: int) -> int:
    """Persons per group (same treatment/control ratio) to detect ``diff`` at rate ``p``."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    r = n1 / n0
    n0_req = (_Z + _Z_POWER) ** 2 * p * (1 - p) * (1 + 1 / r) / diff**2
    return int(math.ceil(max(n0_req, n0_req * r)))


def campaign_outcomes(
    facts: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    window_days: float = 7.0,
    global_control: bool = False,
) -> dict[str, pd.DataFrame]:
    """Per campaign, one row per assigned person: ``unified_id, treated, converted, revenue, orders``.

    A person is assigned at their first ``send`` (treated) or ``control`` event
    of the campaign; outcomes are their completed orders in the
    ``window_days`` after. With ``global_control`` the only "campaign" is
    ``*``: persons of the global control group vs everyone sent anything.
    """
    ev = facts[facts["event_type"].isin(["send", "control"])]
    if global_control:
        ctrl = ev[(ev["event_type"] == "control") & (ev["scope"] == "global")]
        sent = ev[ev["event_type"] == "send"]
        ev = pd.concat([sent, ctrl]).assign(campaign="*")
    else:
        ev = ev[~((ev["event_type"] == "control") & (ev["scope"] == "global"))]
    ev = ev.sort_values("ts", kind="stable")
    first = ev.groupby(["campaign", "unified_id"], sort=True).head(1)
    first = first.assign(treated=first["event_type"].eq("send"))[
        ["campaign", "unified_id", "ts", "treated"]
    ]
    o = orders[["unified_id", "ts", "amount"]].rename(columns={"ts": "order_ts"})
    j = first.merge(o, on="unified_id", how="left")
    inside = (j["order_ts"] > j["ts"]) & (j["order_ts"] <= j["ts"] + pd.Timedelta(days=window_days))
    j = j.assign(orders=inside.astype(int), revenue=j["amount"].where(inside, 0.0).fillna(0.0))
    per = (
        j.groupby(["campaign", "unified_id"], sort=True)
        .agg(treated=("treated", "first"), orders=("orders", "sum"), revenue=("revenue", "sum"))
        .reset_index()
    )
    per["converted"] = per["orders"] > 0
    return {
        str(k): g.drop(columns="campaign").reset_index(drop=True)
        for k, g in per.groupby("campaign")
    }
