"""Redis Streams as the trigger worker's feed (live Redis at 127.0.0.1:6379; fails under CI=true
when Redis is missing, through the ``redis_url`` fixture)."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from cip.activation.signing import new_secret
from cip.activation.triggers.feed import RedisStreamFeed
from cip.pipelines.api import Workspace
from cip.pipelines.workflows.triggers import run_worker
from cip.profiles.store import open_store
from cip.serving.events import RedisEventStream

from tests._triggers_world import add_profiles, at
from tests._webhook_receiver import Receiver
from tests.test_triggers_worker import CART, Recs


def _rec(eid: str, cust: str, kind: str, ts, item: str | None = None) -> dict:
    r = {"event_id": eid, "ts": ts.isoformat(sep=" "), "event_type": kind, "customer_id": cust}
    return {**r, "item_id": item} if item else r


def test_consumer_group_rereads_unacknowledged_entries_after_a_crash(redis_url: str) -> None:
    import redis

    key = f"cip-test:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(redis_url)
    try:
        RedisEventStream(redis_url, key)([_rec(f"e{i}", "c", "page_view", at(i)) for i in range(5)])
        store = open_store("duckdb")
        feed = RedisStreamFeed(r, key, "g", "w1")
        assert [x["event_id"] for x in feed.read(store, limit=3)] == ["e0", "e1", "e2"]
        # killed before commit: a new worker re-reads its pending entries, then the rest
        again = RedisStreamFeed(r, key, "g", "w1")
        assert [x["event_id"] for x in again.read(store, limit=10)] == ["e0", "e1", "e2"]
        again.commit(store)
        assert [x["event_id"] for x in again.read(store, limit=10)] == ["e3", "e4"]
        again.commit(store)
        assert again.read(store) == [] and again.lag(store) == 0
    finally:
        r.delete(key)


def test_worker_on_redis_stream_sends_once(tmp_path: Path, redis_url: str) -> None:
    import redis

    key = f"cip-test:{uuid.uuid4().hex[:8]}"
    secret = new_secret()
    r = redis.Redis.from_url(redis_url)
    try:
        with Receiver(fail_rate=0.0, secret=secret) as rx:
            ws = Workspace.init(tmp_path / "ws")
            cfg = yaml.safe_load(ws.config_path.read_text())
            cfg["destinations"] = {"crm": {"url": rx.url, "secret": secret}}
            cfg["triggers"] = [{**CART, "destination": "crm"}]
            cfg["policy"] = {"quiet_hours": None}
            cfg["serving"] = {"redis_url": redis_url, "event_stream": key}
            cfg["trigger_worker"] = {"feed": "redis"}
            ws.config_path.write_text(yaml.safe_dump(cfg))
            ws = Workspace.open(ws.root)
            with ws.open_store() as store:
                add_profiles(store, [{"uid": "u1"}, {"uid": "u2"}])
            RedisEventStream(redis_url, key)(
                [
                    _rec("e1", "c-u1", "add_to_cart", at(0), "A"),
                    _rec("e2", "c-u2", "add_to_cart", at(0), "B"),
                    _rec("e3", "c-u2", "purchase", at(3), "B"),
                ]
            )
            r1 = run_worker(ws, once=True, content=Recs(), clock=lambda: at(5))
            r2 = run_worker(ws, once=True, content=Recs(), clock=lambda: at(31))
            assert (r1.events, r1.started) == (3, 2)
            assert (r2.events, r2.cancelled, r2.decisions, r2.delivered) == (0, 1, {"sent": 1}, 1)
            assert [b["person"]["unified_id"] for b in rx.by_key.values()] == ["u1"]
            assert ws.triggers.status()["feed_lag"] == 0
    finally:
        r.delete(key)
