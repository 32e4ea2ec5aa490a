"""Small portable Ibis helpers shared by the feature groups (private)."""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd

SECONDS_PER_DAY = 86400.0


def ts_lit(ts: pd.Timestamp) -> Any:
    """A timestamp literal (naive UTC)."""
    return ibis.literal(ts.to_pydatetime(), type="timestamp")


def window_start(as_of: pd.Timestamp, days: int) -> Any:
    """Literal for ``as_of - days`` (start of the window ``[as_of - days, as_of)``)."""
    return ts_lit(as_of - pd.Timedelta(days=days))


def epoch(expr: Any) -> Any:
    """Whole epoch seconds of a timestamp column, as float64 (identical on every backend)."""
    return expr.epoch_seconds().cast("float64").floor().cast("float64")


def _sec(ts: pd.Timestamp) -> int:
    """Whole epoch seconds of a naive UTC Timestamp (floor)."""
    return int((ts - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1))


def days_before(as_of: pd.Timestamp, ts_expr: Any) -> Any:
    """Fractional days from ``ts_expr`` to ``as_of`` (NULL stays NULL)."""
    return (ibis.literal(float(_sec(as_of))) - epoch(ts_expr)) / SECONDS_PER_DAY


#: money is summed in whole micro-units (1e-6 of the currency) as 64-bit integers: an integer
#: sum is exact in any order, so every engine (DuckDB's parallel aggregation, Spark's partial
#: aggregates) and every run gives bit-identical totals; float sums differ in the last bits
MICROS = 1_000_000


def micros(amount: Any) -> Any:
    """``amount`` in whole micro-units as int64 (rounded half away from zero on every engine)."""
    return (amount.cast("float64") * MICROS).round().cast("int64")


def from_micros(total: Any) -> Any:
    """A sum of :func:`micros` back in currency units, as float64 (exact up to 2**53 micros)."""
    return total.cast("int64").cast("float64") / float(MICROS)


def money_sum(amount: Any, where: Any = None) -> Any:
    """Exact, order-independent ``SUM(amount)`` (optionally ``FILTER (WHERE where)``)."""
    return from_micros(micros(amount).sum(where=where))


def ratio(num: Any, den: Any) -> Any:
    """``num / den`` as float64, NULL when ``den`` is 0 or NULL."""
    den_f = den.cast("float64")
    return ibis.ifelse(den_f == 0, ibis.null("float64"), num.cast("float64") / den_f)


def zero(expr: Any) -> Any:
    """``expr`` with NULL replaced by 0 (counts and sums of empty windows)."""
    return expr.fill_null(0)


def least_of(a: Any, b: Any) -> Any:
    """NULL-ignoring minimum of two columns (portable: LEAST differs on NULLs)."""
    return ibis.least(a.fill_null(b), b.fill_null(a))


def to_frame(expr: Any, dtypes: dict[str, str]) -> pd.DataFrame:
    """Run ``expr`` sorted by ``unified_id`` and hand it over as pandas with ``dtypes``.

    Goes through Arrow with ``self_destruct`` so the result is held about once, not
    three times (1 M persons x 90 features is ~0.7 GB per copy).
    """
    tbl = expr.order_by("unified_id").to_pyarrow()
    df = tbl.to_pandas(split_blocks=True, self_destruct=True)
    del tbl
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
    return df.astype({c: t for c, t in dtypes.items() if c in df.columns})
