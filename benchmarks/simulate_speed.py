"""Simulator speed: ``simulate(customers=N, days=D)`` in a fresh process, wall time and peak RSS.

Target: 100k customers over 365 days in under 2 minutes on 2 cores; memory
bounded by the chunk size (people are simulated 50k at a time), so 1M works too.

    python -m benchmarks.simulate_speed [--customers 100000] [--days 365] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks._util import load_average, machine, run_child, stamp

CHILD = r"""
import json, sys, time
from pathlib import Path
from cip.pipelines.simulator import simulate
out, n, days, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
res = simulate(out, customers=n, days=days, seed=seed)
t1 = time.perf_counter()
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(json.dumps({"simulate_s": round(t1 - t0, 2), "rows": res.counts,
                  "total_rows": sum(res.counts.values()), "truth_rows": res.truth_rows,
                  "output_mib": round(size / 2**20, 1)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="cip-bench-simulate-"))
    try:
        res = run_child(CHILD, str(d), str(args.customers), str(args.days), str(args.seed))
        res.update(
            customers=args.customers,
            days=args.days,
            machine=machine(),
            when=stamp(),
            load=load_average(),
        )
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
