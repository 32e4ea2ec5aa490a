"""A young, orders-only shop (9 months of history): every model kind ends with a champion.

The shop is the orders-only generator of ``tests._models_support`` cut to its first
270 days (no events, no identity step). Churn and propensity are trained as of the
last day with a 60-day horizon (the default monthly spacing is too wide for this
history: the snapshots become denser), then CLV; each run must leave a promoted
champion that scores, whatever model won.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from cip.features import build_features
from cip.models import registry
from cip.models.clv import train_clv
from cip.models.clv.scoring import score_clv
from cip.models.scoring import load_champions, score_frame
from cip.models.training import shared_training_sets, train_model
from cip.profiles.store import ORDERS_SRC, open_store

from tests._models_support import START, mlflow_db, orders_frame

HISTORY_DAYS = 270
H = 60


def test_young_orders_only_shop_gets_a_champion_of_every_kind(tmp_path) -> None:
    orders = orders_frame(500, seed=3)
    orders = orders[orders.ts < pd.Timestamp(START + timedelta(days=HISTORY_DAYS))]
    uri, art = mlflow_db(tmp_path / "mlflow.db"), str(tmp_path / "artifacts")
    messages: list[str] = []
    with open_store("duckdb") as store:
        store.load_arrow(ORDERS_SRC, orders, mode="append")
        with shared_training_sets():
            results = {
                kind: train_model(
                    store, kind, None, H, uri, art, n_snapshots=8, progress=messages.append
                )
                for kind in ("propensity", "churn")
            }
        for kind, res in results.items():
            assert res.promoted, (kind, res.decision)
            assert registry.champion_version(f"cip-{kind}") == res.version
            assert res.winner in res.candidates and res.winner in res.decision
            assert len(res.fit_as_ofs) >= 4  # denser than monthly on 9 months
        assert any("snapshots every" in m for m in messages)
        clv = train_clv(store, None, H, uri, art, tune_trials=None, n_snapshots=8)
        assert clv.promoted and registry.champion_version("cip-clv") == clv.version

        as_of = pd.Timestamp(orders.ts.max()).normalize() + pd.Timedelta(days=1)
        feats = build_features(store, as_of)
        scores = score_frame(feats, load_champions(uri), as_of)
        assert scores["purchase_probability"].between(0, 1).all()
        active = scores["churn_probability"].notna()
        assert active.all() and scores["churn_probability"].between(0, 1).all()
        values = score_clv(store, as_of, uri)
        assert len(values) == len(feats) and (values["clv"] >= 0).all()
        assert values["p_alive"].dropna().between(0, 1).all()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
