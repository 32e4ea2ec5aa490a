"""What keeps the trigger worker fast: the webhook sender's keep-alive connections, the
store held across busy cycles and let go when idle."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cip.activation.signing import new_secret, verify_signature
from cip.activation.triggers.delivery import WebhookSender
from cip.activation.webhooks import WebhookDestination
from cip.pipelines.api import Workspace
from cip.pipelines.workflows import triggers as wf
from cip.pipelines.workflows.triggers import events_dir, run_worker

from tests._triggers_world import add_profiles, at
from tests._webhook_receiver import Receiver


class _Server:
    """HTTP/1.1 receiver noting each request's client port; ``close_every`` answers
    ``Connection: close`` on every n-th request."""

    def __init__(self, secret: str, close_every: int = 0) -> None:
        self.ports: list[int] = []
        self.bad = 0
        lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    try:
                        verify_signature(secret, dict(self.headers.items()), body)
                    except Exception:  # noqa: BLE001
                        outer.bad += 1
                    outer.ports.append(self.client_address[1])
                    n = len(outer.ports)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                if close_every and n % close_every == 0:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_sender_reuses_one_connection_and_reconnects_when_the_receiver_closes() -> None:
    secret = new_secret()
    srv = _Server(secret)
    sender = WebhookSender(concurrency=1)
    try:
        dest = WebhookDestination(url=srv.url)
        got = [sender.post(dest, secret, f"m{i}", b'{"i": %d}' % i) for i in range(20)]
        assert got == [("delivered", 200, None)] * 20
        assert len(set(srv.ports)) == 1 and srv.bad == 0  # one keep-alive connection, signed
    finally:
        sender.close()
        srv.close()

    srv = _Server(secret, close_every=5)  # the receiver ends the connection now and then
    sender = WebhookSender(concurrency=1)
    try:
        dest = WebhookDestination(url=srv.url)
        got = [sender.post(dest, secret, f"m{i}", b"{}") for i in range(12)]
        assert got == [("delivered", 200, None)] * 12
        assert len(set(srv.ports)) == 3  # 5 + 5 + 2 requests: a new connection after each close
    finally:
        sender.close()
        srv.close()

    sender = WebhookSender(concurrency=1)
    try:  # nothing listens on port 9: failed, not raised
        status, code, err = sender.post(WebhookDestination(url="http://127.0.0.1:9/h"), secret,
                                        "m", b"{}")  # fmt: skip
        assert (status, code) == ("failed", None) and err
    finally:
        sender.close()


def _workspace(tmp_path: Path, url: str, secret: str) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["destinations"] = {"hook": {"url": url, "secret": secret}}
    cfg["triggers"] = [
        {"name": "viewed", "when": {"event": "product_view"}, "channel": "webhook",
         "destination": "hook"}
    ]  # fmt: skip
    cfg["policy"] = {"quiet_hours": None}
    cfg["trigger_worker"] = {"batch_size": 1}
    ws.config_path.write_text(yaml.safe_dump(cfg))
    ws = Workspace.open(ws.root)
    with ws.open_store() as store:
        add_profiles(store, [{"uid": f"u{i}"} for i in range(3)])
    return ws


def _views(ws: Workspace, n: int, name: str, ts) -> None:
    d = events_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({"event_id": f"{name}{i}", "ts": ts.isoformat(sep=" "),
                    "event_type": "product_view", "customer_id": f"c-u{i}", "item_id": "A"}) + "\n"
        for i in range(n)
    )  # fmt: skip
    (d / f"events-20260105T120000-1-{name}.jsonl").write_text(lines)


def test_busy_cycles_share_one_store_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        ws = _workspace(tmp_path, rx.url, secret)
        _views(ws, 3, "a", at(0))
        opens = []
        real = wf.open_quiet

        def counting(w: Workspace) -> Any:
            opens.append(1)
            return real(w)

        monkeypatch.setattr(wf, "open_quiet", counting)
        res = run_worker(ws, once=True, content=lambda r: None, clock=lambda: at(1))
        # batch_size 1: three cycles of one event, and a last one that finds the feed read
        assert (res.cycles, res.events, res.delivered) == (4, 3, 3)
        assert len(opens) == 1  # the store stayed open across the cycles
        assert len(rx.by_key) == 3 and rx.rejected == 0


def test_idle_worker_lets_other_processes_open_the_store(tmp_path: Path) -> None:
    secret = new_secret()
    with Receiver(fail_rate=0.0, secret=secret) as rx:
        ws = _workspace(tmp_path, rx.url, secret)
        stop = threading.Event()
        out: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: out.update(r=run_worker(ws, stop=stop, poll_seconds=0.05,
                                                   content=lambda r: None)),
            daemon=True,
        )  # fmt: skip
        t.start()
        try:
            now = wf._now()
            _views(ws, 2, "b", now)
            deadline = time.monotonic() + 60
            while len(rx.by_key) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(rx.by_key) == 2
            time.sleep(0.5)  # an idle cycle or two
            code = (
                "import duckdb, sys\n"
                "for _ in range(50):\n"
                "    try:\n"
                "        duckdb.connect(sys.argv[1], read_only=True).close(); sys.exit(0)\n"
                "    except duckdb.IOException:\n"
                "        import time; time.sleep(0.02)\n"
                "sys.exit(3)\n"
            )
            done = subprocess.run([sys.executable, "-c", code, str(ws.store_path)], timeout=60)
            assert done.returncode == 0  # the idle worker does not hold the file
        finally:
            stop.set()
            t.join(timeout=60)
        assert out["r"].stopped == "signal" and out["r"].delivered == 2
