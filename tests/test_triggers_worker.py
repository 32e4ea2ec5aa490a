"""The trigger worker end to end in one process: journal feed with durable offsets, persons,
content (in-process provider), signed per-message webhooks, sent_at, and the CLI views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cip.activation.signing import new_secret
from cip.activation.triggers import ContentRequest, ContentResult, ContentUnavailable
from cip.pipelines.api import Workspace
from cip.pipelines.cli import main
from cip.pipelines.workflows.triggers import events_dir, run_worker

from tests._triggers_world import CART, add_profiles, at
from tests._webhook_receiver import Receiver


def _line(eid: str, cust: str, kind: str, ts, item: str | None = None) -> str:
    rec = {"event_id": eid, "ts": ts.isoformat(sep=" "), "event_type": kind, "customer_id": cust}
    if item:
        rec["item_id"] = item
    return json.dumps(rec) + "\n"


def _workspace(tmp_path: Path, url: str, secret: str) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["destinations"] = {"crm": {"url": url, "secret": secret}}
    cfg["triggers"] = [
        {**CART, "destination": "crm", "content": {"cart": True, "recommend": 2}},
    ]
    cfg["policy"] = {"quiet_hours": None}
    ws.config_path.write_text(yaml.safe_dump(cfg))
    ws = Workspace.open(ws.root)
    with ws.open_store() as store:
        add_profiles(store, [{"uid": "u1"}, {"uid": "u2"}])
    return ws


class Recs:
    """An in-process content provider that can be switched off (the service is down)."""

    def __init__(self) -> None:
        self.up = False
        self.asked: list[ContentRequest] = []

    def __call__(self, request: ContentRequest) -> ContentResult:
        self.asked.append(request)
        if not self.up:
            raise ContentUnavailable("service down")
        items = [{"item_id": f"rec{i}", "score": 1.0 - i / 10} for i in range(request.n)]
        return ContentResult(items, {"recommender": "7"})


def test_worker_journal_to_signed_webhook_exactly_once(tmp_path: Path, capsys) -> None:
    secret = new_secret()
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        ws = _workspace(tmp_path, rx.url, secret)
        d = events_dir(ws)
        d.mkdir(parents=True, exist_ok=True)
        part = d / "events-20260105T120000-1-abcdef.jsonl.part"
        part.write_text(
            _line("e1", "c-u1", "add_to_cart", at(0), "A")
            + _line("e2", "c-u2", "add_to_cart", at(0), "B")
            + _line("e3", "c-u2", "checkout", at(5))
            + '{"event_id": "e4", "ts": "'  # a line being written: not read yet
        )
        recs = Recs()
        r1 = run_worker(ws, once=True, content=recs, clock=lambda: at(6))
        assert (r1.events, r1.started, r1.decisions) == (3, 2, {})
        # the service renamed the file (rotation) and the line was completed
        part.rename(d / part.name.removesuffix(".part"))
        with open(d / part.name.removesuffix(".part"), "a") as fh:
            fh.write(
                f'{at(7).isoformat(sep=" ")}", "event_type": "page_view", "customer_id": "c-u1"}}\n'
            )
        # 31 min later: u1's cart is due, u2 checked out; the service is down -> waits
        r2 = run_worker(ws, once=True, content=recs, clock=lambda: at(31))
        assert r2.events == 1  # only the completed line: the offsets survived the rename
        assert (r2.due, r2.cancelled, r2.retried, r2.delivered) == (2, 1, 1, 0)
        assert rx.requests == 0
        assert recs.asked[0].customer_id == "c-u1" and list(recs.asked[0].context_items) == ["A"]
        # the service is back: the message goes, signed, with the cart and the recommendations
        recs.up = True
        r3 = run_worker(ws, once=True, content=recs, clock=lambda: at(37))
        assert (r3.decisions, r3.delivered) == ({"sent": 1}, 1)
        assert rx.rejected == 0 and len(rx.by_key) == 1
        ((mid, body),) = rx.by_key.items()
        assert body["message_id"] == mid and body["trigger"] == "abandoned_cart"
        assert body["person"] == {
            "unified_id": "u1", "customer_id": "c-u1", "contact": {"email": "u1@example.com"}
        }  # fmt: skip
        assert [(i["item_id"], i["block"]) for i in body["items"]] == [
            ("A", "cart"), ("rec0", "recommend"), ("rec1", "recommend")
        ]  # fmt: skip
        assert body["model_versions"]["recommender"] == "7"
        # nothing twice: a later pass reads no event and sends nothing
        r4 = run_worker(ws, once=True, content=recs, clock=lambda: at(60))
        assert (r4.events, r4.due, r4.delivered, rx.requests) == (0, 0, 0, 1)

    # the views
    code = main(["-w", str(ws.root), "triggers", "log", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and [(m["decision"], m["sent_at"] is not None) for m in out] == [
        ("sent", True)
    ]
    main(["-w", str(ws.root), "triggers", "status", "--json"])
    st = json.loads(capsys.readouterr().out)
    row = st["triggers"][0]
    assert (row["sent"], row["cancelled"], st["undelivered"], st["feed_lag"]) == (1, 1, 0, 0)
    main(["-w", str(ws.root), "triggers", "list", "--json"])
    (t,) = json.loads(capsys.readouterr().out)
    assert t["journey"] == "wait 30m | unless checkout,purchase | send email -> crm"
    main(["-w", str(ws.root), "triggers", "test", "abandoned_cart", "--customer-id", "c-u2",
          "--now", at(40).isoformat(), "--json"])  # fmt: skip
    dry = json.loads(capsys.readouterr().out)
    assert dry["unified_id"] == "u2"
    assert [j["state"] for j in dry["journeys"]] == ["cancelled"]
    assert dry["journeys"][0]["reason"].startswith("unless: checkout")
    assert dry["decisions_now"][0]["decision"] == "sent"  # nothing caps u2: they got nothing


def test_worker_unreachable_receiver_keeps_message_pending(tmp_path: Path) -> None:
    secret = new_secret()
    ws = _workspace(tmp_path, "http://127.0.0.1:9/hook", secret)  # nothing listens on port 9
    d = events_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    (d / "events-20260105T120000-1-aaaaaa.jsonl").write_text(
        _line("e1", "c-u1", "add_to_cart", at(0), "A")
    )
    recs = Recs()
    recs.up = True
    run_worker(ws, once=True, content=recs, clock=lambda: at(1))
    r = run_worker(ws, once=True, content=recs, clock=lambda: at(31))
    assert (r.decisions, r.delivered, r.delivery_failed) == ({"sent": 1}, 0, 1)
    st = ws.triggers.status()
    assert st["undelivered"] == 1


@pytest.mark.parametrize("age", ["bad", "0x"])
def test_run_rejects_a_bad_max_event_age(tmp_path: Path, age: str, capsys) -> None:
    ws = _workspace(tmp_path, "http://127.0.0.1:9/hook", new_secret())
    code = main(["-w", str(ws.root), "triggers", "run", "--once", "--max-event-age", age])
    assert code == 2


def test_ingest_records_the_catalog_and_a_price_drop_fires(tmp_path: Path) -> None:
    import datetime as dt

    secret = new_secret()
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        ws = _workspace(tmp_path, rx.url, secret)
        cfg = yaml.safe_load(ws.config_path.read_text())
        cfg["triggers"] = [
            {"name": "price_drop", "when": {"catalog": "price_drop", "min_pct": 10},
             "channel": "email", "destination": "crm"}
        ]  # fmt: skip
        cfg["sources"] = [
            {"name": "cat", "table": "products", "path": "p.csv",
             "columns": {"item_id": "sku", "title": "name", "price": "price"}}
        ]  # fmt: skip
        ws.config_path.write_text(yaml.safe_dump(cfg))
        ws = Workspace.open(ws.root)
        (ws.root / "p.csv").write_text("sku,name,price\nA,Lamp,100.0\nB,Bulb,10.0\n")
        assert ws.ingest().catalog_changes == 2  # two new items
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        d = events_dir(ws)
        d.mkdir(parents=True, exist_ok=True)
        (d / "events-20260105T120000-1-bbbbbb.jsonl").write_text(
            _line("e1", "c-u1", "add_to_cart", now - dt.timedelta(hours=2), "A")
            + _line("e2", "c-u2", "add_to_cart", now - dt.timedelta(hours=2), "A")
            + _line("e3", "c-u2", "purchase", now - dt.timedelta(hours=1), "A")
        )
        run_worker(ws, once=True, content=Recs())
        (ws.root / "p.csv").write_text("sku,name,price\nA,Lamp,85.0\nB,Bulb,9.5\n")
        assert ws.ingest().catalog_changes == 2  # A -15 %, B -5 % (under min_pct)
        r = run_worker(ws, once=True, content=Recs())
        assert (r.catalog_changes, r.decisions, r.delivered) == (2, {"sent": 1}, 1)
        (body,) = rx.by_key.values()
        assert body["person"]["unified_id"] == "u1"  # u2 bought the lamp
        assert [(i["item_id"], i["block"], i["price"]) for i in body["items"]] == [
            ("A", "item", 85.0)
        ]
        assert body["context"]["pct"] == 15.0
