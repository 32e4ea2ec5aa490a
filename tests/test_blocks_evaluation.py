"""``cip recommend evaluate-blocks``: every block against its baseline on a time split, in MLflow.

One small shop (``tests._blocks_shop``: 80 customers, eight months of orders,
four categories) in a workspace, evaluated once per module.
"""

from __future__ import annotations

import json
import math

import pytest

from tests._blocks_shop import load_shop

BLOCKS_YAML = """
blocks:
  again:
    kind: buy_again
    params: {half_life_days: 90}
  cart:
    kind: bought_together
  like_this:
    kind: similar
  for_you:
    kind: personal
    params: {algorithm: itemknn}
  home:
    kind: popular
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from cip.pipelines.api import Workspace

    w = Workspace.init(tmp_path_factory.mktemp("evalws") / "ws")
    with open(w.config_path, "a") as fh:
        fh.write(BLOCKS_YAML)
    w.reload()
    load_shop(w)
    w.result = w.evaluate_blocks(split="2024-07-01")
    return w


def test_each_block_is_measured_against_its_baseline_and_logged_to_mlflow(ws) -> None:
    import mlflow

    r = ws.result
    assert r.split == "2024-07-01" and r.train_lines > 0 and r.test_lines > 0
    by = {row["block"]: row for row in r.rows}
    assert set(by) == {"again", "cart", "like_this", "for_you", "home"}
    assert by["home"]["skipped"] == "no offline protocol for popular"
    baselines = {
        "again": "P-TopFreq",
        "cart": "co-occurrence count",
        "like_this": "popular in category",
        "for_you": "popular",
    }
    run = mlflow.get_run(r.run_id)
    assert run.info.experiment_id == mlflow.get_experiment_by_name("cip-blocks").experiment_id
    assert run.data.tags["kind"] == "evaluation"
    assert run.data.params["again.half_life_days"] == "90"
    assert run.data.params["home.skipped"] == "no offline protocol for popular"
    metrics = run.data.metrics
    for block, baseline in baselines.items():
        row = by[block]
        assert row["skipped"] is None and row["baseline"] == baseline and row["queries"] > 0
        for m in ("recall", "ndcg", "hit_rate"):
            for key in (f"{block}.{m}_at_10", f"{block}.baseline_{m}_at_10"):
                v = metrics[key]
                assert isinstance(v, float) and not math.isnan(v) and 0.0 <= v <= 1.0, key
            assert metrics[f"{block}.{m}_at_10"] == pytest.approx(row[m])
    assert not any(k.startswith("home.") for k in metrics)
    # the shop's customers rebuy their staples: buy_again finds some of the next basket
    assert metrics["again.hit_rate_at_10"] > 0.5
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(r.run_id)}
    assert {"blocks_evaluation.csv", "blocks_evaluation.png"} <= arts


def test_default_split_leaves_the_last_fifth_as_test(ws) -> None:
    from cip.models.recommender.block_eval import default_split

    from tests._blocks_shop import order_lines

    lines = order_lines()
    cut = default_split(lines)
    span = lines["ts"].max() - lines["ts"].min()
    test = lines["ts"].max() - cut
    assert 0.19 <= test / span <= 0.21


def test_cli_evaluate_blocks_json(ws, monkeypatch) -> None:
    from cip.pipelines.cli import app
    from typer.testing import CliRunner

    monkeypatch.setenv("CIP_WORKSPACE", str(ws.root))
    r = CliRunner().invoke(
        app,
        ["recommend", "evaluate-blocks", "--split", "2024-07-01", "--k", "5", "--json"],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["k"] == 5 and doc["split"] == "2024-07-01" and doc["run_id"] != ws.result.run_id
    again = next(x for x in doc["rows"] if x["block"] == "again")
    assert 0.0 <= again["recall"] <= 1.0 and again["queries"] == ws.result.rows[0]["queries"]
    bad = CliRunner().invoke(app, ["recommend", "evaluate-blocks", "--split", "July"])
    assert bad.exit_code == 2
