"""Shared maximum-likelihood machinery of the buy-till-you-die estimators (private).

The models are fitted on the customer summary *grouped by unique rows*: a
customer base of 1 M persons with whole-day recency and age has a few hundred
thousand distinct ``(frequency, recency, T)`` rows, each weighted by its count,
so one log-likelihood evaluation is a handful of vectorised ``gammaln`` /
``betaln`` calls. Parameters are optimised on the log scale (all are positive)
with L-BFGS-B (Byrd et al., 1995), starting from several points; times are
rescaled internally to a unit of order one so the optimiser sees well-conditioned
numbers, and the time-scale parameters are scaled back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from cip.profiles.errors import DataError
from scipy.optimize import minimize

_LOG_BOUND = 25.0  # |log parameter| <= 25: exp(25) = 7e10 (a degenerate fit stops there)


def as_array(values: object, name: str) -> np.ndarray:
    """A finite 1-D float array, or a one-line :class:`DataError` naming ``name``."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} has missing or infinite values")
    return a


def check_summary(frequency: object, recency: object, T: object) -> tuple[np.ndarray, ...]:
    """Validate a ``(frequency, recency, T)`` summary: ``0 <= recency <= T``, ``frequency >= 0``.

    Raises:
        DataError: with one line naming the first violated rule.
    """
    x, t_x, T_ = (
        as_array(v, n) for v, n in ((frequency, "frequency"), (recency, "recency"), (T, "T"))
    )
    if not len(x) == len(t_x) == len(T_):
        raise DataError(
            f"frequency, recency and T differ in length ({len(x)}, {len(t_x)}, {len(T_)})"
        )
    if len(x) == 0:
        raise DataError("the customer summary is empty: no customer with a purchase")
    if (x < 0).any() or (np.round(x) != x).any():
        raise DataError("frequency must be a whole number >= 0 (repeat purchases)")
    if (t_x < 0).any() or (t_x > T_ + 1e-9).any():
        raise DataError("recency must lie in [0, T] (time from first to last purchase)")
    if ((x == 0) & (t_x > 0)).any():
        raise DataError("a customer without repeat purchases must have recency 0")
    return x, t_x, T_


def group_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the columns and how often each occurs (the likelihood's weights)."""
    df = pd.DataFrame({f"c{i}": c for i, c in enumerate(columns)})
    g = df.groupby(list(df.columns), sort=False, observed=True).size()
    keys = g.index.to_frame(index=False)
    return [keys[f"c{i}"].to_numpy(dtype=np.float64) for i in range(len(columns))], g.to_numpy(
        dtype=np.float64
    )


def fit_log_params(
    neg_ll: Callable[[np.ndarray], tuple[float, np.ndarray]],
    starts: Sequence[Sequence[float]],
    *,
    penalizer: float = 0.0,
    max_iter: int = 1000,
) -> tuple[np.ndarray, float, bool]:
    """Minimise ``neg_ll(params) + penalizer * sum(params ** 2)`` over positive ``params``.

    ``neg_ll`` returns the value and its gradient with respect to ``params``.
    Optimises ``log(params)`` with L-BFGS-B from the first start; the other starts
    are tried only when that run does not converge. Returns the best
    ``(params, objective, converged)``.
    """
    best: tuple[np.ndarray, float, bool] | None = None

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.exp(z)
        v, g = neg_ll(p)
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            return 1e300, np.zeros_like(z)
        return v + penalizer * float(np.sum(p**2)), (g + 2.0 * penalizer * p) * p

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(starts[0])
    for s in starts:
        res = minimize(
            objective,
            np.log(np.asarray(s, dtype=np.float64)),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9},
        )
        if best is None or res.fun < best[1]:
            best = (np.exp(res.x), float(res.fun), bool(res.success))
        if best[2]:
            break
    assert best is not None
    return best
