"""``engine: spark``: the same simulated shop through ``cip run`` on DuckDB and on Spark.

Both workspaces get the same simulated sources, the same config (but the
engine) and the same as_of; afterwards they must hold the same persons (same
unified ids), features (1e-9), labels, scores (1e-6, same champion), segment
members and export files. Spark runs in local mode in the test session's
SparkSession (``spark`` fixture), which the engine reuses.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cip.features import build_labels
from cip.pipelines.config import load_config
from cip.pipelines.run import run_pipeline
from cip.pipelines.workflows.blocks import recommend
from cip.pipelines.workflows.setup import simulate_shop
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError

AS_OF = date(2025, 12, 1)
LABEL_AS_OF, HORIZON = "2025-10-01", 60  # labels need the whole horizon inside the data
MODELS = {"horizon_days": 30, "snapshot_every_days": 15, "n_snapshots": 3, "min_auc": 0.5}
EXPORTS = [
    {"segment": "at_risk", "path": "exports/at_risk.csv"},
    {"segment": "champions", "path": "exports/champions.csv"},
]


def _workspace(root: Path, engine: str, salt_from: Workspace | None = None) -> Workspace:
    ws = Workspace.init(root)
    if salt_from is not None:  # the unified ids are keyed by the workspace's secret salt
        (ws.root / "secrets").mkdir(exist_ok=True)
        shutil.copy2(salt_from.root / "secrets" / "salt", ws.root / "secrets" / "salt")
    simulate_shop(ws, customers=120, days=150, seed=5)
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["segments"] = {"exports": EXPORTS}
    # a 150-day shop labels no snapshot with the default 90-day horizon: a shorter horizon and
    # a few snapshots let both engines train, promote and score champions
    cfg["models"] = {**cfg.get("models", {}), **MODELS}
    if engine == "spark":
        cfg["engine"] = "spark"
        cfg["spark"] = {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": 2}}
    ws.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return ws.reload()


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    out: dict[str, tuple[Workspace, object]] = {}
    for engine in ("duckdb", "spark"):
        first = out["duckdb"][0] if out else None
        ws = _workspace(tmp_path_factory.mktemp(engine) / "ws", engine, salt_from=first)
        res = run_pipeline(ws, as_of=AS_OF)
        out[engine] = (ws, res)
    return out


def _table(ws: Workspace, sql: str) -> pd.DataFrame:
    with ws.open_store() as store:
        return store.sql(sql).reset_index(drop=True)


def _same(runs, sql: str, **tol) -> pd.DataFrame:
    a, b = (_table(runs[e][0], sql) for e in ("duckdb", "spark"))
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, **tol)
    return a


@pytest.mark.spark  # in `make test` (not slow): the issue's parity check
def test_cip_run_on_spark_gives_the_same_answers_as_duckdb(runs) -> None:
    duck_ws, duck = runs["duckdb"]
    spark_ws, sp = runs["spark"]
    assert spark_ws.config.engine == "spark"
    for table in ("record_map", "profiles", "features_default", "segment_members"):
        assert (spark_ws.root / "spark-warehouse" / table / "_CURRENT").is_file(), table
    assert list(sp.steps) == list(duck.steps)

    # persons: every record maps to the same unified id
    persons = _same(
        runs,
        "SELECT source_table, record_id, unified_id FROM record_map "
        "ORDER BY source_table, record_id",
    )
    assert persons["unified_id"].nunique() > 50
    _same(runs, "SELECT unified_id, record_count, source_count FROM profiles ORDER BY unified_id")

    # features and labels
    feats = _same(
        runs, "SELECT * FROM features_default ORDER BY unified_id", check_exact=False, rtol=1e-9
    )
    assert len(feats) > 50 and feats["monetary"].notna().any()
    with duck_ws.open_store() as a, spark_ws.open_store() as b:
        la, lb = build_labels(a, LABEL_AS_OF, HORIZON), build_labels(b, LABEL_AS_OF, HORIZON)
    assert len(la) > 50 and la.iloc[:, 1:].notna().any().any()
    pd.testing.assert_frame_equal(
        la.sort_values("unified_id").reset_index(drop=True),
        lb.sort_values("unified_id").reset_index(drop=True),
        check_dtype=False,
    )

    # training and scores: the same champions (same versions, same winners) and the same scores
    assert sp.steps["train"] == duck.steps["train"]
    for kind in ("churn", "propensity"):
        assert "(champion)" in duck.steps["train"][kind], duck.steps["train"]
    summary = {k: v for k, v in duck.steps["score"].items() if k != "seconds"}
    assert summary == {k: v for k, v in sp.steps["score"].items() if k != "seconds"}
    assert summary["profiles_scored"] > 20  # the consenting persons
    scores = _same(
        runs,
        "SELECT * FROM scores ORDER BY unified_id",
        check_exact=False,
        rtol=1e-6,
        atol=1e-6,
    )
    assert scores["churn_probability"].notna().all() and scores["churn_probability"].nunique() > 10
    assert scores["purchase_probability"].notna().all()

    # the recommender: the same champion and the same top 10 for everyone
    fitted = {k: v for k, v in duck.steps["blocks"].items() if k != "version"}  # a timestamp
    assert fitted == {k: v for k, v in sp.steps["blocks"].items() if k != "version"}
    assert fitted["fitted"] > 0 and fitted["personal_model_version"]
    (_, ra), (_, rb) = (recommend(runs[e][0], "personal", all_people=True, n=10) for e in runs)
    assert len(ra) > 50 and ra["items"].map(len).eq(10).all()
    ra, rb = (
        r.assign(model_version=r["model_version"].str.split("+").str[1])  # blocks-<ts>+model:v
        .sort_values("unified_id")
        .reset_index(drop=True)
        for r in (ra, rb)
    )
    assert (ra["model_version"] == "cip-recommender:1").all()
    pd.testing.assert_frame_equal(ra.drop(columns="scores"), rb.drop(columns="scores"))
    for x, y in zip(ra["scores"], rb["scores"], strict=True):
        np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-6)

    # segments and exports
    members = _same(
        runs, "SELECT segment, unified_id, as_of, score FROM segment_members ORDER BY ALL"
    )
    assert members["segment"].nunique() >= 5
    _same(runs, "SELECT segment, members, entered, exited FROM segment_builds ORDER BY ALL")
    for e in EXPORTS:
        a = (duck_ws.root / e["path"]).read_bytes()
        assert a and a == (spark_ws.root / e["path"]).read_bytes(), e["path"]


def test_spark_config_is_validated(tmp_path) -> None:
    cfg = tmp_path / "cip.yaml"
    cfg.write_text("engine: spark\n")
    c = load_config(cfg)
    assert (c.engine, c.spark.master, c.spark.warehouse, c.spark.conf) == (
        "spark",
        "local[*]",
        "spark-warehouse",
        {},
    )
    cfg.write_text("engine: spark\nspark: {conf: {executor.memory: 4g}}\n")
    with pytest.raises(ConfigError, match="spark.conf keys are Spark settings"):
        load_config(cfg)
    cfg.write_text("engine: flink\n")
    with pytest.raises(ConfigError, match="engine"):
        load_config(cfg)


def test_default_workspace_stays_on_duckdb(tmp_path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    assert ws.config.engine == "store" and ws.config.store.backend == "duckdb"
    assert "engine: store" in ws.config_path.read_text()  # the template documents the key
    with ws.open_store() as store:
        assert store.backend == "duckdb"
