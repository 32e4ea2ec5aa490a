"""A real ``cip serve`` process: readiness, keys, metrics, durable events across a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cip.pipelines.workflows.data import ingest as run_ingest
from cip.pipelines.workspace import Workspace

pytest_plugins = ["tests._serving_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``cip serve`` in its own process group; always stopped by ``stop``."""

    def __init__(self, ws: Path, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cip.pipelines.cli",
                "--workspace",
                str(ws),
                "serve",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cip serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def _promote_under_load(served: Served, shop, key: dict[str, str]) -> None:
    """A new champion while requests run: no failure, and the answers switch for good."""
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.url, headers=key, timeout=10) as c:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                r = c.post("/recommend", json={"customer_id": "C02", "n": 3})
                seen.append((r.status_code, r.json().get("model_version")))

    t = threading.Thread(target=load)
    t.start()
    try:
        v2 = shop.register()
        r = httpx.post(
            f"{served.url}/admin/reload",
            json={"force": False},
            headers={"X-API-Key": shop.keys["campaign"]},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["model_version"] == v2
        n = len(seen)
        while len(seen) < n + 20 and t.is_alive():
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert {code for code, _ in seen} == {200}
    versions = [v for _, v in seen]
    first = versions.index(v2)
    assert first > 0 and set(versions[:first]) == {"1"} and set(versions[first:]) == {v2}


@pytest.mark.slow
def test_cip_serve_process_end_to_end(shop, tmp_path) -> None:
    ws = Workspace.init(shop.root)  # the shop folder has the workspace layout
    served = Served(shop.root, free_port(), tmp_path / "serve.log")
    try:
        served.wait_ready()
        key = {"X-API-Key": shop.keys["shop"]}
        assert httpx.post(f"{served.url}/recommend", json={"n": 3}).status_code == 401
        r = httpx.post(f"{served.url}/recommend", json={"customer_id": "C01", "n": 2}, headers=key)
        assert r.status_code == 200 and r.headers["x-request-id"]
        assert r.json()["strategy"] == "personalized" and r.json()["model_version"] == "1"
        assert {i["item_id"] for i in r.json()["items"]} == {"a4", "a5"}
        _promote_under_load(served, shop, key)
        events = [
            {
                "event_type": "product_view",
                "anonymous_id": "proc-visitor",
                "item_id": i,
                "ts": "2024-06-02T09:00:00Z",
            }
            for i in ("b1", "b2")
        ]
        r = httpx.post(f"{served.url}/events", json={"events": events}, headers=key)
        assert r.json() == {"accepted": 2, "rejected": []}
        metrics = httpx.get(f"{served.url}/metrics").text
        assert "bentoml_service_request" in metrics
        assert served.stop() == 0
    finally:
        served.stop()
    # the shutdown published the events file; the next ingest loads them
    files = sorted((shop.root / "sources" / "_http_events").glob("events-*.jsonl"))
    assert files and json.loads(files[0].read_text().splitlines()[0])["item_id"] == "b1"
    assert "http_events" in [s.name for s in ws.reload().config.sources]
    [report] = run_ingest(ws, "http_events").reports
    assert report.rows_loaded == 2 and report.rows_quarantined == 0
    with ws.open_store(read_only=True) as st:
        got = st.sql(
            "SELECT anonymous_id, item_id FROM events WHERE source = 'http_events' ORDER BY item_id"
        )
    assert got.values.tolist() == [["proc-visitor", "b1"], ["proc-visitor", "b2"]]
    log = (shop.root / "logs" / "serving.log").read_text()
    assert "proc-visitor" not in log and "C01" not in log
