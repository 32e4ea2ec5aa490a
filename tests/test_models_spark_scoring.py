"""Scoring on Spark with mlflow.pyfunc.spark_udf gives the pandas path's scores."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from cip.models import train_on_frame
from cip.models._spark_scoring import champion_uris, score_spark_frame
from cip.models._synthetic import synthetic_training_frame
from cip.models.scoring import SCORE_COLUMNS, load_champions, score_frame
from cip.profiles.errors import DataError

from tests._models_support import mlflow_db

pytestmark = pytest.mark.spark

D = date(2024, 6, 1)
AS_OFS = [D - timedelta(days=30 * k) for k in range(4, -1, -1)]


@pytest.mark.slow
def test_spark_scores_equal_the_pandas_scores(spark, tmp_path) -> None:
    frame = synthetic_training_frame(500, AS_OFS, seed=5)
    frame.attrs["horizon_days"] = 30
    uri = mlflow_db(tmp_path / "mlflow.db")
    res = train_on_frame(
        frame,
        "churn",
        AS_OFS[-1],
        tracking_uri=uri,
        artifact_location=str(tmp_path / "artifacts"),
        model_params={"n_estimators": 40},
    )
    assert res.promoted
    feats = frame[frame.as_of == pd.Timestamp(AS_OFS[-1])].drop(columns=["as_of"])
    feats = feats.reset_index(drop=True)
    feats.attrs = {}
    want = score_frame(feats, load_champions(uri, clv=False), D)

    champs = champion_uris(uri)
    assert set(champs) == {"cip-churn"}
    version, model_uri, names = champs["cip-churn"]
    assert model_uri == f"models:/cip-churn/{version}" and version == str(res.version)
    sdf = spark.createDataFrame(feats[["unified_id", "rfm_segment", *names]])
    got = score_spark_frame(sdf, champs, D).toPandas()

    assert list(got.columns) == list(SCORE_COLUMNS)
    got = got.set_index("unified_id").loc[want["unified_id"].astype(str)].reset_index()
    assert got["churn_probability"].nunique() > 10  # real, varied scores
    np.testing.assert_allclose(
        got["churn_probability"].to_numpy(), want["churn_probability"].to_numpy(), atol=1e-6
    )
    assert got["purchase_probability"].isna().all() and want["purchase_probability"].isna().all()
    for col in ("model", "model_version", "rfm_segment"):
        assert got[col].astype(str).tolist() == want[col].astype(str).tolist()
    assert (pd.to_datetime(got["as_of"]) == pd.Timestamp(D)).all()

    with pytest.raises(DataError, match="lacks"):
        score_spark_frame(sdf.drop(names[0]), champs, D)
