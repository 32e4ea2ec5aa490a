"""Browser (publishable) keys: origins, CORS, the two endpoints they may call; /web/ files."""

from __future__ import annotations

import json

import pytest
from cip.profiles.errors import ConfigError
from cip.serving.auth import KeyStore

pytest_plugins = ["tests._serving_fixtures"]

SHOP = "https://shop.example"


@pytest.fixture
def pk(shop) -> str:
    key, rec = KeyStore(shop.settings.keys_path).create(
        "browser", "web", origins=[SHOP + "/", "HTTP://localhost:8080"]
    )
    assert key.startswith("pk_") and rec.origins == (SHOP, "http://localhost:8080")
    return key


def test_browser_keys_need_origins_and_only_browser_keys_take_them(shop) -> None:
    ks = KeyStore(shop.settings.keys_path)
    with pytest.raises(ConfigError, match="--origin"):
        ks.create("browser")
    with pytest.raises(ConfigError, match="browser keys only"):
        ks.create("shop", origins=[SHOP])
    for bad in ("shop.example", "https://shop.example/path", "https://*.example"):
        with pytest.raises(ConfigError, match="scheme://host"):
            ks.create("browser", origins=[bad])
    _, rec = ks.create("browser", origins=[SHOP])
    again = KeyStore(shop.settings.keys_path).list_keys()[-1]
    assert again == rec and again.public()["origins"] == [SHOP]
    assert "origins" not in ks.list_keys()[0].public()  # the shop key of the fixture


def test_browser_key_calls_events_and_recommend_from_its_origins_only(pk, client) -> None:
    body = json.dumps({"events": [{"event_type": "page_view", "anonymous_id": "v1"}]})
    plain = {"Content-Type": "text/plain", "Origin": SHOP}
    r = client.post(f"/events?key={pk}", content=body, headers=plain)  # what sendBeacon sends
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert r.headers["access-control-allow-origin"] == SHOP and r.headers["vary"] == "Origin"
    r = client.post(
        "/recommend", json={"n": 2}, headers={"X-API-Key": pk, "Origin": "http://localhost:8080"}
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    # another origin, or none (a script outside a browser): refused, no CORS grant
    for headers in ({"Origin": "https://evil.example"}, {}):
        r = client.post("/recommend", json={"n": 2}, headers={"X-API-Key": pk, **headers})
        assert r.status_code == 403 and "origin" in r.json()["error"]
        assert "access-control-allow-origin" not in r.headers
    # the secret endpoints: 403, even from an allowed origin
    calls = {
        "/score": {"customer_ids": ["C01"]},
        "/segment_members": {"segment": "x"},
        "/segments": {},
        "/similar_items": {"item_id": "a1"},
        "/admin/reload": {},
        "/admin/forget": {"customer_ids": ["C01"]},
    }
    for path, payload in calls.items():
        r = client.post(path, json=payload, headers={"X-API-Key": pk, "Origin": SHOP})
        assert r.status_code == 403, path
        assert "browser" in r.json()["error"] and r.headers["access-control-allow-origin"] == SHOP


def test_preflight_and_keys_in_urls(pk, client, shop) -> None:
    pre = {"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    r = client.options("/events", headers=pre)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == SHOP
    assert "x-api-key" in r.headers["access-control-allow-headers"]
    for path, origin in (("/events", "https://evil.example"), ("/score", SHOP)):
        r = client.options(path, headers={**pre, "Origin": origin})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    # only publishable keys are taken from the URL; a shop key there is no key
    r = client.post(f"/recommend?key={shop.keys['shop']}", json={"n": 1})
    assert r.status_code == 401
    # a shop key from a page gets no CORS grant (the browser hides the answer)
    r = client.post(
        "/recommend", json={"n": 1}, headers={"X-API-Key": shop.keys["shop"], "Origin": SHOP}
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # text/plain is for browser keys only
    r = client.post(
        "/recommend",
        content='{"n": 1}',
        headers={"X-API-Key": shop.keys["shop"], "Content-Type": "text/plain"},
    )
    assert r.status_code == 415


def test_web_files_are_open_and_the_demo_is_off_by_default(client) -> None:
    r = client.get("/web/cip.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "sendBeacon" in r.text and "window.cip" in r.text
    assert client.get("/web/demo/").status_code == 404
    assert client.get("/web/demo/config.json").status_code == 404
    assert client.get("/web/nothing").status_code == 404
