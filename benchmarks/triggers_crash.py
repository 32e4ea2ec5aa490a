"""Crash test of the trigger worker: abandoned carts, a short wait, SIGKILL at random moments.

A workspace with ``n`` persons; each adds an item to the cart (one event each,
written to the service's event journal in waves while the worker runs); every
10th person checks out half a second later. The trigger ``abandoned_cart``
waits ``wait`` seconds, is cancelled by a checkout and sends a signed webhook
to a local receiver (which verifies every signature, de-duplicates by
``webhook-id`` and loses the answer to a share of the requests after keeping
them, so the worker resends). The worker is a subprocess running
``cip triggers run``, SIGKILLed ``kills`` times at random moments and
restarted; at the end it is stopped with SIGTERM (a clean exit, code 0).

Checked: the receiver holds exactly the expected message ids (one per cart
that did not check out, none for a checkout) after de-duplication.

    python -m benchmarks.triggers_crash --n 10000 --kills 5 --wait 2s
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


class Receiver:
    """Verifies signatures, de-duplicates by ``webhook-id``, loses ``lose`` of the answers."""

    def __init__(self, secret: str, lose: float = 0.05, seed: int = 0) -> None:
        from cip.activation.signing import SignatureError, verify_signature

        self.by_id: dict[str, dict[str, Any]] = {}
        self.requests = self.duplicates = self.bad_signatures = self.lost = 0
        self.first_at: dict[str, float] = {}
        rng = random.Random(seed)
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                code = 200
                with lock:
                    outer.requests += 1
                    try:
                        verify_signature(secret, headers, body)
                    except SignatureError:
                        outer.bad_signatures += 1
                        code = 401
                    else:
                        mid = headers["webhook-id"]
                        if mid in outer.by_id:
                            outer.duplicates += 1
                        else:
                            outer.by_id[mid] = json.loads(body)
                            outer.first_at[mid] = time.time()
                        if rng.random() < lose:  # kept, but the answer is lost
                            outer.lost += 1
                            code = 503
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _workspace(
    root: Path, n: int, url: str, secret: str, wait: str, redis: tuple[str, str] | None = None
) -> Any:
    from cip.pipelines.api import Workspace

    ws = Workspace.init(root)
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["destinations"] = {"hook": {"url": url, "secret": secret, "timeout_s": 5}}
    cfg["triggers"] = [
        {
            "name": "abandoned_cart",
            "when": {"event": "add_to_cart"},
            "wait": wait,
            "unless": {"event": ["checkout", "purchase"]},
            "channel": "webhook",
            "destination": "hook",
            "content": {"cart": True},
        }
    ]
    cfg["policy"] = {"quiet_hours": None}
    cfg["trigger_worker"] = {"poll_seconds": 0.2}
    if redis is not None:  # the service's Redis Stream as the feed
        cfg["serving"] = {"redis_url": redis[0], "event_stream": redis[1]}
        cfg["trigger_worker"]["feed"] = "redis"
    ws.config_path.write_text(yaml.safe_dump(cfg))
    ws = Workspace.open(root)
    people = pd.DataFrame(
        {
            "unified_id": [f"u{i}" for i in range(n)],
            "customer_id": [f"c{i}" for i in range(n)],
            "consent_personalization": True,
        }
    )
    with ws.open_store() as store:
        store.execute(
            "CREATE TABLE profiles (unified_id VARCHAR, customer_id VARCHAR, "
            "consent_personalization BOOLEAN)"
        )
        store.load_arrow("profiles", people)
    return ws


def _write_wave(directory: Path, ids: list[int], wave: int, stream: Any = None) -> float:
    """Write one wave of carts (and checkouts); returns the events' time (unix seconds)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    lines = []
    for i in ids:
        lines.append({"event_id": f"cart-{i}", "ts": now.isoformat(sep=" "),
                      "event_type": "add_to_cart", "customer_id": f"c{i}", "item_id": f"i{i % 50}"})  # fmt: skip
        if i % 10 == 0:
            later = (now + dt.timedelta(milliseconds=500)).isoformat(sep=" ")
            lines.append({"event_id": f"co-{i}", "ts": later, "event_type": "checkout",
                          "customer_id": f"c{i}"})  # fmt: skip
    if stream is not None:  # what the service does with serving.event_stream
        stream(lines)
        return now.replace(tzinfo=dt.UTC).timestamp()
    name = f"events-{now:%Y%m%dT%H%M%S}-{os.getpid()}-w{wave:04d}.jsonl"
    tmp = directory / (name + ".part")
    tmp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tmp.rename(directory / name)
    return now.replace(tzinfo=dt.UTC).timestamp()


def _start(ws_root: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cip.pipelines.cli", "-w", str(ws_root), "triggers", "run",
         "--poll", "0.2"],
        cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip


def crash_run(
    root: Path,
    n: int = 1000,
    kills: int = 5,
    wait: str = "2s",
    seed: int = 0,
    lose: float = 0.05,
    redis_url: str | None = None,
    pause: tuple[float, float] = (1.0, 4.0),
) -> dict[str, Any]:
    """Run the crash scenario in ``root``; returns counts and whether it held.

    With ``redis_url`` the events go through a Redis Stream (a fresh key, deleted after).
    """
    from cip.activation.policy import parse_duration
    from cip.activation.signing import new_secret
    from cip.activation.triggers import message_id
    from cip.pipelines.workflows.triggers import events_dir

    rng = random.Random(seed)
    secret = new_secret()
    rx = Receiver(secret, lose=lose, seed=seed)
    stream = None
    if redis_url:
        from cip.serving.events import RedisEventStream

        stream = RedisEventStream(redis_url, f"cip-crash:{os.getpid()}:{seed}:{time.time_ns()}")
    ws = _workspace(
        root / "ws", n, rx.url, secret, wait, (redis_url, stream.key) if stream else None
    )
    d = events_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    waves = [list(range(n))[k :: kills + 1] for k in range(kills + 1)]
    t0 = time.time()
    log = open(root / "worker.log", "ab")  # noqa: SIM115
    proc = _start(ws.root, log)
    killed = 0
    due: dict[str, float] = {}
    try:
        for k, wave in enumerate(waves):
            at = _write_wave(d, wave, k, stream)
            due.update(
                {message_id("abandoned_cart", f"u{i}", f"event:cart-{i}", 2): at for i in wave}
            )
            if k < kills:
                time.sleep(
                    rng.uniform(*pause)
                )  # the worker is starting, reading, timing or sending
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed += 1
                proc = _start(ws.root, log)
        expected = {
            message_id("abandoned_cart", f"u{i}", f"event:cart-{i}", 2) for i in range(n) if i % 10
        }
        deadline = time.time() + max(120.0, n / 20)
        while time.time() < deadline and not expected <= set(rx.by_id):
            time.sleep(0.2)
        time.sleep(0.5)  # anything more (a message for a checkout) would arrive now
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        rx.close()
        if stream is not None:
            stream.r.delete(stream.key)
    elapsed = time.time() - t0
    got = set(rx.by_id)
    checked_out = {
        message_id("abandoned_cart", f"u{i}", f"event:cart-{i}", 2) for i in range(0, n, 10)
    }
    with ws.open_store(read_only=True) as store:
        m = store.sql("SELECT count(*) AS n, count(sent_at) AS sent FROM messages").iloc[0]
    wait_s = parse_duration(wait).total_seconds()
    late = pd.Series([rx.first_at[k] - due[k] - wait_s for k in got & set(due)], dtype=float)
    return {
        "n": n,
        "feed": "redis" if redis_url else "journal",
        "kills": killed,
        "wait": wait,
        "expected": len(expected),
        "received_unique": len(got),
        "missing": len(expected - got),
        "unexpected": len(got - expected),
        "for_checked_out_carts": len(got & checked_out),
        "duplicates_deduplicated": rx.duplicates,
        "answers_lost_on_purpose": rx.lost,
        "requests": rx.requests,
        "bad_signatures": rx.bad_signatures,
        "messages_logged": int(m["n"]),
        "messages_with_sent_at": int(m["sent"]),
        "worker_exit_on_sigterm": code,
        "elapsed_s": round(elapsed, 1),
        # from the moment a cart came due (event time + wait) to the receiver's first copy;
        # includes the worker's restarts (a Python process start each) after every SIGKILL
        "received_after_due_p50_s": round(float(late.quantile(0.5)), 2) if len(late) else None,
        "received_after_due_p95_s": round(float(late.quantile(0.95)), 2) if len(late) else None,
        "received_after_due_max_s": round(float(late.max()), 2) if len(late) else None,
        "ok": expected == got and code == 0 and rx.bad_signatures == 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="abandoned carts (persons)")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of the worker")
    p.add_argument("--wait", default="2s", help="the trigger's wait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--redis", default=None, help="Redis URL: feed the events through a stream")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = crash_run(Path(tmp), a.n, a.kills, a.wait, a.seed, redis_url=a.redis)
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
