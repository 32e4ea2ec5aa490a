"""Best channel / send hour on the campaign simulator vs each person's true preference.

Many weekly campaigns to a simulated population (random channel and send hour
per message); :func:`cip.activation.measure.preferences.best_channel_and_hour`
picks each person's channel and hour from their clicks and purchases. Reported:
for persons with 5+ responses, the share whose chosen channel is their true
preferred channel, against the default-channel baseline, and the share whose
chosen hour is within 2 hours of their true hour.

    .venv/bin/python -m benchmarks.best_channel_sim [--persons 3000] [--campaigns 30]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from cip.activation.measure.preferences import best_channel_and_hour
from cip.pipelines.simulator.campaigns import simulate_campaigns


def run(persons: int = 3000, campaigns: int = 30, seed: int = 0) -> dict:
    """Accuracy of the chosen channel and hour against the simulated truth."""
    started = time.perf_counter()
    sim = simulate_campaigns(
        persons, campaigns=campaigns, seed=seed, control_pct=10, audience_share=0.6
    )
    best = best_channel_and_hour(sim.message_events, sim.orders, min_responses=5)
    j = best.merge(sim.persons, on="unified_id")
    own = j[j["basis"] == "person"]
    default = (
        j.loc[j["basis"] == "default", "channel"].iloc[0]
        if (j["basis"] == "default").any()
        else None
    )
    return {
        "persons": persons,
        "campaigns": campaigns,
        "seed": seed,
        "persons_with_5_plus_responses": len(own),
        "channel_match": round(float((own["channel"] == own["preferred_channel"]).mean()), 3),
        "default_channel": default,
        "default_channel_match": round(
            float((own["preferred_channel"] == (default or own["channel"].mode()[0])).mean()), 3
        ),
        "hour_within_2h": round(
            float((np.abs(own["hour"].astype(int) - own["preferred_hour"]) <= 2).mean()), 3
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--persons", type=int, default=3000)
    p.add_argument("--campaigns", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps(run(args.persons, args.campaigns, args.seed), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
