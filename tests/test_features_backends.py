"""Parity: the same feature and label definitions on DuckDB, PostgreSQL and Spark."""

from __future__ import annotations

from decimal import Decimal

import ibis
import numpy as np
import pandas as pd
import pytest
from cip.features import (
    RFM_COLUMNS,
    build_features,
    build_labels,
    compute_labels,
    compute_rfm,
    inputs_from_ibis,
    load_inputs,
    write_features,
)
from cip.features._expr import money_sum
from cip.features.build import compute_features, features_to_pandas
from cip.features.labels import labels_to_pandas
from cip.profiles.store import open_store

from tests._features_data import load_synthetic, synthetic, to_spark

AS_OF = "2024-03-15"
HORIZON = 60


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return synthetic(n_customers=60, seed=11)


@pytest.fixture(scope="module")
def duck(data):
    store = load_synthetic(open_store("duckdb"), data)
    feats = build_features(store, AS_OF)
    labels = build_labels(store, AS_OF, HORIZON)
    yield store, feats, labels
    store.close()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)
    # money is summed exactly (integer micro-units): bit-equal on every engine, not just close
    money = [c for c in a.columns if c.startswith(("monetary", "revenue_", "avg_order_value"))]
    pd.testing.assert_frame_equal(a[money], b[money], check_exact=True)


def test_money_sums_are_exact_whatever_the_order_of_the_rows() -> None:
    rng = np.random.default_rng(0)
    amounts = np.round(rng.uniform(-50, 500, 5000), 2)
    con = ibis.duckdb.connect()
    con.raw_sql("SET threads = 1")  # one thread: the rows are added in the order given

    def totals(agg) -> set[float]:
        out = set()
        for order in (amounts, amounts[::-1], rng.permutation(amounts), np.sort(amounts)):
            t = ibis.memtable({"amount": order})
            out.add(float(con.execute(t.aggregate(s=agg(t.amount)))["s"].iloc[0]))
        return out

    assert len(totals(lambda c: c.sum())) > 1  # a float sum depends on the order
    exact = float(sum(Decimal(str(x)) for x in amounts))  # the true total, correctly rounded
    assert totals(money_sum) == {exact}
    t = ibis.memtable({"amount": amounts})
    half = con.execute(t.aggregate(s=money_sum(t.amount, t.amount > 0)))["s"].iloc[0]
    assert half == float(sum(Decimal(str(x)) for x in amounts if x > 0))


def test_synthetic_data_exercises_every_feature(duck) -> None:
    _, feats, labels = duck
    assert len(feats) >= 50 and "categories_viewed" in feats and "distinct_categories" in feats
    informative = [c for c in feats.columns if feats[c].nunique(dropna=True) > 1]
    constant = sorted(set(feats.columns) - set(informative) - {"as_of"})
    assert constant == [], f"features without variation in the parity data: {constant}"
    assert set(feats["rfm_segment"].dropna()) >= {"Champions", "Lost"}
    assert labels["churn"].notna().any() and labels["churn"].isna().any()


def test_rfm_alone_equals_the_rfm_columns_of_the_full_set(duck) -> None:
    store, feats, _ = duck
    inputs = load_inputs(store)
    rfm = features_to_pandas(compute_rfm(inputs, AS_OF), inputs)
    cols = ["unified_id", "as_of", *RFM_COLUMNS, "rfm_segment", "r_score", "f_score", "m_score"]
    assert rfm.columns.tolist() == cols
    _same(rfm, feats[cols])


@pytest.mark.postgres
def test_postgres_matches_duckdb(duck, data, pg_url: str, pg_schema: str) -> None:
    _, feats, labels = duck
    with open_store("postgres", url=pg_url, schema=pg_schema) as pg:
        load_synthetic(pg, data)
        _same(build_features(pg, AS_OF), feats)
        _same(build_labels(pg, AS_OF, HORIZON), labels)
        # the snapshot is written in-database and replaced atomically on re-run
        write_features(pg, feats)
        write_features(pg, feats)
        assert pg.count("features_default") == len(feats)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_matches_duckdb(duck, spark) -> None:
    store, feats, labels = duck
    import ibis

    names = to_spark(spark, store)
    con = ibis.pyspark.connect(spark)
    inputs = inputs_from_ibis(con, tables=set(names))
    # tiny data, wide plan: one task per stage, no re-planning per stage, no code generation
    tiny = {
        "spark.sql.shuffle.partitions": "1",
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.codegen.wholeStage": "false",
    }
    old = {k: spark.conf.get(k) for k in tiny}
    for k, v in tiny.items():
        spark.conf.set(k, v)
    try:
        _same(features_to_pandas(compute_features(inputs, AS_OF), inputs), feats)
        _same(labels_to_pandas(compute_labels(inputs, AS_OF, HORIZON)), labels)
    finally:
        for k, v in old.items():
            spark.conf.set(k, v)
