"""Coverage of the lift intervals on the campaign simulator (issue M acceptance).

For ``--seeds`` seeds, a randomised campaign with known true effects (and
another with the effect set to zero): how many 95 % intervals cover the true
lift (conversion: Newcombe; revenue and orders per person: Welch), and how many
zero-effect intervals exclude zero.

    .venv/bin/python -m benchmarks.lift_coverage [--persons 4000] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import time

from cip.activation.measure import lift
from cip.pipelines.simulator.campaigns import simulate_campaigns

_TRUTH = {
    "conversion_rate": "true_conversion_lift",
    "revenue_per_person": "true_revenue_lift",
    "orders_per_person": "true_orders_lift",
}


def run(persons: int = 4000, seeds: int = 20, control_pct: float = 50.0) -> dict:
    """Coverage counts per metric with the effect on, false alarms with it off."""
    started = time.perf_counter()
    cover = dict.fromkeys(_TRUTH, 0)
    alarms = dict.fromkeys(_TRUTH, 0)
    for seed in range(seeds):
        sim = simulate_campaigns(persons, seed=seed, control_pct=control_pct)
        res = lift(sim.assignments, "c0")
        for metric, col in _TRUTH.items():
            m = res.metric(metric)
            cover[metric] += m.ci_low <= float(sim.truth[col].iloc[0]) <= m.ci_high
        null = simulate_campaigns(persons, seed=10_000 + seed, control_pct=control_pct, effect=0)
        res0 = lift(null.assignments, "c0")
        for metric in _TRUTH:
            alarms[metric] += res0.metric(metric).significant
    return {
        "persons": persons,
        "seeds": seeds,
        "control_pct": control_pct,
        "covered_true_effect": cover,
        "zero_effect_excluding_zero": alarms,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--persons", type=int, default=4000)
    p.add_argument("--seeds", type=int, default=20)
    args = p.parse_args()
    print(json.dumps(run(args.persons, args.seeds), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
