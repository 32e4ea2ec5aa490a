"""The CLV row budget: a deterministic hash sample of persons, filtered in the engine.

Checks that the sample is the same in every process and engine, has the asked
proportion, keeps a person in or out of every snapshot, leaves the features of the
persons it keeps unchanged, is logged to MLflow, and that a shop below the budget
trains exactly as without one. PostgreSQL parts skip without a server (fail in CI).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from cip.features import build_training_set
from cip.models.clv import clv_frame, train_clv
from cip.models.clv.sampling import (
    count_rows,
    hash_key,
    in_sample,
    person_filter,
    plan_sample,
)
from cip.models.training import plan_snapshots
from cip.profiles.store import open_store

from tests._models_support import START, load_orders, mlflow_db

H = 90
#: computed in the engine over a sample; a quintile's cut points move with the sample
_POPULATION_RELATIVE = {"r_score", "f_score", "m_score", "rfm_segment"}


@pytest.fixture(scope="module")
def shop():
    """A 1,200-customer orders-only store and its CLV snapshot dates (holdout last)."""
    with open_store("duckdb") as store:
        load_orders(store, 1200, seed=2)
        end = (START + pd.Timedelta(days=539)).date()
        plan = plan_snapshots(end, H, every_days=30, n_snapshots=8, data_end=end)
        dates = [d for d in plan.all_as_ofs if d > START.date() + pd.Timedelta(days=60)]
        yield store, dates, plan.holdout_as_of


def test_hash_is_md5_prefix_and_same_in_another_process() -> None:
    ids = [f"c{i:05d}" for i in range(2000)] + ["ü-Ω", "42", ""]
    assert hash_key("a") == "0cc175b9"  # md5("a") = 0cc175b9c0f1b6a831c399e269772661
    here = in_sample(ids, 0.37)
    code = (
        "import sys, json; from cip.models.clv.sampling import in_sample; "
        "ids = json.loads(sys.stdin.read()); print(''.join('1' if b else '0' "
        "for b in in_sample(ids, 0.37)))"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert out == "".join("1" if b else "0" for b in here)
    assert 0 < here.sum() < len(ids)


def test_proportion_and_nesting() -> None:
    ids = [f"p{i}" for i in range(100_000)]
    for f in (0.05, 0.2, 0.5):
        share = in_sample(ids, f).mean()
        assert share == pytest.approx(f, abs=0.01), f  # binomial sd <= 0.0016
    small, large = in_sample(ids, 0.1), in_sample(ids, 0.3)
    assert not (small & ~large).any()  # nested: in at 0.1 means in at 0.3
    assert in_sample(ids, 1.0).all() and person_filter(1.0) is None
    with pytest.raises(ValueError):
        person_filter(0.0)


def _engine_sample(con, ids: list[str], fraction: float) -> set[str]:
    import ibis

    t = ibis.memtable(pd.DataFrame({"unified_id": ids}))
    keep = person_filter(fraction)
    return set(con.execute(t.filter(keep(t.unified_id)))["unified_id"])


def test_engine_filter_equals_python_duckdb() -> None:
    import ibis

    ids = [f"c{i:05d}" for i in range(5000)] + ["ü-Ω", "a b"]
    want = {u for u, k in zip(ids, in_sample(ids, 0.25), strict=True) if k}
    assert _engine_sample(ibis.duckdb.connect(), ids, 0.25) == want


@pytest.mark.postgres
def test_engine_filter_equals_python_postgres(pg_url: str) -> None:
    import ibis

    ids = [f"c{i:05d}" for i in range(5000)] + ["ü-Ω", "a b"]
    want = {u for u, k in zip(ids, in_sample(ids, 0.25), strict=True) if k}
    con = ibis.connect(pg_url)
    try:
        assert _engine_sample(con, ids, 0.25) == want
    finally:
        con.disconnect()


def test_plan_sample_fractions() -> None:
    ts = [pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * i) for i in range(5)]
    rows = dict(zip(ts, [100_000, 200_000, 300_000, 400_000, 500_000], strict=True))
    p = plan_sample(rows, ts[-1], max_rows=400_000, holdout_rows=200_000)
    assert p.fit_rows == 1_000_000 and p.holdout_rows == 500_000
    assert p.fit_fraction == pytest.approx(0.4) and p.holdout_fraction == pytest.approx(0.4)
    assert p.fraction(ts[0], ts[-1]) == p.fit_fraction
    assert p.sampled and p.as_params()["sample.fit_fraction"] == pytest.approx(0.4)
    below = plan_sample(rows, ts[-1], max_rows=1_000_000, holdout_rows=500_000)
    assert (below.fit_fraction, below.holdout_fraction, below.sampled) == (1.0, 1.0, False)
    off = plan_sample(rows, ts[-1], max_rows=None, holdout_rows=None)
    assert not off.sampled and off.as_params()["sample.max_rows"] == "none"
    with pytest.raises(ValueError, match="max_rows"):
        plan_sample(rows, ts[-1], max_rows=0)


def test_count_rows_is_the_snapshot_population(shop) -> None:
    store, dates, _ = shop
    counts = count_rows(store, dates)
    for a in dates[:3]:
        n = len(build_training_set(store, [a], H))
        assert counts[pd.Timestamp(a)] == n


def test_sampled_frame_is_the_full_frame_restricted_to_the_sample(shop) -> None:
    """Same persons in every snapshot, the engine filter = the Python one, features unchanged."""
    store, dates, _ = shop
    full = clv_frame(store, dates, H)
    part = clv_frame(store, dates, H, fractions=dict.fromkeys(dates, 0.3))
    keep = in_sample(full["unified_id"], 0.3)
    want = full[keep].reset_index(drop=True)
    assert 0.2 < len(part) / len(full) < 0.4
    ids_all = set(full["unified_id"])
    chosen = {u for u in ids_all if in_sample([u], 0.3)[0]}
    for a, snap in part.groupby("as_of"):
        present = set(full.loc[full["as_of"] == a, "unified_id"])
        assert set(snap["unified_id"]) == present & chosen, a  # in or out in every snapshot
    cols = [c for c in full.columns if c not in _POPULATION_RELATIVE]
    pd.testing.assert_frame_equal(
        part[cols].sort_values(["as_of", "unified_id"]).reset_index(drop=True),
        want[cols].sort_values(["as_of", "unified_id"]).reset_index(drop=True),
        check_dtype=False,
    )


def _train(store, tmp_path: Path, name: str, **budget):
    uri = mlflow_db(tmp_path / name / "mlflow.db")
    r = train_clv(
        store, None, H, uri, str(tmp_path / name / "art"), tune_trials=None, n_snapshots=6, **budget
    )
    return r, uri


def test_below_the_budget_nothing_changes_and_above_it_the_fraction_is_logged(
    shop, tmp_path: Path
) -> None:
    store, _, _ = shop
    plain, _ = _train(store, tmp_path, "plain", max_rows=None, holdout_rows=None)
    default, uri = _train(store, tmp_path, "default")  # 400,000 / 200,000: far above this shop
    assert default.sample["fit_fraction"] == 1.0 and default.sample["holdout_fraction"] == 1.0
    # the same rows and models: every metric equal up to float summation order (two runs
    # of the same unsampled query differ in the last digits, ~1e-15 relative)
    assert default.candidates.keys() == plain.candidates.keys()
    for name, metrics in plain.candidates.items():
        assert default.candidates[name] == pytest.approx(metrics, rel=1e-9, abs=1e-12), name
    assert default.btyd_params == pytest.approx(plain.btyd_params, rel=1e-9)
    assert default.winner == plain.winner
    run = mlflow.MlflowClient(uri).get_run(default.run_id)
    assert float(run.data.params["sample.fit_fraction"]) == 1.0

    rows = default.sample["fit_rows_before"]
    small, uri = _train(store, tmp_path, "small", max_rows=rows // 2, holdout_rows=300)
    assert small.sample["fit_fraction"] == pytest.approx(0.5, abs=0.01)
    n_hold = small.candidates["btyd"]["n"]
    assert 200 < n_hold < 400  # ~300 of the holdout's persons
    assert n_hold < default.candidates["btyd"]["n"]
    params = mlflow.MlflowClient(uri).get_run(small.run_id).data.params
    assert float(params["sample.fit_fraction"]) == pytest.approx(0.5, abs=0.01)
    assert float(params["sample.holdout_fraction"]) < 1.0
    assert params["sample.max_rows"] == str(rows // 2)


def test_models_clv_budget_config(tmp_path: Path) -> None:
    from cip.pipelines.config import load_config
    from cip.profiles.errors import ConfigError

    p = tmp_path / "cip.yaml"
    p.write_text("models:\n  clv: {train: true}\n")
    clv = load_config(p).models.clv
    assert (clv.max_rows, clv.holdout_rows) == (400_000, 200_000)
    p.write_text("models:\n  clv: {max_rows: 1000000, holdout_rows: null}\n")
    clv = load_config(p).models.clv
    assert (clv.max_rows, clv.holdout_rows) == (1_000_000, None)
    for bad in ("max_rows: 0", "holdout_rows: 10", "max_rows: lots"):
        p.write_text(f"models:\n  clv: {{{bad}}}\n")
        with pytest.raises(ConfigError, match=bad.split(":")[0]):
            load_config(p)


def test_budget_reaches_train_clv_from_the_workspace(monkeypatch, tmp_path: Path) -> None:
    """``ws.train('clv')`` passes models.clv.max_rows / holdout_rows to train_clv."""
    import cip.models.clv as clv_pkg
    from cip.pipelines.workflows import modeling

    seen = {}

    def fake(store, *a, **kw):
        seen.update(kw)
        return "done"

    class WS:
        class config:  # noqa: N801 - a stand-in for the pydantic config
            from cip.pipelines.config import ModelsConfig

            models = ModelsConfig(clv={"max_rows": 5000, "holdout_rows": None})

        mlflow_tracking_uri = "sqlite://"
        mlflow_artifact_location = str(tmp_path)

        def open_store(self):
            import contextlib

            return contextlib.nullcontext(None)

    monkeypatch.setattr(clv_pkg, "train_clv", fake)
    assert modeling.train_clv(WS(), "2024-01-01") == "done"
    assert (seen["max_rows"], seen["holdout_rows"]) == (5000, None)


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_counts_and_sample_with_events(engine, request) -> None:
    """Persons seen only through events count too; the sample filters events and lines alike."""
    from tests._features_data import load_synthetic, synthetic

    data = synthetic(n_customers=300, seed=5)
    if engine == "duckdb":
        store = open_store("duckdb")
    else:
        url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
        store = open_store("postgres", url=url, schema=schema)
    with load_synthetic(store, data) as s:
        as_ofs = ["2024-01-15", "2024-03-15"]
        counts = count_rows(s, as_ofs)
        full = build_training_set(s, as_ofs, 30)
        for a in as_ofs:
            assert counts[pd.Timestamp(a)] == int((full["as_of"] == pd.Timestamp(a)).sum())
        assert full["recency_days"].isna().any()  # some rows are persons with events only
        part = build_training_set(s, as_ofs, 30, persons=person_filter(0.4))
        want = full[in_sample(full["unified_id"], 0.4)]
        assert set(zip(part["unified_id"], part["as_of"], strict=True)) == set(
            zip(want["unified_id"], want["as_of"], strict=True)
        )
        cols = [c for c in full.columns if c not in _POPULATION_RELATIVE]
        key = ["as_of", "unified_id"]
        pd.testing.assert_frame_equal(
            part[cols].sort_values(key).reset_index(drop=True),
            want[cols].sort_values(key).reset_index(drop=True),
            check_dtype=False,
        )
