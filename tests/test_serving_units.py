"""Building blocks of the serving layer: keys, session store, events log, erasure, reloads."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime

import pandas as pd
import pytest
from cip.pipelines.cli import main as cli_main
from cip.pipelines.workflows.data import ingest as run_ingest
from cip.pipelines.workflows.setup import ensure_events_source
from cip.profiles.store import open_store
from cip.serving.auth import KeyStore, presented_key
from cip.serving.erasure import ErasureIndex, read_journal, record_erasure
from cip.serving.events import EventSink, validate_events
from cip.serving.schemas import EventIn, RecommendRequest
from cip.serving.session_store import MemorySessionStore
from cip.serving.state import StateHolder

pytest_plugins = ["tests._serving_fixtures"]


def test_keys_are_stored_as_salted_hashes_and_revocable(tmp_path) -> None:
    ks = KeyStore(tmp_path / "keys.json")
    key, rec = ks.create("shop", "web")
    assert key.startswith(f"cip_{rec.id}_") and len(key) > 40
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and key.split("_")[-1] not in text and rec.hash in text
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    other = KeyStore(tmp_path / "keys.json")  # a second process reading the file
    assert other.verify(key).scope == "shop" and other.verify(key + "x") is None
    assert other.verify(None) is None and other.verify("") is None
    ks.revoke("web")
    assert KeyStore(tmp_path / "keys.json").verify(key) is None
    with pytest.raises(Exception, match="unknown scope"):
        ks.create("root")
    assert presented_key({b"authorization": b"Bearer abc "}) == "abc"
    assert presented_key({b"x-api-key": b"k1", b"authorization": b"Bearer k2"}) == "k1"


def test_cli_keys_create_prints_once_list_and_revoke(tmp_workspace, capsys) -> None:
    ws = str(tmp_workspace.root)
    assert (
        cli_main(
            ["--workspace", ws, "keys", "create", "--scope", "campaign", "--name", "crm", "--json"]
        )
        == 0
    )
    made = json.loads(capsys.readouterr().out)
    assert made["scope"] == "campaign" and made["key"].startswith("cip_")
    assert cli_main(["--workspace", ws, "keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listed] == ["crm"] and "key" not in listed[0]
    assert "hash" not in listed[0]
    assert cli_main(["--workspace", ws, "keys", "revoke", made["id"]]) == 0
    assert KeyStore(tmp_workspace.root / "keys.json").verify(made["key"]) is None
    assert cli_main(["--workspace", ws, "keys", "revoke", "nope"]) == 4  # NotFoundError


def test_memory_session_store_ttl_lru_and_consent(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("cip.serving.session_store.time.monotonic", lambda: clock[0])
    st = MemorySessionStore(b"s", max_items=2, ttl_seconds=10, max_sessions=2)
    a, b, c = ("anonymous_id", "a"), ("anonymous_id", "b"), ("customer_id", "c")
    st.add_items([(a, "i1"), (a, "i2"), (a, "i3"), (b, "j1")])
    assert st.recent_items([a], 5) == ["i3", "i2"] and st.recent_items([a, b], 5)[-1] == "j1"
    st.add_items([(c, "k1")])  # a third session evicts the least recently written (a)
    assert st.recent_items([a], 5) == [] and len(st) == 2
    assert set(st._items) == {st.key(b), st.key(c)} and "b" not in st._items  # hashed keys
    clock[0] += 11
    assert st.recent_items([b], 5) == []  # expired
    st.set_consent([a], "personalization", True)
    st.set_consent([c], "personalization", False)
    assert st.consent([a], "personalization") is True
    assert st.consent([a, c], "personalization") is False  # a refusal wins
    assert st.forget([c]) == 1 and st.consent([c], "personalization") is None


def test_event_validation_normalises_time_and_ids() -> None:
    now = datetime(2024, 6, 1, 12, 0)
    ok, bad = validate_events(
        [
            EventIn(
                event_type="Product_View",
                anonymous_id=123,
                item_id="a1",
                ts="2024-06-01T13:00:00+02:00",
                properties={"b": 1, "a": [1]},
            ),
            EventIn(event_type="page_view", customer_id="c", event_id="e"),
            EventIn(event_type="page_view", customer_id="c", event_id="e"),
            EventIn(event_type="bad type!", customer_id="c"),
        ],
        now=now,
    )
    r = ok[0].record
    assert r["event_type"] == "product_view" and r["anonymous_id"] == "123"
    assert r["ts"] == "2024-06-01 11:00:00.000000" and r["properties"] == '{"a": [1], "b": 1}'
    assert "customer_id" not in r  # null values are left out of the line
    assert ok[1].record["ts"] == "2024-06-01 12:00:00.000000"  # default: now
    assert bad == [
        (2, "duplicate event_id in this batch"),
        (3, "event_type must be a word like product_view (letters, digits, _)"),
    ]


def test_events_sink_rotates_recovers_and_feeds_ingest(tmp_workspace) -> None:
    ws = tmp_workspace
    assert ensure_events_source(ws) and not ensure_events_source(ws)
    d = ws.root / "sources" / "_http_events"
    sink = EventSink(d, rotate_seconds=3600)
    ok, _ = validate_events(
        [
            EventIn(
                event_type="product_view", anonymous_id="v1", item_id="x1", ts="2024-01-01T00:00:00"
            )
        ]
    )
    sink.append([e.record for e in ok])
    [part] = d.glob("*.jsonl.part")
    assert json.loads(part.read_text())["item_id"] == "x1"
    # the ingest sees only published files: nothing yet (the placeholder line is filtered)
    [rep] = run_ingest(ws, "http_events").reports
    assert rep.rows_loaded == 0 and rep.rows_filtered == 1 and rep.rows_quarantined == 0
    # a crash leaves the .part file; a new process publishes it (its writer is gone)
    dead = part.with_name(part.name.replace(f"-{os.getpid()}-", "-999999999-"))
    os.rename(part, dead)
    sink._fd = None  # the crashed writer's descriptor is gone with it
    assert EventSink(d).recover() == 0  # already published by the constructor
    assert not list(d.glob("*.part")) and len(list(d.glob("events-*.jsonl"))) == 1
    [rep] = run_ingest(ws, "http_events").reports
    [again] = run_ingest(ws, "http_events").reports
    assert rep.rows_loaded == 1 and again.rows_loaded == 0 and again.rows_already_present == 1


def test_erasure_journal_holds_hashes_only(tmp_path) -> None:
    j = tmp_path / "erasures.jsonl"
    pairs = record_erasure(j, b"salt", unified_ids=["U9"], identifiers=[("customer_id", " C9 ")])
    text = j.read_text()
    assert "U9" not in text and "C9" not in text and len(text.splitlines()) == 2
    idx = ErasureIndex(b"salt", read_journal(j))
    assert set(pairs) == read_journal(j)
    assert idx.is_erased("customer_id", "C9") and idx.is_erased("unified_id", "U9")
    assert not idx.is_erased("anonymous_id", "C9") and not idx.is_erased("customer_id", None)
    assert not ErasureIndex(b"other", read_journal(j)).is_erased("customer_id", "C9")


def test_store_without_identity_resolution_and_opt_in_policy(shop, tmp_path) -> None:
    from cip.serving.settings import ServingSettings

    st = open_store("duckdb", path=tmp_path / "cip.duckdb")
    st.ensure_schema()
    st.load_arrow(
        "order_lines",
        pd.DataFrame(
            {
                "source": "s",
                "record_id": ["1", "2", "3"],
                "order_id": ["o1", "o2", "o3"],
                "ts": pd.Timestamp("2024-01-01"),
                "customer_id": ["c1", "c1", "c2"],
                "item_id": ["x", "y", "x"],
                "quantity": 1.0,
                "unit_price": 1.0,
                "status": ["completed", "cancelled", "completed"],
            }
        ),
    )
    st.close()
    s = ServingSettings.for_folder(tmp_path, personalization_consent="opt_in").model_copy(
        update={"mlflow_tracking_uri": shop.tracking_uri, "recommender_model": "no-such-model"}
    )
    h = StateHolder(s)
    try:
        assert h.reload().reloaded
        snap = h.state.snapshot
        assert h.state.model_version is None  # no registry: no champion, popular items
        assert snap.person("c1", None) == "c1" and list(snap.purchases["c1"]) == ["x"]
        assert list(snap.popular) == ["x"] and not snap.has_catalog
        assert not snap.personalization_allowed("c1")  # opt-in: no statement, no
        from cip.serving import engine

        r = engine.recommend(h.state, h.sessions, RecommendRequest(customer_id="c2", n=3))
        assert r.strategy == "popular" and [i.item_id for i in r.items] == ["x"]
        assert not h.reload().reloaded  # nothing changed
    finally:
        h.stop()


def test_reload_keeps_serving_while_a_writer_holds_the_store(shop) -> None:
    h = StateHolder(shop.settings)
    try:
        assert h.reload().reloaded
        before = h.state
        writer = open_store("duckdb", path=shop.root / "cip.duckdb")  # the pipeline writes
        try:
            writer.execute("UPDATE products SET in_stock = FALSE WHERE item_id = 'a4'")
            rep = h.reload(force=True)
            assert not rep.reloaded and "cannot read the store" in rep.error
            assert h.state is before
        finally:
            writer.close()
        rep = h.reload()  # the file changed: picked up without force
        assert rep.reloaded and rep.store_changed and "a4" in h.state.snapshot.out_of_stock
    finally:
        h.stop()


def test_watcher_picks_up_a_new_champion_and_the_reload_stamp(shop) -> None:

    s = shop.settings.model_copy(update={"reload_interval_seconds": 0.01})
    h = StateHolder(s)
    other = StateHolder(s)  # a second worker
    try:
        h.tick()
        other.tick()
        assert h.state.model_version == "1" and other.state.model_version == "1"
        v2 = shop.register()
        h.tick()  # the periodic check sees the new champion
        assert h.state.model_version == v2
        old_other = other.state
        h.request_reload()
        other.settings = other.settings.model_copy(update={"reload_interval_seconds": 0})
        other.tick()  # the stamp forces a reload in every worker
        assert other.state is not old_other and other.state.model_version == v2
    finally:
        h.stop()
        other.stop()
