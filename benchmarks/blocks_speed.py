"""Speed of the recommendation blocks in process: one request per block (rules on) and a batch.

Fits every block on Online Retail before 2011-09-01 (4,624 items), then times
``BlockSet.recommend`` for known customers / their last item, with the rules
``in_stock_only``, ``exclude_purchased`` and ``max_per_category=3``, and
``recommend_many`` for every customer. In-process figures: the HTTP service adds
its own overhead (see benchmarks/serving.py).

    python -m benchmarks.blocks_speed [--requests 2000]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from cip.models.recommender.blocks import fit_blocks

from benchmarks._util import load_average, machine, stamp
from benchmarks.recommender_data import online_retail_baskets

RULES = {"in_stock_only": True, "exclude_purchased": True, "max_per_category": 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lines, products = online_retail_baskets()
    lines = lines[lines["ts"] < "2011-09-01"]
    t = time.perf_counter()
    blocks = {
        n: {} for n in ("buy_again", "bought_together", "similar", "upsell", "popular", "trending")
    }
    blocks["personal"] = {"algorithm": "als", "params": {"random_state": 0}}
    bs = fit_blocks(lines, products, as_of="2011-09-01", blocks=blocks)
    fit_s = time.perf_counter() - t
    print(f"# blocks_speed, {stamp()}, {machine()}, {load_average()}")
    print(f"fit of {len(blocks)} blocks on {len(lines):,} lines: {fit_s:.1f} s\n")
    rng = np.random.default_rng(0)
    users = rng.choice(bs.history.users.to_numpy(), args.requests)
    last = (
        lines.sort_values("ts")
        .drop_duplicates("user_id", keep="last")
        .set_index("user_id")["item_id"]
    )
    print(
        "Per request: the single-request path (`recommend`, now) and the dense batch-of-one\n"
        "path it replaced (`queries` + `_run_dense`, before), interleaved in one run.\n"
    )
    print(
        "| block | now p50 µs | now p99 µs | now mean µs | before p50 µs | before p99 µs "
        "| before mean µs |\n|---|---|---|---|---|---|---|"
    )
    for name in blocks:
        now, before = [], []
        for u in users:  # one request at a time, as the service answers them
            s = time.perf_counter()
            bs.recommend(name, user_id=u, items=[last[u]], k=10, rules=RULES)
            now.append(time.perf_counter() - s)
            s = time.perf_counter()
            bs._run_dense(name, bs.queries([u], [[last[u]]], None, [None]), 10, RULES, True)
            before.append(time.perf_counter() - s)
        a, b = np.array(now) * 1e6, np.array(before) * 1e6
        print(
            f"| {name} | {np.percentile(a, 50):.0f} | {np.percentile(a, 99):.0f} | "
            f"{a.mean():.0f} | {np.percentile(b, 50):.0f} | {np.percentile(b, 99):.0f} | "
            f"{b.mean():.0f} |"
        )
    everyone = bs.history.users.to_numpy()
    for name in ("personal", "buy_again"):
        t = time.perf_counter()
        df = bs.recommend_many(name, everyone, k=6, rules={"in_stock_only": True})
        s = time.perf_counter() - t
        print(
            f"\nrecommend_many {name}: {len(everyone):,} customers x 6 in {s:.1f} s ({len(everyone) / s:,.0f} per s), {len(df):,} rows"
        )
    print(f"\n{load_average()}")


if __name__ == "__main__":
    main()
