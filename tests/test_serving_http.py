"""HTTP through the ASGI app in-process: keys and scopes, bad input, sessions, hot reload."""

from __future__ import annotations

import threading
import time

from cip.serving import service as service_module
from cip.serving.auth import KeyStore

pytest_plugins = ["tests._serving_fixtures"]


def h(shop, scope: str) -> dict[str, str]:
    return {"X-API-Key": shop.keys[scope]}


def test_health_is_open_and_data_needs_a_key_of_the_right_scope(client, shop) -> None:
    for path in ("/livez", "/readyz", "/docs.json"):
        assert client.get(path).status_code == 200
    body = {"customer_id": "C01", "n": 2}
    r = client.post("/recommend", json=body)
    assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
    assert client.post("/recommend", json=body, headers={"X-API-Key": "cip_x_y"}).status_code == 401
    ok = client.post("/recommend", json=body, headers=h(shop, "shop"))
    assert ok.status_code == 200 and ok.json()["strategy"] == "personalized"
    bearer = {"Authorization": f"Bearer {shop.keys['shop']}"}
    assert client.post("/recommend", json=body, headers=bearer).status_code == 200
    r = client.post("/score", json={"customer_ids": ["C01"]}, headers=h(shop, "shop"))
    assert r.status_code == 403 and "campaign" in r.json()["error"]
    assert client.post("/recommend", json=body, headers=h(shop, "campaign")).status_code == 403
    r = client.post("/score", json={"customer_ids": ["C01"]}, headers=h(shop, "campaign"))
    assert r.status_code == 200 and r.json()["scores"][0]["unified_id"] == "U01"
    assert client.post("/segments", json={}, headers=h(shop, "campaign")).status_code == 200
    for scope in ("shop", "campaign"):
        r = client.post("/admin/forget", json={"customer_ids": ["C05"]}, headers=h(shop, scope))
        assert r.status_code == 403
    for scope in ("shop", "campaign", "admin"):
        r = client.post("/recommend", json={"n": 1}, headers=h(shop, scope))
        assert r.status_code == (403 if scope == "campaign" else 200)


def test_request_ids_are_echoed_or_made_and_logs_hold_no_identifiers(client, shop) -> None:
    r = client.post(
        "/recommend",
        json={"customer_id": "C01"},
        headers={**h(shop, "shop"), "X-Request-ID": "req-123"},
    )
    assert r.headers["x-request-id"] == "req-123"
    r2 = client.post("/recommend", json={"customer_id": "C01"}, headers=h(shop, "shop"))
    made = r2.headers["x-request-id"]
    assert len(made) == 16 and made != "req-123"
    client.post(
        "/events",
        headers=h(shop, "shop"),
        json={
            "events": [
                {"event_type": "product_view", "anonymous_id": "secret-visitor", "item_id": "a1"}
            ]
        },
    )
    log = (shop.root / "logs" / "serving.log").read_text()
    assert "req-123" in log and made in log and "/recommend 200" in log
    assert "C01" not in log and "secret-visitor" not in log and shop.keys["shop"] not in log


BAD = [
    ({"n": 0}, "greater than or equal to 1"),
    ({"n": 101}, "less than or equal to 100"),
    ({"n": "ten"}, "valid integer"),
    ({"customer_id": ""}, "at least 1"),
    ({"customer_id": "x" * 300}, "at most 256"),
    ({"colour": "red"}, "Extra inputs"),
    ({"recent_items": ["a"] * 1001}, "at most 1000"),
    ([1, 2], "object"),
]


def test_bad_input_is_a_400_naming_the_problem(client, shop) -> None:
    for body, needle in BAD:
        r = client.post("/recommend", json=body, headers=h(shop, "shop"))
        assert r.status_code == 400 and needle in r.json()["error"], (body, r.text)
        assert isinstance(r.json()["detail"], str)  # the documented error shape


def test_malformed_bodies_and_limits(client, shop) -> None:
    r = client.post("/recommend", content=b"{not json", headers=h(shop, "shop"))
    assert r.status_code == 400 and "Invalid JSON" in r.text
    r = client.post(
        "/recommend", content=b"a=1", headers={**h(shop, "shop"), "Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    r = client.post("/score", json={"customer_ids": []}, headers=h(shop, "campaign"))
    assert r.status_code == 400
    r = client.post(
        "/score", json={"customer_ids": [f"C{i}" for i in range(1001)]}, headers=h(shop, "campaign")
    )
    assert r.status_code == 400 and "at most 1000" in r.text
    r = client.post(
        "/segment_members",
        json={"segment": "at_risk", "cursor": "%%%"},
        headers=h(shop, "campaign"),
    )
    assert r.status_code == 400 and "cursor" in r.json()["error"]
    big = {"events": [{"event_type": "x" * 200, "anonymous_id": "v" * 250}] * 1000}
    r = client.post("/events", json=big, headers=h(shop, "shop"))
    assert r.status_code == 200 and r.json()["accepted"] == 0  # each one rejected, not a 5xx


def test_events_then_session_recommendation_over_http(client, shop) -> None:
    events = [
        {
            "event_type": "product_view",
            "anonymous_id": "anon-42",
            "item_id": i,
            "ts": "2024-06-01T10:00:00Z",
        }
        for i in ("b1", "b2")
    ]
    r = client.post("/events", json={"events": events}, headers=h(shop, "shop"))
    assert r.json() == {"accepted": 2, "rejected": []}
    r = client.post(
        "/recommend", json={"anonymous_id": "anon-42", "n": 3}, headers=h(shop, "shop")
    ).json()
    assert r["strategy"] == "session"
    assert {i["item_id"] for i in r["items"]} == {"b3", "b4", "b5"}


def test_revoked_key_is_refused_within_a_watcher_step(client, shop) -> None:
    body = {"n": 1}
    assert client.post("/recommend", json=body, headers=h(shop, "shop")).status_code == 200
    ks = KeyStore(shop.settings.keys_path)
    ks.revoke(next(k.id for k in ks.list_keys() if k.scope == "shop"))
    service_module._HOLDER.tick()
    assert client.post("/recommend", json=body, headers=h(shop, "shop")).status_code == 401


def test_promote_while_requests_run_switches_versions_without_failures(client, shop) -> None:
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            r = client.post(
                "/recommend", json={"customer_id": "C01", "n": 3}, headers=h(shop, "shop")
            )
            statuses.append(r.status_code)
            if r.status_code == 200:
                versions.append(r.json()["model_version"])

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.3)
        v2 = shop.register(("C12", "C10"))
        r = client.post("/admin/reload", json={"force": False}, headers=h(shop, "campaign"))
        assert r.status_code == 200 and r.json()["model_version"] == v2
        assert r.json()["model_changed"]
        n = len(versions)
        while len(versions) < n + 20 and t.is_alive():
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert statuses and set(statuses) == {200}
    first_new = versions.index(v2)
    assert first_new > 0 and set(versions[:first_new]) == {"1"}
    assert set(versions[first_new:]) == {v2}  # never back to the old model
