"""Quality of the recommendation blocks on Online Retail, each against its baseline.

Time split at 2011-09-01 (train: lines before; test: 2011-09-01 .. 2011-12-09).
Hyperparameters are chosen by grid search on a validation split carved from the
training period only (its last 3 months: fit before 2011-06-01, judge on
2011-06-01 .. 2011-08-31); the test period is used once, for the final figures.
The protocols are in ``cip.models.recommender.block_eval``:

* buy_again vs P-TopFreq: next basket (first test order), recall@10 / nDCG@10;
* bought_together vs raw co-occurrence count: leave one out in test orders, hit rate@10;
* similar on cold items (training lines hidden) vs popular in category: hit rate@10
  of the items bought with them in test orders; the warm-item variant tunes the
  CF / content blend weight;
* personal (ALS, defaults) vs popular (half-life tuned): new items of known customers.

    python -m benchmarks.blocks_quality [--quick]
    python -m benchmarks.blocks_quality --cold-only --cold-share 0.1 --seeds 0,1,2

``--cold-only`` runs the cold-item protocol alone (content weights tuned on the
validation split at the same share, then the test period once per seed).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from cip.models.recommender import block_eval as be

from benchmarks._util import load_average, machine, stamp
from benchmarks.recommender_data import online_retail_baskets

SPLIT, END = "2011-09-01", "2011-12-10"


def _row(block: str, model: str, m: dict[str, float], seconds: float, params: Any = "") -> str:
    return (
        f"| {block} | {model} | {m['recall']:.4f} | {m['ndcg']:.4f} | {m['hit_rate']:.4f} | "
        f"{int(m['queries']):,} | {seconds:.1f} | {params} |"
    )


def _timed(f: Any) -> tuple[dict[str, float], float]:
    t = time.perf_counter()
    m = f()
    return m, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grids (a smoke run)")
    ap.add_argument("--cold-only", action="store_true", help="only the cold-item protocol")
    ap.add_argument(
        "--cold-share", type=float, default=0.2, help="share of items made cold (default 0.2)"
    )
    ap.add_argument(
        "--seeds", default="0", help="comma-separated seeds of the cold items (--cold-only)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    lines, products = online_retail_baskets()
    train, test = be.split_lines(lines, SPLIT, END)
    vtrain, vtest = be.validation_split(train, months=3)
    print(
        f"# blocks_quality, {stamp()}, {machine()}, {load_average()}\n"
        f"Online Retail: {len(lines):,} lines, {lines.order_id.nunique():,} orders, "
        f"{lines.user_id.nunique():,} customers, {len(products):,} items; train {len(train):,} "
        f"lines < {SPLIT}, test {len(test):,}; validation: fit < {vtest.ts.min():%Y-%m-%d}, "
        f"judge {vtest.ts.min():%Y-%m-%d} .. {vtest.ts.max():%Y-%m-%d}\n"
    )
    if args.cold_only:
        _cold_only(train, test, vtrain, vtest, products, args)
        print(f"\ntotal {time.perf_counter() - t0:.0f} s, {load_average()}")
        return
    q = args.quick
    rows: list[str] = []
    tuned: dict[str, dict[str, Any]] = {}

    # buy_again: two coordinate stages (fit-time parameters, then timing)
    g1 = {
        "half_life_days": [None, 365.0] if q else [None, 90.0, 365.0],
        "rate_weight": [0.0, 0.5, 1.0],
    }
    p1, _ = be.grid_search(
        lambda p: be.eval_buy_again(vtrain, vtest, {**p, "timing_weight": 0.0}), g1
    )
    g2 = {"timing_weight": [0.0, 1.0] if q else [0.0, 0.5, 1.0, 2.0], "sigma": [0.5, 1.0]}
    p2, table = be.grid_search(lambda p: be.eval_buy_again(vtrain, vtest, {**p1, **p}), g2)
    tuned["buy_again"] = {**p1, **p2}
    val = table["ndcg"].max()
    base_val = be.eval_buy_again(vtrain, vtest, None)["ndcg"]
    print(
        f"buy_again tuned {tuned['buy_again']}: validation nDCG {val:.4f} vs P-TopFreq {base_val:.4f}"
    )
    m, s = _timed(lambda: be.eval_buy_again(train, test, None))
    rows.append(_row("buy_again", "P-TopFreq (baseline)", m, s))
    m, s = _timed(lambda: be.eval_buy_again(train, test, {}))
    rows.append(_row("buy_again", "defaults", m, s))
    m, s = _timed(lambda: be.eval_buy_again(train, test, tuned["buy_again"]))
    rows.append(_row("buy_again", "tuned on validation", m, s, tuned["buy_again"]))
    print("\n".join(rows[-3:]), flush=True)

    # bought_together: measure x shrinkage x support, judged by leave-one-out nDCG
    grids = [
        {"measure": ["lift"], "shrinkage": [1.0, 5.0, 20.0], "min_support": [1, 2, 3]},
        {"measure": ["llr", "jaccard"], "min_support": [1, 2, 3]},
    ]
    best, best_val = None, -1.0
    for g in grids[:1] if q else grids:
        p, table = be.grid_search(lambda p: be.eval_bought_together(vtrain, vtest, p), g)
        if table["ndcg"].max() > best_val:
            best, best_val = p, table["ndcg"].max()
    tuned["bought_together"] = best
    base_val = be.eval_bought_together(vtrain, vtest, {"measure": "count"})["ndcg"]
    print(f"bought_together tuned {best}: validation nDCG {best_val:.4f} vs count {base_val:.4f}")
    for label, params in (
        ("co-occurrence count (baseline)", {"measure": "count"}),
        ("defaults (lift, shrinkage 5)", {}),
        ("tuned on validation", best),
    ):
        m, s = _timed(lambda params=params: be.eval_bought_together(train, test, params))
        rows.append(
            _row("bought_together", label, m, s, params if label.startswith("tuned") else "")
        )
    print("\n".join(rows[-3:]), flush=True)

    # similar: content weights on cold items, then the blend weight on warm items
    gc = {
        "category_weight": [0.5, 1.0],
        "price_weight": [0.0, 0.25],
        "popularity_weight": [0.0] if q else [0.0, 0.25],
    }
    pc, table = be.grid_search(
        lambda p: be.eval_cold_similar(vtrain, vtest, products, p), gc, metric="hit_rate"
    )
    gw = {"cf_weight": [0.5, 0.8, 1.0] if not q else [0.8, 1.0], "cf_shrinkage": [10.0]}
    pw, wtable = be.grid_search(
        lambda p: be.eval_cold_similar(vtrain, vtest, products, {**pc, **p}, hide=False), gw
    )
    tuned["similar"] = {**pc, **pw}
    print(
        f"similar tuned {tuned['similar']}: cold validation hit rate {table['hit_rate'].max():.4f}"
    )
    for label, params in (
        ("popular in category (baseline)", None),
        ("defaults", {}),
        ("tuned on validation", tuned["similar"]),
    ):
        m, s = _timed(lambda params=params: be.eval_cold_similar(train, test, products, params))
        rows.append(
            _row("similar, cold items", label, m, s, params if label.startswith("tuned") else "")
        )
    for label, params in (
        ("popular in category (baseline)", None),
        ("content only (cf_weight 0)", {**tuned["similar"], "cf_weight": 0.0}),
        (
            "CF only (cf_weight 1, shrinkage ~0)",
            {**tuned["similar"], "cf_weight": 1.0, "cf_shrinkage": 1e-9},
        ),
        ("tuned blend", tuned["similar"]),
    ):
        m, s = _timed(
            lambda params=params: be.eval_cold_similar(train, test, products, params, hide=False)
        )
        rows.append(_row("similar, warm items", label, m, s))
    print("\n".join(rows[-7:]), flush=True)

    # personal vs popularity (popularity's half-life tuned on validation too)
    pp, _ = be.grid_search(
        lambda p: be.eval_personal(vtrain, vtest, "popular", p),
        {"half_life_days": [30.0, 90.0, None]},
    )
    m, s = _timed(lambda: be.eval_personal(train, test, "popular", pp))
    rows.append(_row("personal", "popular (baseline, tuned half-life)", m, s, pp))
    als = {"algorithm": "als", "params": {"random_state": 0}}
    m, s = _timed(lambda: be.eval_personal(train, test, "personal", als))
    rows.append(_row("personal", "ALS defaults", m, s))
    print("\n".join(rows[-2:]), flush=True)

    print(
        "\n| block | model | recall@10 | nDCG@10 | hit rate@10 | queries | seconds | params |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, {load_average()}")


def _cold_only(train: Any, test: Any, vtrain: Any, vtest: Any, products: Any, args: Any) -> None:
    """Cold items at ``--cold-share``: content ``similar`` vs popular in category, per seed."""
    share = args.cold_share
    gc = {
        "category_weight": [0.5, 1.0],
        "price_weight": [0.0, 0.25],
        "popularity_weight": [0.0, 0.25],
    }
    pc, table = be.grid_search(
        lambda p: be.eval_cold_similar(vtrain, vtest, products, p, share=share),
        gc,
        metric="hit_rate",
    )
    base_val = be.eval_cold_similar(vtrain, vtest, products, None, share=share)["hit_rate"]
    print(
        f"cold share {share}: similar tuned {pc}: validation hit rate "
        f"{table['hit_rate'].max():.4f} vs popular in category {base_val:.4f}"
    )
    rows = []
    for seed in (int(x) for x in args.seeds.split(",")):
        for label, params in (
            ("popular in category (baseline)", None),
            ("tuned on validation", pc),
        ):
            m, s = _timed(
                lambda params=params, seed=seed: be.eval_cold_similar(
                    train, test, products, params, share=share, seed=seed
                )
            )
            rows.append(_row(f"similar, cold {share:.0%}, seed {seed}", label, m, s, params or ""))
            print(rows[-1], flush=True)
    print(
        "\n| block | model | recall@10 | nDCG@10 | hit rate@10 | queries | seconds | params |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
