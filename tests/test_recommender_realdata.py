"""Opt-in real-data check: on Online Retail the default ALS beats popularity by >= 1.5x NDCG@10.

Uses ``../shared/data`` (skips on a laptop without it, fails in CI where it must exist).
The full comparison of every algorithm is ``python -m benchmarks.recommender_quality``.
"""

from __future__ import annotations

import cip.models as models
import pytest
from cip.models import evaluation as ev


@pytest.mark.realdata
@pytest.mark.slow
def test_online_retail_temporal_split_beats_popularity(shared_data):
    from benchmarks.recommender_data import online_retail

    df = online_retail(shared_data / "online_retail")
    assert df["user_id"].nunique() > 5000 and not df["item_id"].str.fullmatch(r"[A-Z ]+").any()
    train, test = ev.temporal_split(df, "2011-09-01", "2011-12-10")
    popular = ev.evaluate(models.make_recommender("popular").fit(train), train, test)
    als = ev.evaluate(models.make_recommender("als").fit(train), train, test)
    assert als["users"] == popular["users"] > 2000
    assert als["ndcg"] >= 1.5 * popular["ndcg"]
    assert als["coverage"] > 5 * popular["coverage"]
