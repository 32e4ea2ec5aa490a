"""Benchmark: a young, orders-only shop, as the hidden check sees it (issue K).

Online Retail orders from its start (2010-12-01) up to ``--as-of`` (2011-09-09: about
9 months of history) are copied into a fresh store: the models never see anything
after ``as_of``, so training plans its snapshots as a shop with only this history
would (the holdout is the latest labelled snapshot). Then, at ``as_of``:

* ``cip train propensity`` (:func:`models.training.train_model`) and the scores of its
  champion (:func:`models.scoring.score_frame`), whatever model won;
* the logistic regression on RFM (:class:`models.baselines.LogisticBaselineModel`)
  fitted on the same training set (all labelled snapshots);
* BG/NBD fitted on the summary at ``as_of``: expected purchases in the horizon;
* CLV (:func:`models.clv.train_clv`): the champion's and BG/NBD x Gamma-Gamma's
  predicted net revenue in the horizon;

all compared with what happened in ``[as_of, as_of + horizon)`` in the full file:
propensity ROC AUC over every person with an order before ``as_of``, and CLV
normalized Gini and total predicted / actual.

Run: ``python -m benchmarks.young_orders [--workspace DIR] [--tune-trials N]``
(``--workspace``: the Online Retail workspace of ``benchmarks.models_quality``, reused).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from cip.features import build_features, build_training_set
from cip.features.btyd import build_btyd_summary
from cip.models.baselines import LogisticBaselineModel
from cip.models.clv import train_clv
from cip.models.clv.btyd import BetaGeoModel, GammaGammaModel
from cip.models.clv.metrics import evaluate_values
from cip.models.clv.scoring import score_clv
from cip.models.scoring import load_champions, score_frame
from cip.models.training import train_model
from cip.profiles.store import open_store
from sklearn.metrics import roc_auc_score

from benchmarks._util import load_average, machine, stamp
from benchmarks.models_quality import _prepare


def _young_store(full, start: date, as_of: date):
    young = open_store("duckdb")
    src = full.sql(
        "SELECT * FROM orders WHERE ts >= ? AND ts < ?",
        [pd.Timestamp(start), pd.Timestamp(as_of)],
    )
    young.load_arrow("_orders_src", src, mode="replace")
    return young


def _actual(full, as_of: date, horizon: int) -> pd.DataFrame:
    end = as_of + timedelta(days=horizon)
    return full.sql(
        "SELECT customer_id AS unified_id, "
        "sum(CASE WHEN status = 'completed' THEN amount ELSE 0 END) "
        "- sum(CASE WHEN status = 'returned' THEN amount ELSE 0 END) AS spend, "
        "max(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS bought "
        "FROM orders WHERE ts >= ? AND ts < ? GROUP BY customer_id",
        [pd.Timestamp(as_of), pd.Timestamp(end)],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--as-of", type=date.fromisoformat, default=date(2011, 9, 9))
    ap.add_argument("--start", type=date.fromisoformat, default=date(2010, 12, 1))
    ap.add_argument("--horizon-days", type=int, default=91)
    ap.add_argument("--tune-trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("cip.features", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ws_dir = args.workspace or Path(tempfile.mkdtemp(prefix="cip-young-retail-")) / "ws"
    ws = _prepare("retail", ws_dir, 0, args.seed)
    load = load_average()
    as_of, h = args.as_of, args.horizon_days
    tmp = Path(tempfile.mkdtemp(prefix="cip-young-mlflow-"))
    uri, art = f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "artifacts")
    t0 = time.perf_counter()
    with ws.open_store() as full:
        actual = _actual(full, as_of, h)
        young = _young_store(full, args.start, as_of)
    say = print
    # trained "as of the last day with data" (as_of=None), as a young shop would run it
    prop = train_model(
        young, "propensity", None, h, uri, art, tune_trials=args.tune_trials, seed=args.seed,
        progress=say,
    )  # fmt: skip
    feats = build_features(young, as_of)
    scores = score_frame(feats, load_champions(uri), as_of)
    people = feats[["unified_id"]].merge(actual, on="unified_id", how="left").fillna(0.0)
    y = people["bought"].to_numpy()
    rows: dict[str, float] = {}
    rows["champion (" + prop.winner + ")"] = roc_auc_score(y, scores["purchase_probability"])
    # the RFM logistic regression on the same training set, every labelled snapshot
    dates = [pd.Timestamp(a).date() for a in [*prop.fit_as_ofs, prop.holdout_as_of]]
    ts = build_training_set(young, dates, h)
    lr = LogisticBaselineModel().fit(ts, ts["purchase"].to_numpy(dtype=int))
    rows["logreg_rfm"] = roc_auc_score(y, lr.predict_proba(feats)[:, 1])
    summ = build_btyd_summary(young, as_of)
    bg = BetaGeoModel().fit(summ["frequency"], summ["recency"], summ["T"])
    gg = GammaGammaModel().fit(summ["frequency"], summ["monetary_value"])
    s = people[["unified_id"]].merge(summ, on="unified_id", how="left")
    has = s["frequency"].notna().to_numpy()
    x, t_x, T = (s[c].to_numpy(dtype=float)[has] for c in ("frequency", "recency", "T"))
    exp = np.zeros(len(s))
    exp[has] = bg.expected_purchases(float(h), x, t_x, T)
    rows["bg_nbd expected orders"] = roc_auc_score(y, exp)
    clv = train_clv(
        young, None, h, uri, art, tune_trials=min(args.tune_trials, 5), seed=args.seed,
        progress=say,
    )  # fmt: skip
    cs = score_clv(young, as_of, uri).merge(actual, on="unified_id", how="left").fillna(0.0)
    btyd_clv = np.zeros(len(s))
    btyd_clv[has] = exp[has] * gg.expected_spend(x, s["monetary_value"].to_numpy(float)[has])
    bt = s[["unified_id"]].assign(clv=btyd_clv).merge(actual, on="unified_id", how="left")
    m_champ = evaluate_values(cs["spend"].to_numpy(), cs["clv"].to_numpy())
    m_btyd = evaluate_values(bt["spend"].fillna(0).to_numpy(), bt["clv"].to_numpy())
    wall = time.perf_counter() - t0
    print(f"\n{stamp()}; {machine()}; {load} at start; {wall:.0f} s")
    print(f"young store: orders {args.start} .. {as_of} (excl.), {len(feats):,} persons; "
          f"horizon {h} days; {int(y.sum()):,} buyers")  # fmt: skip
    print("| propensity model | ROC AUC at as_of |\n|---|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.4f} |")
    print(f"<!-- propensity: {prop.decision}; spacing/fit {prop.fit_as_ofs} -->")
    print("| CLV model | normalized Gini | total pred/actual |\n|---|---:|---:|")
    print(
        f"| champion ({clv.winner}) | {m_champ['normalized_gini']:.4f} | {m_champ['total_ratio']:.3f} |"
    )
    print(
        f"| bg_nbd x gamma_gamma | {m_btyd['normalized_gini']:.4f} | {m_btyd['total_ratio']:.3f} |"
    )
    print(json.dumps({"clv_decision": clv.decision, "clv_candidates": clv.candidates}, default=str))


if __name__ == "__main__":
    main()
