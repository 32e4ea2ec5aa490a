"""The Python API: a simulated shop through ``cip.Workspace`` end to end, typed results,
one ``as_of`` normaliser, and no CLI machinery behind ``import cip.pipelines.api``."""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cip.activation import BuildReport, ExportReport
from cip.models.scoring import ScoreResult
from cip.models.training import TrainResult
from cip.pipelines.api import to_date
from cip.pipelines.cli import main
from cip.pipelines.run import RunResult
from cip.pipelines.workflows.results import (
    FeaturesResult,
    ForgetResult,
    IngestResult,
    ModelList,
    PersonExport,
    RecommenderTrainResult,
    SegmentList,
    SimulateResult,
    WorkspaceStatus,
)
from cip.profiles.errors import CIPError, ConfigError, NotFoundError
from cip.profiles.identity import UnifyResult

import cip

ROOT = Path(__file__).resolve().parents[1]
END = dt.date(2024, 12, 31)  # last simulated day
AS_OF = "2025-01-01"  # the day after: scores and segments "today"


@dataclass
class Shop:
    ws: cip.Workspace
    sim: SimulateResult
    ingest: IngestResult
    unify: UnifyResult
    features: FeaturesResult
    churn: TrainResult
    score: ScoreResult
    segments: BuildReport


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """300 simulated people over 400 days, taken through the API up to segments."""
    ws = cip.Workspace.init(tmp_path_factory.mktemp("api") / "shop")
    sim = ws.simulate(customers=300, days=400, seed=11, end=END)
    ingested = ws.ingest()
    unified = ws.unify()
    churn = ws.train("churn", as_of=END, horizon_days=60, n_snapshots=6)
    if not churn.promoted:  # a tiny shop may not beat the baselines; promote by hand
        ws.models.promote("churn", churn.version)
    feats = ws.features(AS_OF)
    scored = ws.score(AS_OF)
    built = ws.segments.build(AS_OF)
    return Shop(ws, sim, ingested, unified, feats, churn, scored, built)


def test_each_step_returns_its_typed_result(shop: Shop) -> None:
    assert isinstance(shop.ws, cip.Workspace) and cip.Workspace is type(shop.ws)
    assert isinstance(shop.sim, SimulateResult) and shop.sim.people == 300
    assert shop.sim.sources == [s.name for s in shop.ws.config.sources]
    assert isinstance(shop.ingest, IngestResult)
    assert len(shop.ingest.reports) == len(shop.sim.sources)
    assert shop.ingest.rows_loaded == sum(r.rows_loaded for r in shop.ingest.reports) > 1000
    assert isinstance(shop.unify, UnifyResult) and shop.unify.persons > 0
    assert isinstance(shop.churn, TrainResult) and shop.churn.kind == "churn"
    assert isinstance(shop.score, ScoreResult) and shop.score.profiles_scored > 0
    assert shop.score.as_of.startswith(AS_OF)
    assert isinstance(shop.segments, BuildReport) and shop.segments.segments
    for result in (shop.sim, shop.ingest, shop.unify, shop.features, shop.churn, shop.score):
        doc = json.loads(json.dumps(result.as_dict(), default=str))
        assert isinstance(doc, dict) and doc
    # a second ingest loads nothing new (idempotent), still one report per source
    again = shop.ws.ingest()
    assert again.rows_loaded == 0 and len(again.reports) == len(shop.ingest.reports)


def test_features_hold_the_frame_and_its_counts(shop: Shop) -> None:
    f = shop.features
    assert isinstance(f, FeaturesResult) and isinstance(f.frame, pd.DataFrame)
    assert f.as_of == AS_OF and f.rows == len(f.frame) > 0
    assert f.columns == f.frame.shape[1] and set(f.features) < set(f.frame.columns)
    assert "frame" not in f.as_dict() and f.as_dict()["rows"] == f.rows
    with shop.ws.open_store(read_only=True) as store:
        n = store.sql(f"SELECT count(*) AS n FROM {f.table} WHERE as_of = TIMESTAMP '{AS_OF}'")[
            "n"
        ].iloc[0]
    assert n == f.rows


def test_models_segments_and_the_recommender(shop: Shop, tmp_path: Path) -> None:
    ws = shop.ws
    models = ws.models.list()
    assert isinstance(models, ModelList)
    assert models.champion("cip-churn") is not None
    assert shop.score.models["cip-churn"] == models.champion("cip-churn")

    listed = ws.segments.list()
    assert isinstance(listed, SegmentList)
    built = {s.segment: s.members for s in shop.segments.segments}
    assert {s.segment: s.members for s in listed.segments if s.segment in built} == built
    exported = ws.segments.export("lost", tmp_path / "lost.csv", "csv")
    assert isinstance(exported, ExportReport) and exported.path == str(tmp_path / "lost.csv")
    assert (tmp_path / "lost.csv").exists()

    rec = ws.train("recommender", as_of=END, algorithm="popular")
    assert isinstance(rec, RecommenderTrainResult) and rec.algorithm == "popular"
    assert rec.items > 0 and rec.as_dict()["metrics"] == rec.metrics
    with pytest.raises(ConfigError, match="does not apply to the recommender"):
        ws.train("recommender", horizon_days=30)
    with pytest.raises(ConfigError, match="recommender only"):
        ws.train("churn", algorithm="als")
    with pytest.raises(ConfigError, match="unknown model kind"):
        ws.train("ltv")
    with pytest.raises(ConfigError, match="--reasons"):
        ws.score(AS_OF, reasons="lime")


def test_status_matches_the_cli_json(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    status = shop.ws.status()
    assert isinstance(status, WorkspaceStatus)
    assert status.tables["customers"] > 0 and status.identity["persons"] == shop.unify.persons
    capsys.readouterr()
    assert main(["-w", str(shop.ws.root), "status", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli == json.loads(json.dumps(status.as_dict(), default=str))


def test_run_then_export_and_forget_a_person(shop: Shop) -> None:
    raw = yaml.safe_load(shop.ws.config_path.read_text())
    shop.ws.config_path.write_text(yaml.safe_dump({**raw, "run": {"train": "never"}}))
    ws = cip.Workspace.open(shop.ws.root)  # reads the edited cip.yaml
    run = ws.run(AS_OF)
    assert isinstance(run, RunResult) and run.as_of == dt.date(2025, 1, 1)
    assert run.steps["train"]["churn"] == "champion kept"
    assert run.steps["score"]["profiles_scored"] == shop.score.profiles_scored
    assert ws.status().last_run["unfinished_at"] is None

    with ws.open_store(read_only=True) as store:
        uid = store.sql("SELECT unified_id FROM profiles ORDER BY unified_id LIMIT 1").iloc[0, 0]
    doc = ws.export_person(unified_ids=uid)
    assert isinstance(doc, PersonExport) and doc.persons == 1 and doc.source_records > 0
    gone = ws.forget(unified_ids=[uid], rewrite=False)
    assert isinstance(gone, ForgetResult) and gone.persons == 1 and gone.rows_total > 0
    assert gone.warnings == [] and gone.as_dict()["rows_total"] == gone.rows_total
    with pytest.raises(NotFoundError):
        ws.export_person(unified_ids=uid)
    with pytest.raises(ConfigError, match="give the person"):
        ws.forget()


def test_as_of_is_normalised_once_for_every_entry_point(tmp_path: Path) -> None:
    day = dt.date(2024, 1, 1)
    assert to_date(day) == to_date(dt.datetime(2024, 1, 1, 15, 30)) == to_date("2024-01-01") == day
    assert to_date("2024-01-01T23:00:00") == day
    # an aware time is converted to UTC (the store's time zone) before taking its day
    assert to_date(dt.datetime(2024, 1, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))) == day
    assert to_date(pd.Timestamp("2024-01-01")) == day
    for bad in ("bogus", "01/02/2024", 20240101, None):
        with pytest.raises(ConfigError) as info:
            to_date(bad)  # type: ignore[arg-type]
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("invalid as_of") and repr(bad) in msg
    ws = cip.Workspace.init(tmp_path / "ws")
    for call in (
        lambda: ws.features("bogus"),
        lambda: ws.score("bogus"),
        lambda: ws.train("churn", as_of="bogus"),
        lambda: ws.segments.build("bogus"),
        lambda: ws.run("bogus"),
    ):
        with pytest.raises(ConfigError, match="invalid as_of 'bogus'"):
            call()
    with pytest.raises(ConfigError, match="invalid end"):
        ws.simulate(customers=50, days=30, end="31/12/2025")
    assert ws.config.sources == []  # nothing was simulated or registered


def test_errors_are_cip_errors_not_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no workspace"):
        cip.Workspace.open(tmp_path / "nowhere")
    ws = cip.Workspace.init(tmp_path / "ws")
    with pytest.raises(CIPError, match="no sources declared"):
        ws.ingest()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_api_layer_imports_no_cli_machinery() -> None:
    code = (
        "import sys\n"
        "import cip\n"
        "ws = cip.Workspace\n"
        "import cip.pipelines.steps, cip.pipelines.run\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'typer'\n"
        "             or m == 'cip.pipelines.cli' or m == 'cip.pipelines._cli_app'\n"
        "             or m.startswith('cip.pipelines.cmd_'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    # rich and click may come with third-party packages (ibis, httpx); our modules never
    # import them: the workflow layer reports progress through callbacks
    layer = [ROOT / "pipelines" / "api.py", ROOT / "pipelines" / "steps.py"]
    layer += [ROOT / "pipelines" / "run.py", *(ROOT / "pipelines" / "workflows").glob("*.py")]
    for path in layer:
        top = {name.split(".")[0] for name in _imports(path)}
        assert not top & {"typer", "click", "rich"}, path
        assert not [n for n in _imports(path) if n.startswith("cip.pipelines.cmd_")], path
