"""``cip report`` (issue M): every section on a small demo shop, its figures equal to the
measure tables, an empty workspace, and the page in headless Chromium (no console error,
nothing loaded from the network, a screenshot).

The shop: 150 simulated people with two randomised campaigns, taken through the API
(ingest, unify, a churn champion, scores, segments, an uplift model) plus a few trigger
log decisions. Set ``CIP_REPORT_SCREENSHOT=docs/report.png`` to refresh the README's
screenshot from the browser test.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cip.activation.measure import best_channel_and_hour, message_facts, person_orders
from cip.activation.triggers import ensure_trigger_tables
from cip.pipelines.api import Workspace
from cip.pipelines.cli import main
from cip.pipelines.workflows.report import SECTIONS

from tests._models_support import mlflow_db

END = dt.date(2025, 6, 30)
AS_OF = "2025-07-01"
EARLIER = "2025-06-01"


@dataclass
class Shop:
    ws: Workspace
    uplift: dict
    report: object
    text: str


def _trigger_log(ws: Workspace) -> None:
    """A cart trigger's decisions: 6 sent (4 delivered), 3 held out, 1 capped."""
    with ws.open_store() as store:
        ensure_trigger_tables(store)
        uids = list(
            store.sql("SELECT unified_id FROM profiles ORDER BY unified_id LIMIT 10")["unified_id"]
        )
        t0 = dt.datetime(2025, 6, 20, 10)
        for i, uid in enumerate(uids):
            decision = "sent" if i < 6 else "held_out" if i < 9 else "capped"
            sent_at = t0 + dt.timedelta(minutes=1) if i < 4 else None
            store.execute(
                'INSERT INTO messages (message_id, "trigger", unified_id, window_key, step, '
                "channel, decision, control, reason, decided_at, sent_at) "
                "VALUES (?, 'cart', ?, 'k', 0, 'email', ?, ?, 'test', ?, ?)",
                [f"m{i}", uid, decision, decision == "held_out", t0, sent_at],
            )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    root = tmp_path_factory.mktemp("report") / "shop"
    ws = Workspace.init(root)
    mlflow_db(root / "mlflow.db")  # a migrated store (copied, not rebuilt)
    ws.simulate(customers=150, days=150, seed=3, campaigns=2, end=END)
    ws.reload()
    ws.ingest()
    ws.unify()
    churn = ws.train("churn", as_of="2025-06-01", horizon_days=30, n_snapshots=2)
    if not churn.promoted:  # a tiny shop may not beat the baselines; promote by hand
        ws.models.promote("churn", churn.version)
    ws.score(AS_OF)
    ws.features(EARLIER)
    ws.segments.build(EARLIER)  # a previous build: RFM flows
    ws.features(AS_OF)
    ws.segments.build(AS_OF)
    uplift = ws.measure.train_uplift("c0").as_dict()
    _trigger_log(ws)
    rep = ws.report()
    return Shop(ws, uplift, rep, Path(rep.path).read_text())


def _rows(text: str, key: str) -> list[dict[str, str]]:
    """The ``data-*`` attributes of every ``<tr>``/``<div>``/``<li>`` having ``data-<key>``."""
    out = []
    for m in re.finditer(r"<(?:tr|div|li) ([^>]*data-" + key + r"=[^>]*)>", text):
        out.append(
            {k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1))}
        )
    return out


def _section(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_every_section_is_there_with_data_and_the_page_is_self_contained(shop: Shop) -> None:
    rep, text = shop.report, shop.text
    assert rep.errors == {}
    assert rep.sections == {sid: True for sid in SECTIONS}
    assert Path(rep.path) == shop.ws.root / "reports" / "report.html"
    for sid, heading in SECTIONS.items():
        assert f'<section id="{sid}"><h2>{heading}</h2>' in text
    # self-contained: no script, no stylesheet or image by URL
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert (
        text.count('src="data:image/png;base64,') >= 5
    )  # segments, attribution, lift, Qini, hours
    assert not [p for p in Path(rep.path).parent.iterdir() if p.name.endswith(".tmp")]
    # the churn champion's card: its calibration chart and its top features, from its run
    card = re.search(r'<div class="card" data-model="(cip-churn[^"]*)">(.*?)</div>', text, re.S)
    assert card, "no churn card"
    assert 'alt="calibration"' in card.group(2)
    shown = [r["feature"] for r in _rows(card.group(2), "feature")]
    import mlflow

    run_id = next(
        v.run_id for v in shop.ws.models.list().versions if v.name == card.group(1) and v.champion
    )
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="feature_importance.csv"
    )
    assert shown == pd.read_csv(local)["feature"].head(5).tolist()


def test_report_figures_equal_the_measure_tables(shop: Shop) -> None:
    ws, text = shop.ws, shop.text
    # lift: every metric of every campaign, to the last digit
    lift = ws.measure.lift()
    rows = {(r["campaign"], r["metric"]): r for r in _rows(text, "metric") if "difference" in r}
    want = [*lift.campaigns, *([lift.global_control] if lift.global_control else [])]
    assert {c.campaign for c in want} >= {"c0", "c1", "cart"}
    for c in want:
        for m in c.metrics:
            r = rows[(c.campaign, m.metric)]
            for attr, v in (
                ("difference", m.difference),
                ("ci-low", m.ci_low),
                ("ci-high", m.ci_high),
            ):
                assert r[attr] == repr(v), (c.campaign, m.metric, attr)
    warned = {r["warning"] for r in _rows(text, "warning")}
    assert warned == {c.campaign for c in want if c.warnings}
    # attribution: last and first touch per campaign and channel
    for model in ("last", "first"):
        att = ws.measure.attribution(model=model, by=("campaign", "channel"))
        got = {
            (r["campaign"], r["channel"]): (int(r["orders"]), float(r["revenue"]))
            for r in _rows(text, "model")
            if r.get("model") == model and "orders" in r
        }
        assert got == {(r["campaign"], r["channel"]): (r["orders"], r["revenue"]) for r in att.rows}
        assert got  # the simulated clicks are followed by orders
    # segments: members at the latest build
    segs = {s.segment: s.members for s in ws.segments.list().segments if s.members is not None}
    assert {r["segment"]: int(r["members"]) for r in _rows(text, "segment")} == segs
    # RFM flows between the two builds: the persons who changed segment
    from cip.activation import segment_transitions

    with ws.open_store() as store:
        tr = segment_transitions(store)
    moves = tr[tr["from_segment"] != tr["to_segment"]].head(20)
    flows = {(r["flow-from"], r["flow-to"]): int(r["n"]) for r in _rows(text, "flow-from")}
    assert flows and flows == {(r.from_segment, r.to_segment): int(r.n) for r in moves.itertuples()}
    # workspace: profiles
    kpi = re.search(r'data-kpi="profiles"><b>([\d,]+)</b>', text)
    assert kpi and int(kpi.group(1).replace(",", "")) == ws.status().tables["profiles"]
    # messages: sends and clicks per campaign and channel, the trigger log's decisions
    with ws.open_store() as store:
        facts = message_facts(store)
        orders = person_orders(store)
    sends = facts[facts["event_type"] == "send"].groupby(["campaign", "channel"]).size()
    clicks = facts[facts["event_type"] == "click"].groupby(["campaign", "channel"]).size()
    msg = {(r["campaign"], r["channel"]): r for r in _rows(text, "sent") if "channel" in r}
    assert set(msg) == set(facts.groupby(["campaign", "channel"]).size().index)
    for key, r in msg.items():
        assert int(r["sent"]) == sends.get(key, 0) and int(r["clicks"]) == clicks.get(key, 0)
    trig = _section(text, "messages")
    assert '<td>cart</td><td>email</td><td class="n">6</td><td class="n">3</td>' in trig
    assert '<td class="n">1</td><td class="n">4</td></tr>' in trig  # capped 1, delivered 4
    # uplift: holdout Qini of the learners and baselines, the scored persons
    up = {r["who"]: float(r["qini"]) for r in _rows(text, "uplift")}
    assert up == pytest.approx({k: v["qini"] for k, v in shop.uplift["metrics"].items()})
    scores = _rows(text, "scores")
    assert [(s["scores"], int(s["persons"]), int(s["sleeping-dogs"])) for s in scores] == [
        ("c0", shop.uplift["scored"], shop.uplift["sleeping_dogs"])
    ]
    assert "Qini curve of cip-uplift-c0" in text
    # best channel: every person messaged is counted once, per channel as computed
    best = best_channel_and_hour(facts, orders)
    got = {r["best-channel"]: int(r["persons"]) for r in _rows(text, "best-channel")}
    assert got == best.groupby("channel").size().to_dict()
    assert sum(got.values()) == facts.loc[facts["event_type"] == "send", "unified_id"].nunique()


def test_an_empty_workspace_says_so_in_every_section(tmp_path: Path, capsys) -> None:
    ws = Workspace.init(tmp_path / "empty")
    out = tmp_path / "out" / "r.html"
    capsys.readouterr()
    code = main(["--workspace", str(ws.root), "report", "--out", str(out), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["path"] == str(out) and res["errors"] == {}
    assert res["sections"] == {sid: False for sid in SECTIONS}
    text = out.read_text()
    for sid in SECTIONS:
        body = _section(text, sid)
        lines = re.findall(r'<p class="empty">([^<]+)</p>', body)
        assert len(lines) == 1 and lines[0].strip(), sid
    assert not (ws.root / "mlflow.db").exists()  # reading the report creates no MLflow store


def test_bad_window_is_a_usage_error(tmp_path: Path, capsys) -> None:
    ws = Workspace.init(tmp_path / "w")
    assert main(["--workspace", str(ws.root), "report", "--window", "0"]) == 2


def test_report_renders_in_chromium_without_errors(shop: Shop, browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    url = Path(shop.report.path).resolve().as_uri()
    page.goto(url, wait_until="load")
    headings = page.eval_on_selector_all("section > h2", "els => els.map(e => e.textContent)")
    assert headings == list(SECTIONS.values())
    broken = page.eval_on_selector_all(
        "img", "els => els.filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    n_img = page.eval_on_selector_all("img", "els => els.length")
    assert n_img >= 5 and broken == 0
    assert problems == []
    assert [u for u in fetched if not u.startswith(("data:", url))] == []
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dest = os.environ.get("CIP_REPORT_SCREENSHOT")
    if dest:
        shutil.copyfile(shot, dest)
    page.close()


def test_report_on_a_workspace_with_only_messages(tmp_path: Path) -> None:
    """No models, no segments: those sections say so, the message sections are filled."""
    from cip.pipelines.simulator.campaigns import simulate_campaigns

    ws = Workspace.init(tmp_path / "msgs")
    sim = simulate_campaigns(400, seed=2, control_pct=50)
    t0 = pd.Timestamp("2025-01-01")
    with ws.open_store() as store:
        for table, df in (
            ("_orders_src", sim.orders.rename(columns={"unified_id": "customer_id", "order_channel": "channel"})
             .assign(record_id=lambda d: d["order_id"], status="completed")),
            ("message_events", sim.message_events.drop(columns="scope")
             .assign(record_id=lambda d: d["message_id"] + d["event_type"], customer_id=lambda d: d["unified_id"])),
        ):  # fmt: skip
            df = df.copy()
            df.insert(0, "source", "shop")
            df["source_record_id"] = df["record_id"]
            df["ingested_at"] = t0
            store.load_arrow(table, df)
    rep = ws.report(tmp_path / "r.html", window_days=7)
    assert rep.errors == {}
    assert rep.sections["lift"] and rep.sections["attribution"] and rep.sections["channels"]
    assert (
        not rep.sections["models"] and not rep.sections["segments"] and not rep.sections["uplift"]
    )
    text = (tmp_path / "r.html").read_text()
    lift = ws.measure.lift()
    c0 = next(
        r
        for r in _rows(text, "metric")
        if r["campaign"] == "c0" and r["metric"] == "conversion_rate"
    )
    assert c0["difference"] == repr(lift.campaigns[0].metric("conversion_rate").difference)


def test_clv_decile_chart_reads_the_champion_runs_decile_table(tmp_path: Path) -> None:
    """The CLV card's chart comes from the winner's ``deciles_<winner>.csv`` of its run."""
    import mlflow
    from cip.models.clv.metrics import decile_table
    from cip.models.registry import configure_mlflow
    from cip.models.tracking import log_dict_artifacts
    from cip.pipelines.workflows.report import _clv_deciles

    uri = mlflow_db(tmp_path / "mlflow.db")
    configure_mlflow(uri, str(tmp_path / "art"))
    mlflow.set_experiment("clv-test")
    actual = [float(i) for i in range(50)]
    with mlflow.start_run() as run:
        mlflow.set_tag("clv.winner", "two_part")
        log_dict_artifacts({"deciles_two_part.csv": decile_table(actual, actual)})
    got = _clv_deciles(mlflow.get_run(run.info.run_id))
    assert got.startswith('<img class="chart" alt="CLV decile chart" src="data:image/png;base64,')
    with mlflow.start_run() as other:  # a run without the table: said in one line
        mlflow.set_tag("clv.winner", "btyd")
    assert "No decile table" in _clv_deciles(mlflow.get_run(other.info.run_id))
