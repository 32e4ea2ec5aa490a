"""Run every benchmark in turn (what ``make bench`` runs); slow: tens of minutes.

    python -m benchmarks.run_all [--only NAME ...] [--skip NAME ...]

Each benchmark runs in its own process with its default arguments and prints
its own report; this script prints one line per benchmark (exit code, seconds)
and exits non-zero when any failed. Benchmarks that need the real data sets
(``../shared/data`` or ``$CIP_SHARED``) say so and fail when they are absent.
Copy the figures you want to keep into ``benchmarks/RESULTS.md`` with the
command, date, machine and load average.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

#: every benchmark module, cheapest first
BENCHMARKS = [
    "identity_fake1000",
    "simulate_signal",
    "ingest_speed",
    "objstore_retail",
    "ingest_incremental",
    "identity_speed",
    "segments_speed",
    "score_speed",
    "recommender_speed",
    "recommender_quality",
    "models_quality",
    "features_speed",
    "simulate_speed",
    "serving",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="Run only these benchmarks.")
    ap.add_argument("--skip", nargs="*", default=[], help="Leave these out.")
    args = ap.parse_args()
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    results = []
    for name in names:
        print(f"=== benchmarks.{name}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        results.append((name, code, time.perf_counter() - t0))
    print("\nbenchmark             exit   seconds")
    for name, code, secs in results:
        print(f"{name:<22}{code:>4}{secs:>10.1f}")
    return 1 if any(code for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
