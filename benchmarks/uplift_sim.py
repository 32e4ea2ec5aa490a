"""Uplift on the campaign simulator: does targeting by uplift beat targeting by purchase probability?

Trains the T- and X-learners (:mod:`cip.models.uplift`) on one randomised
campaign of the simulator (:mod:`cip.pipelines.simulator.campaigns`), then on a
fresh campaign over new persons of the same shop compares the top 30 % by the
champion's uplift with the top 30 % by purchase probability in TRUE incremental
conversions (the sum of each targeted person's ``p1 - p0``), and reports the
precision of the "sleeping dog" flags (predicted uplift below -0.05, the
threshold ``cip train uplift`` flags with; and below zero).

    .venv/bin/python -m benchmarks.uplift_sim [--persons 20000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from cip.models.uplift import fit_uplift
from cip.pipelines.simulator.campaigns import FEATURES, simulate_campaigns
from cip.pipelines.workflows.measure import SLEEPING_DOG_THRESHOLD


def run(persons: int = 20000, seed: int = 0, k: float = 0.3) -> dict:
    """Train on one simulated campaign, measure on another; returns the figures."""
    started = time.perf_counter()
    train = simulate_campaigns(persons, seed=seed, control_pct=50)
    a = train.assignments.merge(train.persons, on="unified_id", suffixes=("", "_truth"))
    res = fit_uplift(
        a[list(FEATURES)], a["treated"].to_numpy(), a["converted"].to_numpy(), seed=seed
    )
    fresh = simulate_campaigns(persons, seed=seed + 1000, control_pct=0)
    b = fresh.assignments.merge(fresh.persons, on="unified_id", suffixes=("", "_truth"))
    X = b[list(FEATURES)]
    true_gain = (b["p1"] - b["p0"]).to_numpy()
    uplift = res.model.predict(X)
    buy = res.purchase_model.predict_proba(X)[:, 1]
    n = int(round(k * len(b)))
    top_u = np.argsort(-uplift, kind="stable")[:n]
    top_p = np.argsort(-buy, kind="stable")[:n]
    dogs = b["response_type"].to_numpy() == "sleeping_dog"
    flagged = uplift < -SLEEPING_DOG_THRESHOLD
    negative = uplift < 0
    out = {
        "persons": persons,
        "seed": seed,
        "k": k,
        "train": res.as_dict(),
        "top_k_true_incremental_conversions": {
            "uplift": round(float(true_gain[top_u].sum()), 1),
            "purchase_probability": round(float(true_gain[top_p].sum()), 1),
            "random_expected": round(float(true_gain.mean() * n), 1),
        },
        "sleeping_dogs": {
            "true": int(dogs.sum()),
            "flagged": int(flagged.sum()),
            "precision": round(float(dogs[flagged].mean()), 3) if flagged.any() else None,
            "recall": round(float(flagged[dogs].mean()), 3) if dogs.any() else None,
            "threshold": -SLEEPING_DOG_THRESHOLD,
            "negative_uplift": int(negative.sum()),
            "negative_precision": round(float(dogs[negative].mean()), 3)
            if negative.any()
            else None,
            "base_rate": round(float(dogs.mean()), 3),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--persons", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = run(args.persons, args.seed)
    print(json.dumps(res, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
