"""Speed of campaign recommendations (``cip recommend --all``): persons per second.

Fits ``personal`` (ALS), ``buy_again`` and ``popular`` on Online Retail before
2011-09-01 (4,624 items), then builds the campaign rows of
:func:`cip.pipelines.workflows.blocks.campaign_rows` (top ``--n`` per person,
the block's rules on) for ``--people`` requests. Online Retail has ~4,000
customers with history, so the request list repeats them (every request is a
person with a real history; the per-request work does not depend on how many
distinct persons the history holds). ``--workers`` > 1 splits the list over
forked processes. ``--reference N`` also times, in the same run and one
process, ``BlockSet.recommend`` (the per-request path ``/recommend`` uses) for the
first ``N`` persons against the vectorised campaign path on the same persons.

    python -m benchmarks.blocks_campaign [--people 1000000] [--block personal] [--workers 2]
        [--reference 5000]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd
from cip.models.recommender.blocks.saved import fit_named_blocks
from cip.pipelines.workflows.blocks import campaign_rows

from benchmarks._util import load_average, machine, stamp
from benchmarks.recommender_data import online_retail_baskets

RULES = {"in_stock_only": True, "exclude_purchased": True, "max_per_category": 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--block", default="personal")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument(
        "--reference",
        type=int,
        default=0,
        help="also time the per-request path on this many persons (0: skip)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lines, products = online_retail_baskets()
    lines = lines[lines["ts"] < "2011-09-01"]
    spec = {
        "personal": {
            "kind": "personal",
            "params": {"algorithm": "als", "params": {"random_state": 0}},
            "rules": RULES,
        },
        "buy_again": {"kind": "buy_again", "rules": {"in_stock_only": True}},
        "popular": {"kind": "popular", "rules": RULES},
    }
    t = time.perf_counter()
    saved = fit_named_blocks(lines, products, None, {args.block: spec[args.block]}, "2011-09-01")
    fit_s = time.perf_counter() - t
    users = saved.blocks.history.users.to_numpy()
    ids = np.resize(users, args.people)
    people = pd.DataFrame({"unified_id": ids, "customer_id": ids})
    t = time.perf_counter()
    rows = campaign_rows(saved, people, args.block, args.n, chunk=args.chunk, workers=args.workers)
    s = time.perf_counter() - t
    print(f"# blocks_campaign, {stamp()}, {machine()}, {load_average()}")
    if args.reference:
        few = people.iloc[: args.reference]
        bs = saved.blocks
        t = time.perf_counter()
        for u in few["unified_id"].tolist():
            bs.recommend(args.block, u, k=args.n)
        one = time.perf_counter() - t
        t = time.perf_counter()
        campaign_rows(saved, few, args.block, args.n, chunk=args.chunk, workers=1)
        many = time.perf_counter() - t
        print(
            f"same {args.reference:,} persons, 1 process: per-request path "
            f"{args.reference / one:,.0f} persons/s, vectorised {args.reference / many:,.0f} "
            f"persons/s (x{one / many:.1f})"
        )
    print(
        f"block {args.block}: fit {fit_s:.1f} s; {args.people:,} persons (top {args.n}, rules on) "
        f"in {s:.1f} s = {args.people / s:,.0f} persons/s with {args.workers} worker(s), "
        f"chunk {args.chunk}; {len(rows):,} rows; at the end {load_average()}"
    )


if __name__ == "__main__":
    main()
