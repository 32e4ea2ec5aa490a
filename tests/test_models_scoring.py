"""Scoring: the scores frame, atomic writes, exports with customer ids."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from cip.models import ChurnModel, PropensityModel, score_frame, write_scores
from cip.models._run import feature_columns
from cip.models._synthetic import synthetic_training_frame
from cip.models.scoring import SCORE_COLUMNS, customer_ids, export_scores
from cip.profiles.errors import ConfigError, DataError
from cip.profiles.store import open_store


@pytest.fixture(scope="module")
def champions() -> dict:
    train = synthetic_training_frame(800, seed=2)
    X = train[feature_columns(train)].astype(float)
    act = (train.active == 1).to_numpy()
    churn = ChurnModel(n_estimators=80, random_state=0).fit(
        X[act], train.churn[act].astype(int), snapshot=train.as_of[act]
    )
    prop = PropensityModel(n_estimators=80, random_state=0).fit(
        X, train.purchase, snapshot=train.as_of
    )
    return {"cip-churn": ("3", churn), "cip-propensity": ("5", prop)}


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return synthetic_training_frame(50, as_ofs=[date(2024, 7, 1)], seed=9, labels=False)


def test_score_frame_one_row_per_profile(champions, features) -> None:
    s = score_frame(features, champions, date(2024, 7, 1), top=2)
    assert list(s.columns) == list(SCORE_COLUMNS)
    assert len(s) == 50 and s.unified_id.is_unique
    assert (s.model == "cip-churn+cip-propensity").all() and (s.model_version == "3+5").all()
    churn = champions["cip-churn"][1]
    X = features[churn.feature_names_]
    np.testing.assert_allclose(s.churn_probability, churn.predict_proba(X)[:, 1])
    assert s.purchase_probability.between(0, 1).all()
    first = json.loads(s.reasons.iloc[0])
    assert len(first) == 4 and first[1].endswith("churn risk")
    assert first[2].endswith("purchase likelihood") or first[3].endswith("purchase likelihood")
    assert first[0].split(" = ")[0] == churn.explain(X.head(1), method="path").feature_1.iloc[0]
    assert s.rfm_segment.tolist() == features.rfm_segment.tolist()
    only = score_frame(features, {"cip-propensity": champions["cip-propensity"]}, "2024-07-01")
    assert only.churn_probability.isna().all() and (only.model_version == "5").all()
    assert all("purchase" in r for r in json.loads(only.reasons.iloc[0]))
    with pytest.raises(DataError, match="recency_days"):
        score_frame(features.drop(columns=["recency_days"]), champions, "2024-07-01")


def test_write_scores_replaces_one_as_of_atomically(champions, features) -> None:
    store = open_store("duckdb")
    a = score_frame(features, champions, "2024-07-01")
    b = score_frame(features.head(10), champions, "2024-08-01")
    assert write_scores(store, a, "2024-07-01") == 50
    write_scores(store, b, "2024-08-01")
    write_scores(store, a, "2024-07-01")  # re-run: replaces, never duplicates
    counts = store.sql("SELECT as_of, count(*) AS n FROM scores GROUP BY ALL ORDER BY as_of")
    assert counts.n.tolist() == [50, 10]

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    store.load_arrow = boom  # a crash after the DELETE: the transaction rolls back
    with pytest.raises(RuntimeError):
        write_scores(store, a.head(3), "2024-07-01")
    assert store.count("scores") == 60


def test_export_one_row_per_customer_id(tmp_path, champions, features) -> None:
    s = score_frame(features.head(3), champions, "2024-07-01")
    uid = s.unified_id.tolist()
    ids = pd.DataFrame({"unified_id": [uid[0], uid[0], uid[1]], "customer_id": ["A", "B", "C"]})
    n = export_scores(s, ids, tmp_path / "s.parquet")
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert n == 4 == len(out)  # two ids, one id, none (kept with an empty customer_id)
    assert out.groupby("unified_id").size().to_dict() == {uid[0]: 2, uid[1]: 1, uid[2]: 1}
    assert list(out.columns) == ["customer_id", *SCORE_COLUMNS]
    export_scores(s, None, tmp_path / "s.csv")
    csv = pd.read_csv(tmp_path / "s.csv")
    assert (csv.customer_id == csv.unified_id).all()
    with pytest.raises(ConfigError, match="csv or .parquet"):
        export_scores(s, None, tmp_path / "s.xlsx")


def test_customer_ids_from_the_record_map() -> None:
    store = open_store("duckdb")
    assert customer_ids(store) is None
    store.execute(
        "INSERT INTO _orders_src (source, record_id, order_id, ts, customer_id, amount) VALUES "
        "('s', 'r1', 'o1', TIMESTAMP '2024-01-01', 'A', 1), "
        "('s', 'r2', 'o2', TIMESTAMP '2024-01-02', 'B', 1)"
    )
    store.execute(
        "CREATE TABLE record_map AS SELECT * FROM (VALUES ('orders', 'r1', 'p1'), "
        "('orders', 'r2', 'p1')) t(source_table, record_id, unified_id)"
    )
    got = customer_ids(store).sort_values("customer_id")
    assert got.values.tolist() == [["p1", "A"], ["p1", "B"]]
