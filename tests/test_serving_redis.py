"""The Redis session store against the real Redis: shared by workers, hashed keys, erasure."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cip.serving.schemas import EventIn, EventsRequest, RecommendRequest
from cip.serving.service import CIPService
from cip.serving.session_store import RedisSessionStore

pytest_plugins = ["tests._serving_fixtures"]

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix(redis_url):
    import redis

    p = f"cip-test-{uuid.uuid4().hex[:8]}:"
    yield p
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(f"{p}*"))
    if keys:
        r.delete(*keys)
    r.close()


def test_items_latest_first_capped_expiring_and_hashed(redis_url, prefix) -> None:
    st = RedisSessionStore(redis_url, b"salt", max_items=3, ttl_seconds=60, prefix=prefix)
    v = ("anonymous_id", "visitor@example.com")
    st.add_items([(v, "i1"), (v, "i2"), (v, "i3"), (v, "i4")])
    assert st.recent_items([v], 10) == ["i4", "i3", "i2"]
    keys = [k.decode() for k in st.r.scan_iter(f"{prefix}*")]
    assert len(keys) == 1 and "visitor" not in keys[0]
    assert 0 < st.r.ttl(keys[0]) <= 60
    st.set_consent([v], "personalization", False)
    assert st.consent([v], "personalization") is False
    assert st.consent([("anonymous_id", "other")], "personalization") is None
    assert st.forget([v]) == 1
    assert st.recent_items([v], 10) == [] and st.consent([v], "personalization") is None
    assert list(st.r.scan_iter(f"{prefix}*")) == []
    st.close()


def test_two_workers_share_sessions(shop, redis_url, prefix) -> None:
    settings = shop.settings.model_copy(
        update={"session_store": "redis", "redis_url": redis_url, "redis_prefix": prefix}
    )
    a = CIPService.inner(settings=settings, watch=False)
    b = CIPService.inner(settings=settings, watch=False)
    try:
        ev = [
            EventIn(event_type="product_view", anonymous_id="shared-visitor", item_id=i)
            for i in ("a1", "a2")
        ]
        assert a.events(EventsRequest(events=ev)).accepted == 2
        r = asyncio.run(b.recommend(RecommendRequest(anonymous_id="shared-visitor", n=3)))
        assert r.strategy == "session"
        assert {i.item_id for i in r.items} == {"a3", "a4", "a5"}
    finally:
        a.holder.stop()
        b.holder.stop()
