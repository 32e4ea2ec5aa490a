"""Probabilistic identity resolution on splink_datasets ``fake_1000`` (no labels used).

Runs :func:`profiles.resolve_identities` with fuzzy fields first_name, surname
(name), dob (date), city (text) and email (email), trains the Splink model
unsupervised, and scores the result against the ``cluster`` column with
pairwise precision, recall and F1.

Usage::

    python -m benchmarks.identity_fake1000 [PATH_TO_fake_1000.csv] [--thresholds 0.5,0.9]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import pandas as pd

FIELDS = {"first_name": "name", "surname": "name", "dob": "date", "city": "text", "email": "email"}


def default_path() -> Path:
    shared = os.environ.get("CIP_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return base / "data" / "identity" / "fake_1000.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", type=Path, default=default_path())
    ap.add_argument("--thresholds", default="0.5,0.7,0.9,0.95")
    args = ap.parse_args(argv)
    if not args.path.is_file():
        raise SystemExit(f"{args.path} not found (set CIP_SHARED or pass the path)")
    warnings.simplefilter("ignore")
    from cip.profiles.identity import pairwise_scores, resolve_identities

    df = pd.read_csv(args.path)
    records = df.drop(columns=["cluster"])
    print(f"{len(df)} records, {df['cluster'].nunique()} true persons; fuzzy fields {FIELDS}")
    for th in (float(x) for x in args.thresholds.split(",")):
        t = time.perf_counter()
        out = resolve_identities(records, id_column="unique_id", fuzzy=FIELDS, threshold=th)
        secs = time.perf_counter() - t
        s = pairwise_scores(df["cluster"], out["unified_id"])
        print(
            f"threshold {th:.2f}: precision {s['precision']:.4f} recall {s['recall']:.4f} "
            f"f1 {s['f1']:.4f} ({int(s['correct_pairs'])}/{int(s['predicted_pairs'])} predicted "
            f"pairs correct, {int(s['true_pairs'])} true pairs) in {secs:.1f}s"
        )


if __name__ == "__main__":
    main()
