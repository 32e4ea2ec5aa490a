"""Is the simulator's planted signal learnable? Churn/propensity AUC and recommender recall.

Reads the simulated files directly (DuckDB) and links records to people with the
truth table (perfect identity resolution), so this measures the data, not the
pipeline. Honest time splits:

* purchase propensity: features at ``as_of`` (end - 180 d) with the label "buys in
  the next 90 days" train LightGBM; the same at ``end - 90 d`` is the test set.
  Reported for everyone seen before ``as_of`` and for previous buyers (churn).
* recommendation: interactions before ``end - 60 d`` train implicit ALS; items
  bought afterwards are the test; recall@10 of ALS vs most-popular items.

Usage: ``python -m benchmarks.simulate_signal [--customers 20000] [--seed 0]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from cip.pipelines.simulator import simulate

END = date(2025, 12, 31)

_RECORDS = """
CREATE OR REPLACE VIEW truth AS SELECT * FROM read_parquet('{d}/_truth/person_truth.parquet');
CREATE OR REPLACE VIEW orders AS
  SELECT t.person_id, o.created_at AS ts, o.order_no AS order_id, o.sku AS item,
         o.qty * o.price AS value, o.order_status AS status
  FROM read_parquet('{d}/online_orders.parquet') o
  JOIN truth t ON t.source = 'online_orders' AND t."table" = 'order_lines'
   AND t.source_record_id = CAST(o.line_id AS VARCHAR)
  UNION ALL
  SELECT t.person_id, try_strptime(s.TxnDate, '%d/%m/%Y %H:%M:%S'), s.ReceiptNo, s.ProductCode,
         TRY_CAST(s.Qty AS DOUBLE) * TRY_CAST(s.UnitPrice AS DOUBLE), CASE WHEN s.Refund = 'Y' THEN 'RETURNED' ELSE 'COMPLETE' END
  FROM read_csv('{d}/store_purchases.csv', all_varchar = true) s
  JOIN truth t ON t.source = 'store_purchases' AND t."table" = 'order_lines'
   AND t.source_record_id = s.TxnLineID;
CREATE OR REPLACE VIEW events AS
  SELECT t.person_id, w.client_ts AS ts, w.event AS type, w.sku AS item
  FROM read_parquet('{d}/web_events.parquet') w
  JOIN truth t ON t.source = 'web_events' AND t.source_record_id = CAST(w.hit_id AS VARCHAR)
  UNION ALL
  SELECT t.person_id, a.event_time, a.name, a.product_id
  FROM read_parquet('{d}/app_events.parquet') a
  JOIN truth t ON t.source = 'app_events' AND t.source_record_id = a.id
  UNION ALL
  SELECT t.person_id, TRY_CAST(e.occurred_at AS TIMESTAMP), 'email_' || lower(e.event_kind), NULL
  FROM read_csv('{d}/email_events.csv', all_varchar = true) e
  JOIN truth t ON t.source = 'email_events' AND t.source_record_id = e.message_event_id
  UNION ALL
  SELECT t.person_id, TRY_CAST(r.submitted AS TIMESTAMP),
         CASE WHEN r.stars <= 2 THEN 'bad_review' ELSE 'review' END, r.product
  FROM read_json('{d}/reviews.jsonl', format = 'newline_delimited') r
  JOIN truth t ON t.source = 'reviews' AND t.source_record_id = r.review_id;
"""

_FEATURES = """
WITH o AS (SELECT * FROM orders WHERE ts < TIMESTAMP '{a}'),
e AS (SELECT * FROM events WHERE ts < TIMESTAMP '{a}'),
people AS (SELECT person_id FROM o UNION SELECT person_id FROM e),
fo AS (
  SELECT person_id,
    date_diff('day', max(ts), TIMESTAMP '{a}') AS recency,
    count(DISTINCT order_id) FILTER (WHERE status = 'COMPLETE') AS orders,
    count(DISTINCT order_id) FILTER (WHERE status = 'COMPLETE' AND ts >= TIMESTAMP '{a}' - INTERVAL 90 DAY) AS orders_90,
    sum(value) FILTER (WHERE status = 'COMPLETE') AS revenue,
    count(DISTINCT order_id) FILTER (WHERE status = 'RETURNED') AS returns,
    date_diff('day', min(ts), TIMESTAMP '{a}') AS tenure_orders
  FROM o GROUP BY 1),
fe AS (
  SELECT person_id,
    date_diff('day', max(ts) FILTER (WHERE type NOT LIKE 'email%'), TIMESTAMP '{a}') AS visit_recency,
    count(*) FILTER (WHERE type NOT LIKE 'email%' AND ts >= TIMESTAMP '{a}' - INTERVAL 30 DAY) AS events_30,
    count(*) FILTER (WHERE type NOT LIKE 'email%' AND ts >= TIMESTAMP '{a}' - INTERVAL 90 DAY) AS events_90,
    count(*) FILTER (WHERE type = 'email_open' AND ts >= TIMESTAMP '{a}' - INTERVAL 90 DAY) AS opens_90,
    count(*) FILTER (WHERE type = 'email_send' AND ts >= TIMESTAMP '{a}' - INTERVAL 90 DAY) AS sends_90,
    count(*) FILTER (WHERE type = 'bad_review') AS bad_reviews,
    date_diff('day', min(ts), TIMESTAMP '{a}') AS tenure_events
  FROM e GROUP BY 1),
y AS (SELECT DISTINCT person_id FROM orders
      WHERE status = 'COMPLETE' AND ts >= TIMESTAMP '{a}' AND ts < TIMESTAMP '{a}' + INTERVAL 90 DAY)
SELECT p.person_id, fo.* EXCLUDE (person_id), fe.* EXCLUDE (person_id),
       (y.person_id IS NOT NULL)::INT AS label
FROM people p LEFT JOIN fo USING (person_id) LEFT JOIN fe USING (person_id)
LEFT JOIN y USING (person_id)
"""


def propensity_auc(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """LightGBM trained at end-180 d, tested at end-90 d (label: buys within 90 days)."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    train = con.sql(_FEATURES.format(a=END - timedelta(days=179))).df()
    test = con.sql(_FEATURES.format(a=END - timedelta(days=89))).df()
    feats = [c for c in train.columns if c not in ("person_id", "label")]
    out = {}
    for name, mask_tr, mask_te in (
        ("all_known", train["label"] >= 0, test["label"] >= 0),
        ("buyers", train["orders"].fillna(0) > 0, test["orders"].fillna(0) > 0),
    ):
        tr, te = train[mask_tr], test[mask_te]
        model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.03, num_leaves=15, verbose=-1)
        model.fit(tr[feats].astype(float), tr["label"])
        p = model.predict_proba(te[feats].astype(float))[:, 1]
        out[f"auc_{name}"] = round(float(roc_auc_score(te["label"], p)), 3)
        rec = -te["recency"].fillna(10_000)
        out[f"auc_{name}_recency_only"] = round(float(roc_auc_score(te["label"], rec)), 3)
        out[f"n_test_{name}"] = int(len(te))
        out[f"base_rate_{name}"] = round(float(te["label"].mean()), 3)
    return out


def recommender_recall(con: duckdb.DuckDBPyConnection, k: int = 10) -> dict[str, float]:
    """Recall@k of implicit ALS vs most-popular on a temporal split."""
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    split = END - timedelta(days=59)
    inter = con.sql(
        f"""SELECT person_id, item, sum(w) AS w FROM (
              SELECT person_id, item, CASE WHEN type IN ('purchase', 'OrderCompleted') THEN 0
                     WHEN type IN ('add_to_cart', 'AddedToCart') THEN 2 ELSE 1 END AS w
              FROM events WHERE item IS NOT NULL AND ts < TIMESTAMP '{split}'
              UNION ALL SELECT person_id, item, 5 FROM orders
              WHERE status = 'COMPLETE' AND item IS NOT NULL AND ts < TIMESTAMP '{split}')
            GROUP BY ALL"""
    ).df()
    test = con.sql(
        f"""SELECT DISTINCT person_id, item FROM orders
            WHERE status = 'COMPLETE' AND item IS NOT NULL AND ts >= TIMESTAMP '{split}'"""
    ).df()
    users = pd.Index(inter["person_id"].unique())
    items = pd.Index(inter["item"].unique())
    m = sp.csr_matrix(
        (
            np.log1p(inter["w"].to_numpy(float)),
            (users.get_indexer(inter["person_id"]), items.get_indexer(inter["item"])),
        ),
        shape=(len(users), len(items)),
    )
    model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=0)
    model.fit(m * 20.0, show_progress=False)
    test = test[test["person_id"].isin(users) & test["item"].isin(items)]
    truth = test.groupby("person_id")["item"].apply(set)
    uidx = users.get_indexer(truth.index)
    rec_ids, _ = model.recommend(uidx, m[uidx], N=k, filter_already_liked_items=False)
    bought = inter[inter["w"] >= 5].groupby("item")["w"].count().sort_values(ascending=False)
    popular = set(bought.index[:k])
    als_hits, pop_hits, denom = 0.0, 0.0, 0.0
    rec_items = items.to_numpy()[rec_ids]
    for row, wanted in zip(
        rec_items, truth.to_numpy(), strict=True
    ):  # per test user: a few thousand
        d = min(k, len(wanted))
        als_hits += len(wanted & set(row)) / d
        pop_hits += len(wanted & popular) / d
        denom += 1
    return {
        "recall_at_10_als": round(als_hits / denom, 4),
        "recall_at_10_popular": round(pop_hits / denom, 4),
        "test_users": int(denom),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        simulate(Path(tmp), customers=args.customers, seed=args.seed, end=END)
        sim_s = time.perf_counter() - t0
        con = duckdb.connect()
        con.execute(_RECORDS.format(d=tmp))
        res = {"customers": args.customers, "seed": args.seed, "simulate_s": round(sim_s, 1)}
        res.update(propensity_auc(con))
        res.update(recommender_recall(con))
    for key, value in res.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
