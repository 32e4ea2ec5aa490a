"""The served OpenAPI document: the committed copy, version, auth schemes, errors, clients."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import bentoml
import pytest
from cip.serving.auth import ROUTE_SCOPES

import cip

pytest_plugins = ["tests._serving_fixtures"]

COMMITTED = Path(__file__).resolve().parents[1] / "serving" / "openapi.json"
HEALTH = {"/livez", "/readyz", "/healthz", "/metrics"}


def test_committed_openapi_json_is_the_served_document(client) -> None:
    served = client.get("/docs.json")
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text()), (
        "serving/openapi.json is stale: python -m cip.serving.openapi > serving/openapi.json"
    )


def _refs(node, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                out.add(v)
            else:
                _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def test_document_carries_version_auth_and_every_error(client) -> None:
    doc = client.get("/docs.json").json()
    info = doc["info"]
    assert info["version"] == cip.__version__ != "None"
    assert "X-API-Key" in info["description"] and "BentoML" not in json.dumps(info)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerAuth"]["type"] == "http" and schemes["BearerAuth"]["scheme"] == "bearer"
    assert set(doc["paths"]) == HEALTH | set(ROUTE_SCOPES)
    for path, item in doc["paths"].items():
        [(method, op)] = item.items()
        if path in HEALTH:
            assert method == "get" and op["security"] == []
            continue
        assert method == "post"
        assert op["security"] == [{"ApiKeyHeader": []}, {"BearerAuth": []}], path
        codes = set(op["responses"])
        want = {"200", "400", "401", "403", "413", "415", "500", "503"}
        assert codes == want | ({"404"} if path == "/segment_members" else set()), path
        for code in codes - {"200"}:
            media = op["responses"][code]["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Error"}
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        assert all(f"`{s}`" in op["description"] for s in ROUTE_SCOPES[path])
    # every reference resolves; BentoML's generic error schemas are gone
    for ref in _refs(doc, set()):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    assert "InvalidArgument" not in doc["components"]["schemas"]


def test_documented_errors_are_what_the_service_answers(client, shop) -> None:
    doc = client.get("/docs.json").json()
    error = doc["components"]["schemas"]["Error"]
    key = {"X-API-Key": shop.keys["campaign"]}

    def check(resp, code: int, path: str) -> None:
        assert resp.status_code == code and str(code) in doc["paths"][path]["post"]["responses"]
        body = resp.json()
        assert set(error["required"]) <= set(body) <= set(error["properties"])
        assert resp.headers["x-request-id"]

    check(client.post("/score", json={"customer_ids": ["C01"]}), 401, "/score")
    check(client.post("/recommend", json={}, headers=key), 403, "/recommend")
    check(client.post("/score", json={"customer_ids": "C01"}, headers=key), 400, "/score")
    big = b'{"customer_ids": ["' + b"x" * (5 * 2**20) + b'"]}'
    check(client.post("/score", content=big, headers=key), 413, "/score")
    check(
        client.post("/score", content=b"a=b", headers={**key, "content-type": "text/plain"}),
        415,
        "/score",
    )
    r = client.post("/segment_members", json={"segment": "nope", "limit": 5}, headers=key)
    check(r, 404, "/segment_members")


@pytest.fixture
def http_url(shop, asgi_app):
    """The service on a real local port (uvicorn in a thread), over the ``shop`` copy."""
    import uvicorn
    from cip.serving import service as service_module

    service_module.configure(settings=shop.settings)
    server = uvicorn.Server(
        uvicorn.Config(asgi_app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        service_module.configure()


def test_bentoml_client_sends_the_key_as_a_bearer_token(http_url, shop) -> None:
    with bentoml.SyncHTTPClient(http_url, token=shop.keys["shop"]) as c:
        assert c.client.headers["authorization"] == f"Bearer {shop.keys['shop']}"
        out = c.recommend({"customer_id": "C01", "n": 2})
        assert out["strategy"] == "personalized" and len(out["items"]) == 2
        with pytest.raises(bentoml.exceptions.BentoMLException, match="campaign"):
            c.score({"customer_ids": ["C01"]})  # a shop key: 403
    with bentoml.SyncHTTPClient(http_url, token=shop.keys["campaign"]) as c:
        assert c.score({"customer_ids": ["C01"]})["scores"][0]["unified_id"] == "U01"
    with (
        bentoml.SyncHTTPClient(http_url) as c,
        pytest.raises(bentoml.exceptions.BentoMLException, match="API key"),
    ):
        c.recommend({"customer_id": "C01"})
