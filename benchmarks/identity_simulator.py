"""Identity resolution accuracy on a simulated workspace, against the simulator's truth.

Reads ``record_map`` and the raw tables of the workspace store and the truth
table ``sources/_truth/person_truth.parquet`` (``source, source_record_id,
person_id``), and reports pairwise precision, recall and F1 over records
(pairs with the same ``unified_id`` vs pairs with the same ``person_id``,
counted from contingency tables, never by enumerating pairs). Records without
a ``record_map`` row count as persons of their own. Also reports the recall
ceiling of deterministic linking: the recall of an oracle that links two
records of the same true person whenever a chain of shared valid (normalised)
identifiers within that person's records connects them, with no over-merge
guard needed. Records of a person that share no identifier with the rest
(a cookie that never logged in, an order with an invalid e-mail) stay apart in
any deterministic method; only fuzzy matching could join them.

Orders derived from ``order_lines`` are scored through their lines (each line
inherits its order's ``unified_id``), since the truth names source records.

Usage::

    python -m benchmarks.identity_simulator WORKSPACE [--unify] [--full]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pandas as pd

_RECORDS = """
SELECT x.t AS source_table, x.record_id, x.source, x.source_record_id, m.unified_id
FROM (
  SELECT 'customers' AS t, record_id, source, source_record_id FROM customers
  UNION ALL SELECT 'orders', record_id, source, source_record_id FROM _orders_src
  UNION ALL SELECT 'orders', md5(source || ':order_lines:' || order_id), source,
                   source_record_id FROM order_lines
  UNION ALL SELECT 'events', record_id, source, source_record_id FROM events
) x
LEFT JOIN record_map m ON m.source_table = x.t AND m.record_id = x.record_id
"""


def ceiling_recall(store, df: pd.DataFrame) -> float:
    """Recall of the oracle described in the module docstring."""
    import numpy as np
    from cip.profiles.identity import pairwise_scores
    from cip.profiles.identity._extract import NODE_COLS, RECORDS
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = store.sql(f"SELECT source_table, record_id, {', '.join(NODE_COLS)} FROM {RECORDS}")
    rows = df[["source_table", "record_id", "person_id"]].reset_index(drop=True)
    rows["row"] = np.arange(len(rows))
    long = (
        rows.merge(nodes, on=["source_table", "record_id"])
        .melt(id_vars=["row", "person_id"], value_vars=NODE_COLS, value_name="node")
        .dropna(subset=["node"])
    )
    key = pd.factorize(
        long["person_id"].astype(str) + "|" + long["node"].astype("int64").astype(str)
    )[0]
    n = len(rows) + int(key.max(initial=-1)) + 1
    g = coo_matrix((np.ones(len(long)), (long["row"].to_numpy(), len(rows) + key)), shape=(n, n))
    labels = connected_components(g, directed=False)[1][: len(rows)]
    return pairwise_scores(rows["person_id"], labels)["recall"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--unify", action="store_true", help="run unify first")
    ap.add_argument("--full", action="store_true", help="with --unify: a full run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from cip.pipelines.workflows.setup import identity_options as options
    from cip.pipelines.workspace import Workspace
    from cip.profiles.identity import pairwise_scores, unify

    ws = Workspace.open(args.workspace)
    truth_path = ws.sources_dir / "_truth" / "person_truth.parquet"
    if not truth_path.is_file():
        raise SystemExit(f"no truth table at {truth_path}")
    truth = pd.read_parquet(truth_path, columns=["source", "source_record_id", "person_id"])
    with ws.open_store() as store:
        run = unify(store, options(ws), incremental=not args.full).to_dict() if args.unify else None
        recs = store.sql(_RECORDS)
    df = recs.astype({"source_record_id": str}).merge(
        truth.astype({"source_record_id": str}), on=["source", "source_record_id"], how="inner"
    )
    scores = pairwise_scores(df["person_id"], df["unified_id"])
    with ws.open_store() as store:
        ceiling = ceiling_recall(store, df)
    out = {
        "records_scored": int(len(df)),
        "records_without_truth": int(len(recs) - len(df)),
        "records_unlinked": int(df["unified_id"].isna().sum()),
        "persons_true": int(df["person_id"].nunique()),
        "persons_found": int(df["unified_id"].nunique()),
        **{
            k: scores[k]
            for k in ("precision", "recall", "f1", "true_pairs", "predicted_pairs", "correct_pairs")
        },
        "recall_ceiling": ceiling,
        "unify": run,
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(
        f"{out['records_scored']:,} records scored ({out['records_without_truth']:,} without truth, "
        f"{out['records_unlinked']:,} unlinked); persons: {out['persons_true']:,} true, "
        f"{out['persons_found']:,} found"
    )
    print(
        f"pairwise precision {out['precision']:.4f} recall {out['recall']:.4f} f1 {out['f1']:.4f} "
        f"({int(out['correct_pairs']):,} of {int(out['predicted_pairs']):,} predicted pairs "
        f"correct, {int(out['true_pairs']):,} true pairs)"
    )
    print(f"recall ceiling of deterministic linking (oracle): {ceiling:.4f}")


if __name__ == "__main__":
    main()
