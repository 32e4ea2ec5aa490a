"""Pareto/NBD model (Schmittlein, Morrison & Colombo 1987), fitted as in Fader, Hardie & Lee (2005).

While alive, purchases follow a Poisson process with rate ``lambda ~ Gamma(r,
alpha)``; lifetimes are exponential with rate ``mu ~ Gamma(s, beta)`` (dropout
can happen at any time, unlike BG/NBD where it follows a purchase). Same
summary and assumptions as :mod:`models.clv.btyd` (non-contractual, repeat
purchases). The likelihood is Fader, Hardie & Lee's "A note on implementing the
Pareto/NBD model in MATLAB" (2005), eqs. 1-3, evaluated in log space; the
gradient is by central finite differences (the fit is slower than BG/NBD's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cip.models.clv._mle import as_array, check_summary, fit_log_params, group_rows
from cip.profiles.errors import DataError
from scipy.special import expit, gammaln, hyp2f1
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["ParetoNBDModel", "simulate_pareto_nbd"]


def _log_terms(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray):
    """``(log of the 'alive at T' term, log of the 'died in (t_x, T]' term)`` without the common factor."""
    r, alpha, s, beta = params
    rsx = r + s + x
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    if alpha >= beta:
        big, small, b2 = alpha, beta, s + 1.0
    else:
        big, small, b2 = beta, alpha, r + x

    def log_f(y: np.ndarray) -> np.ndarray:
        return np.log(hyp2f1(rsx, b2, rsx + 1.0, (big - small) / y)) - rsx * np.log(y)

    f1, f2 = log_f(big + t_x), log_f(big + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = f1 + np.log(-np.expm1(np.minimum(f2 - f1, -1e-300)))
    died = np.log(s) - np.log(rsx) + diff
    return alive, died


class ParetoNBDModel(BaseEstimator):
    """Pareto/NBD: expected repeat purchases and probability alive.

    Args:
        penalizer: L2 penalty on the parameters. max_iter: L-BFGS-B iterations.

    Attributes:
        r_, alpha_, s_, beta_: fitted parameters (``alpha_``, ``beta_`` in the data's time unit).
    """

    def __init__(self, penalizer: float = 0.0, max_iter: int = 500) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    @staticmethod
    def _log_lik(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = params
        alive, died = _log_terms(params, x, t_x, T)
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return common + np.logaddexp(alive, died)

    def fit(self, frequency: Any, recency: Any, T: Any) -> ParetoNBDModel:
        """Fit on one row per customer. Returns self."""
        x, t_x, T_ = check_summary(frequency, recency, T)
        (gx, gt, gT), w = group_rows(x, t_x, T_)
        scale = float(np.max(gT)) or 1.0
        gt, gT = gt / scale, gT / scale
        total = float(w.sum())

        def value(p: np.ndarray) -> float:
            return -float(np.dot(w, self._log_lik(p, gx, gt, gT))) / total

        def neg_ll(p: np.ndarray) -> tuple[float, np.ndarray]:
            v = value(p)
            h = 1e-6 * p
            g = np.array(
                [(value(p + e) - value(p - e)) / (2 * e[i]) for i, e in enumerate(np.diag(h))]
            )
            return v, g

        params, _, ok = fit_log_params(
            neg_ll,
            ((1.0, 1.0, 1.0, 1.0), (0.5, 0.2, 0.5, 0.5)),
            penalizer=self.penalizer,
            max_iter=self.max_iter,
        )
        self.r_, alpha, self.s_, beta = (float(v) for v in params)
        self.alpha_, self.beta_ = alpha * scale, beta * scale
        self.log_likelihood_ = float(
            np.dot(w, self._log_lik(self._p(), gx, gt * scale, gT * scale))
        )
        self.n_customers_ = len(x)
        self.converged_ = ok
        return self

    @property
    def params_(self) -> dict[str, float]:
        """``{"r", "alpha", "s", "beta"}``."""
        check_is_fitted(self, "r_")
        return {"r": self.r_, "alpha": self.alpha_, "s": self.s_, "beta": self.beta_}

    def _p(self) -> np.ndarray:
        check_is_fitted(self, "r_")
        return np.array([self.r_, self.alpha_, self.s_, self.beta_])

    def p_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(alive at T | x, t_x, T) = 1 / (1 + (s/(r+s+x)) (alpha+T)^(r+x) (beta+T)^s A0)."""
        x, t_x, T_ = check_summary(frequency, recency, T)
        alive, died = _log_terms(self._p(), x, t_x, T_)
        return expit(alive - died)

    def expected_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """E[Y(t) | x, t_x, T] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)."""
        if t < 0:
            raise DataError(f"the prediction period t must be >= 0, got {t}")
        x, t_x, T_ = check_summary(frequency, recency, T)
        r, alpha, s, beta = self._p()
        s1 = s - 1.0 if abs(s - 1.0) > 1e-6 else 1e-6
        ratio = -np.expm1(s1 * np.log((beta + T_) / (beta + T_ + t))) / s1
        return (r + x) * (beta + T_) / (alpha + T_) * ratio * self.p_alive(x, t_x, T_)


def simulate_pareto_nbd(
    params: dict[str, float], T: Any, random_state: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(frequency, recency)`` from Pareto/NBD for ages ``T`` (vectorised)."""
    T = as_array(T, "T")
    rng = np.random.default_rng(random_state)
    n = len(T)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
    end = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * end)
    t_x = np.where(x > 0, end * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    return x.astype(np.float64), t_x
