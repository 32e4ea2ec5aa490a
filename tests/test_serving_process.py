"""A real ``cip serve`` process: readiness, keys, metrics, durable events across a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.cmd_data import run_ingest
from pipelines.workspace import Workspace

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
                "pipelines.cli",
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


@pytest.mark.slow
def test_cip_serve_process_end_to_end(shop, tmp_path) -> None:
    ws = Workspace.init(shop.root)  # the shop folder has the workspace layout
    served = Served(shop.root, free_port(), tmp_path / "serve.log")
    try:
        served.wait_ready()
        key = {"X-API-Key": shop.keys["shop"]}
        assert httpx.post(f"{served.url}/recommend", json={"n": 3}).status_code == 401
        r = httpx.post(f"{served.url}/recommend", json={"customer_id": "C01", "n": 3}, headers=key)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert r.headers["x-request-id"]
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
    [report] = run_ingest(ws, "http_events", show_progress=False)
    assert report.rows_loaded == 2 and report.rows_quarantined == 0
    with ws.open_store(read_only=True) as st:
        got = st.sql(
            "SELECT anonymous_id, item_id FROM events WHERE source = 'http_events' ORDER BY item_id"
        )
    assert got.values.tolist() == [["proc-visitor", "b1"], ["proc-visitor", "b2"]]
    log = (shop.root / "logs" / "serving.log").read_text()
    assert "proc-visitor" not in log and "C01" not in log
