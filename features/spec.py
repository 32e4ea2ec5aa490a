"""Feature-set parameters, the feature spec record and the time conventions.

Time convention (defined once, used everywhere)
-----------------------------------------------
Every feature and label is computed *as of* an explicit instant ``as_of``
(a date means midnight UTC of that date; timestamps are naive UTC, as in the
store).

* **Features** see only records with ``ts < as_of`` (strictly before).
  A window of ``w`` days is the half-open interval ``[as_of - w days, as_of)``.
* **Labels** look at the horizon ``[as_of, as_of + horizon)``: the half-open
  twin of the issue's ``(as_of, as_of + horizon]`` chosen so that the intervals
  tile the time line. A record at exactly ``as_of`` belongs to the label horizon
  and never to the features; the label horizon of ``as_of`` is exactly what the
  features of ``as_of + horizon`` see as their most recent ``horizon`` days.
  Nothing is counted twice and nothing falls between the two.

Durations (recency, tenure, inter-purchase intervals) are in fractional days,
computed from whole-second epoch timestamps (sub-second parts are dropped so
that DuckDB, PostgreSQL and Spark agree to the last bit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
from cip.profiles.errors import ConfigError

__all__ = [
    "FEATURE_SET_VERSION",
    "FeatureParams",
    "FeatureSpec",
    "RFM_COLUMNS",
    "KEY_COLUMNS",
    "SCORE_COLUMNS",
    "to_as_of",
    "iso",
]

#: Version of the feature definitions; bump whenever a definition changes.
FEATURE_SET_VERSION = "v1"

#: Key columns of every feature table, in order.
KEY_COLUMNS: tuple[str, ...] = ("unified_id", "as_of")

#: The numeric RFM features used by the logistic-regression baseline.
RFM_COLUMNS: list[str] = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "days_since_first",
    "monetary_365d",
]

#: RFM quintile scores (nullable ints 1-5) and the named segment (string).
SCORE_COLUMNS: tuple[str, ...] = ("rfm_segment", "r_score", "f_score", "m_score")

_DEFAULT_EVENT_TYPES = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "search",
    "email_send",
    "email_open",
    "email_click",
)


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the feature set (immutable; part of a snapshot's identity).

    Attributes:
        windows: Window lengths in days for windowed counts and revenue
            (``orders_30d``, ``revenue_90d``, ``page_view_7d``, ...).
        lookback_days: Look-back window of ``frequency``, ``monetary``, rates and
            shares (``[as_of - lookback_days, as_of)``).
        event_types: Event types that get a count column per window.
        channels: Channels that get an order-share column (``channel_share_web``).
        low_review_max: A review with ``rating <= low_review_max`` is a low review.
        trend_windows: Windows of the spend trends (last ``w`` days vs the ``w``
            days before).
    """

    windows: tuple[int, ...] = (7, 30, 90, 365)
    lookback_days: int = 365
    event_types: tuple[str, ...] = _DEFAULT_EVENT_TYPES
    channels: tuple[str, ...] = ("web", "app", "store")
    low_review_max: float = 2.0
    trend_windows: tuple[int, ...] = (30, 90)

    def __post_init__(self) -> None:
        for name in ("windows", "event_types", "channels", "trend_windows"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ConfigError(f"FeatureParams.{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("windows", "trend_windows"):
            vals = getattr(self, name)
            if not vals or any(not isinstance(w, int) or w <= 0 for w in vals):
                raise ConfigError(f"FeatureParams.{name} must be positive whole days, got {vals}")
            if len(set(vals)) != len(vals):
                raise ConfigError(f"FeatureParams.{name} has duplicates: {vals}")
        if not isinstance(self.lookback_days, int) or self.lookback_days <= 0:
            raise ConfigError(f"FeatureParams.lookback_days must be > 0, got {self.lookback_days}")
        for name in ("event_types", "channels"):
            bad = [v for v in getattr(self, name) if not v.isidentifier()]
            if bad:
                raise ConfigError(f"FeatureParams.{name}: {bad} cannot be used in column names")

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view (for logging and MLflow params)."""
        return {
            "windows": list(self.windows),
            "lookback_days": self.lookback_days,
            "event_types": list(self.event_types),
            "channels": list(self.channels),
            "low_review_max": self.low_review_max,
            "trend_windows": list(self.trend_windows),
        }


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of the catalog.

    Attributes:
        name: Column name in the feature table.
        description: What the value means (units, window, NaN rule).
        dtype: pandas dtype of the column (``float64``, ``int64``, ``Int64``, ``str``).
        window: Window in days, or ``None`` for all history before ``as_of``.
        source_table: Canonical table(s) the feature reads (``orders``,
            ``events``, ``order_lines+products``, ...). Features reading
            ``events`` or ``products`` are absent when those tables are empty.
        group: Feature group (``rfm``, ``orders``, ``events``, ``categories``, ``scores``).
    """

    name: str
    description: str
    dtype: str
    window: int | None
    source_table: str
    group: str


def to_as_of(value: Any) -> pd.Timestamp:
    """Normalise an ``as_of`` (date, datetime, string or Timestamp) to a naive UTC Timestamp.

    A date (or a date string) means midnight UTC; an aware timestamp is converted
    to UTC and made naive, like every timestamp in the store.
    """
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid as_of {value!r}: {exc}") from None
    if ts is pd.NaT:
        raise ConfigError("as_of must be a date or timestamp, not missing")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def iso(ts: pd.Timestamp) -> str:
    """JSON-friendly text of an ``as_of``: ``YYYY-MM-DD`` at midnight, else ISO 8601."""
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()
