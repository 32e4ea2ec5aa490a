"""Benchmark: the prediction part of CLV scoring with one LightGBM thread vs all cores.

Loads the ``cip-clv`` champion and the 1 M-profile score frame of a store kept by
``python -m benchmarks.clv_train_speed --keep DIR``, then times
:func:`cip.models.clv.predict_clv` (BTYD outputs and the two-part LightGBM) with
``n_jobs=1`` and ``n_jobs=0`` (all cores), interleaved ``--repeats`` times in one
process (wall and CPU seconds, load average after each), and checks that every
run's outputs equal the first one's exactly.

Run: ``python -m benchmarks.clv_score_threads --folder /tmp/kspeed1m [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from benchmarks._util import load_average, machine, stamp


def main() -> None:
    from cip.features import data_end
    from cip.models.clv import load_clv_champion, predict_clv
    from cip.models.clv.frames import clv_score_frame
    from cip.profiles.store import open_store

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folder", type=Path, required=True, help="a clv_train_speed --keep folder")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{stamp()}; {machine()}; {load_average()} at start")
    champ = load_clv_champion(f"sqlite:///{args.folder / 'mlflow.db'}")
    if champ is None:
        raise SystemExit("no cip-clv champion in that folder: run clv_train_speed --keep first")
    version, model = champ
    with open_store("duckdb", path=str(args.folder / "cip.duckdb"), read_only=True) as store:
        as_of = pd.Timestamp(data_end(store)).date()
        frame = clv_score_frame(store, as_of, model.horizon_days)
    print(f"{len(frame):,} profiles as of {as_of}")
    ref = None
    for rep in range(args.repeats):
        for n in (1, 0):
            c0, t0 = time.process_time(), time.perf_counter()
            out = predict_clv(model, frame, as_of, version, n_jobs=n)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"repeat {rep} n_jobs {n}: wall {wall:.1f} s, CPU {cpu:.1f} s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if ref is None:
                ref = out
            else:
                pd.testing.assert_frame_equal(out, ref, check_exact=True)
    print(f"outputs identical across thread counts; {load_average()} at end")


if __name__ == "__main__":
    main()
