"""Pareto/NBD: parameter recovery and conditional expectations against simulated futures."""

from __future__ import annotations

import numpy as np
import pytest
from cip.models.clv.pareto import ParetoNBDModel, simulate_pareto_nbd

P = {"r": 0.6, "alpha": 50.0, "s": 1.5, "beta": 100.0}  # days; mean lifetime 200 days


def test_pareto_nbd_recovers_its_parameters() -> None:
    T = np.random.default_rng(5).uniform(180, 540, 50_000)
    x, t_x = simulate_pareto_nbd(P, T, random_state=5)
    m = ParetoNBDModel().fit(x, t_x, T)
    assert m.converged_
    errors = {k: abs(m.params_[k] / v - 1) for k, v in P.items()}
    assert max(errors.values()) < 0.10, errors


def test_pareto_nbd_expectations_match_simulation() -> None:
    rng = np.random.default_rng(2)
    n, t = 40_000, 183.0
    T = rng.uniform(100, 400, n)
    lam = rng.gamma(P["r"], 1 / P["alpha"], n)
    mu = rng.gamma(P["s"], 1 / P["beta"], n)
    death = rng.exponential(1 / mu)
    seen = np.minimum(death, T)
    x = rng.poisson(lam * seen).astype(float)
    t_x = np.where(x > 0, seen * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    future = rng.poisson(lam * np.clip(np.minimum(death, T + t) - T, 0, None))
    m = ParetoNBDModel()
    m.r_, m.alpha_, m.s_, m.beta_ = P.values()
    e = m.expected_purchases(t, x, t_x, T)
    assert e.sum() == pytest.approx(future.sum(), rel=0.03)
    p = m.p_alive(x, t_x, T)
    assert ((p > 0) & (p <= 1)).all()
    # P(alive) is calibrated: mean P(alive) = share truly alive at T
    assert p.mean() == pytest.approx((death > T).mean(), abs=0.01)
