"""Trigger benchmarks: event -> webhook latency under a steady event rate, and timers with
many pending.

``stream``: a producer appends events through the service's own journal writer
(``serving.events.EventSink``: the code ``/events`` runs after validation, fsync
included) at ``--rate`` events/s for ``--seconds``; the worker
(``cip triggers run``'s loop, in a thread of this process) runs 20 triggers,
one of which (``viewed``) sends a signed webhook with no wait; a local receiver
records when each message arrives. Reported: events/s written, p50/p95/max
from *event accepted* (the journal write returned) to *webhook received*,
messages expected vs received within 120 s of the last event, process CPU
seconds and peak RSS. The
HTTP layer of ``/events`` itself is not in the loop (see ``benchmarks/serving.py``
for its throughput).

``timers``: ``--pending`` journeys waiting (due in an hour) plus 1,000 due now;
one worker pass at the due time: how long after due they are decided, and that
none is lost.

    python -m benchmarks.triggers stream --rate 500 --seconds 60
    python -m benchmarks.triggers timers --pending 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml


def _profiles(store: Any, n: int) -> None:
    people = pd.DataFrame(
        {
            "unified_id": [f"u{i}" for i in range(n)],
            "customer_id": [f"c{i}" for i in range(n)],
            "consent_personalization": True,
            "consent_push": True,
        }
    )
    store.execute(
        "CREATE TABLE profiles (unified_id VARCHAR, customer_id VARCHAR, "
        "consent_personalization BOOLEAN, consent_push BOOLEAN)"
    )
    store.load_arrow("profiles", people)


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
        "peak_rss_gib": round(ru.ru_maxrss / 2**20, 2),
    }


class _Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, tuple[float, str]] = {}
        lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.arrived.setdefault(
                        body["message_id"], (time.time(), body["context"]["event_id"])
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def stream(rate: int, seconds: float, root: Path) -> dict[str, Any]:
    from cip.activation.signing import new_secret
    from cip.pipelines.api import Workspace
    from cip.pipelines.workflows.triggers import events_dir, run_worker
    from cip.serving.events import EventSink

    rx = _Receiver()
    ws = Workspace.init(root / "ws")
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["destinations"] = {"hook": {"url": rx.url, "secret": new_secret()}}
    kinds = ["add_to_cart", "search", "add_to_wishlist", "login", "review"]
    triggers = [
        {
            "name": "viewed",
            "when": {"event": "product_view"},
            "channel": "webhook",
            "destination": "hook",
        }  # fmt: skip
    ]
    for k in range(19):  # 19 more: journeys with waits and events the load does not send
        triggers.append(
            {
                "name": f"t{k:02d}",
                "when": {"event": kinds[k % 5] if k < 5 else f"custom_{k}"},
                "wait": f"{k + 1}h",
                "channel": "push",
            }  # fmt: skip
        )
    cfg["triggers"] = triggers
    cfg["policy"] = {"quiet_hours": None}
    cfg["trigger_worker"] = {"poll_seconds": 0.05}
    ws.config_path.write_text(yaml.safe_dump(cfg))
    ws = Workspace.open(ws.root)
    n_people = int(rate * seconds) + 1
    with ws.open_store() as store:
        _profiles(store, n_people)
    sink = EventSink(events_dir(ws), rotate_seconds=10)
    stop = threading.Event()
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(run_worker(ws, stop=stop, poll_seconds=0.05).as_dict()),
        daemon=True,
    )
    worker.start()
    accepted: dict[str, float] = {}
    batch = max(1, rate // 20)  # 20 requests a second
    t0 = time.time()
    i = 0
    cpu0 = _usage()["cpu_s"]
    while time.time() - t0 < seconds:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
        recs = [
            {"event_id": f"ev{i + j}", "ts": now, "event_type": "product_view" if (i + j) % 2 == 0
             else kinds[(i + j) % 5], "customer_id": f"c{i + j}", "item_id": f"i{(i + j) % 997}"}
            for j in range(batch)
        ]  # fmt: skip
        sink.append(recs)
        at = time.time()
        accepted.update({r["event_id"]: at for r in recs})
        i += batch
        time.sleep(max(0.0, t0 + i / rate - time.time()))
    wrote = time.time() - t0
    expected = {e for e in accepted if int(e[2:]) % 2 == 0}
    deadline = time.time() + 120
    while time.time() < deadline and len(rx.arrived) < len(expected):
        time.sleep(0.2)
    stop.set()
    worker.join(timeout=60)
    sink.close()
    lat = np.array([t - accepted[eid] for t, eid in rx.arrived.values() if eid in accepted])
    got = {eid for _, eid in rx.arrived.values()}
    use = _usage()
    return {
        "triggers": len(triggers),
        "events_written": i,
        "events_per_s": round(i / wrote, 1),
        "messages_expected": len(expected),
        "messages_received": len(got & expected),
        # not received when the benchmark stopped waiting (120 s after the last event);
        # decided messages stay pending in the store and go on the next pass
        "not_received_by_deadline": len(expected - got),
        "latency_p50_s": round(float(np.quantile(lat, 0.5)), 3) if len(lat) else None,
        "latency_p95_s": round(float(np.quantile(lat, 0.95)), 3) if len(lat) else None,
        "latency_max_s": round(float(lat.max()), 3) if len(lat) else None,
        "worker": result,
        "cpu_s": round(use["cpu_s"] - cpu0, 1),
        "cpu_share_of_wall": round((use["cpu_s"] - cpu0) / max(wrote, 1e-9), 2),
        "peak_rss_gib": use["peak_rss_gib"],
    }


def timers(pending: int, root: Path) -> dict[str, Any]:
    from cip.activation.policy import PolicyConfig
    from cip.activation.triggers import TriggerEngine, validate_triggers
    from cip.profiles.store import open_store

    store = open_store("duckdb", path=root / "t.duckdb")
    _profiles(store, pending + 1000)
    eng = TriggerEngine(
        store,
        validate_triggers(
            [
                {
                    "name": "later",
                    "when": {"event": "add_to_wishlist"},
                    "wait": "1h",
                    "channel": "push",
                },
                {"name": "soon", "when": {"event": "add_to_cart"}, "wait": "2s", "channel": "push"},
            ]
        ),
        secret=b"k" * 32,
        policy=PolicyConfig(quiet_hours=None),
    )
    t = dt.datetime(2026, 1, 5, 12, 0)
    ev = pd.DataFrame(
        {
            "event_id": [f"w{i}" for i in range(pending)] + [f"c{i}" for i in range(1000)],
            "ts": t,
            "event_type": ["add_to_wishlist"] * pending + ["add_to_cart"] * 1000,
            "unified_id": [f"u{i}" for i in range(pending)]
            + [f"u{pending + i}" for i in range(1000)],
        }
    )
    t0 = time.perf_counter()
    start = eng.process(t, events=ev)
    started_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    fired = eng.advance(t + dt.timedelta(seconds=2))
    fire_s = time.perf_counter() - t1
    waiting = int(
        store.sql("SELECT count(*) AS n FROM trigger_timers WHERE state = 'waiting'")["n"].iloc[0]
    )
    msgs = int(store.sql("SELECT count(*) AS n FROM messages")["n"].iloc[0])
    return {
        "pending": pending,
        "journeys_started": start.started,
        "start_s": round(started_s, 2),
        "due": 1000,
        "fired": fired.due,
        "decisions": fired.decisions,
        "decided_within_s_of_due": round(fire_s, 3),
        "messages": msgs,
        "lost": 1000 - msgs,
        "still_waiting": waiting,
        **_usage(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--rate", type=int, default=500)
    s.add_argument("--seconds", type=float, default=60)
    t = sub.add_parser("timers")
    t.add_argument("--pending", type=int, default=100_000)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = (
            stream(a.rate, a.seconds, Path(tmp))
            if a.what == "stream"
            else timers(a.pending, Path(tmp))
        )
    print(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
