"""Trigger benchmarks: event -> webhook latency under a steady event rate, and timers with
many pending.

``stream`` runs the shop's setup end to end, each part in its own process:
``cip serve`` (the service, /events writing its journal, and with ``--feed redis``
also the Redis Stream), ``cip triggers run`` (the worker), a webhook receiver
(:mod:`benchmarks._triggers_receiver`, verifies signatures and timestamps every
arrival) and an open-loop load generator (:mod:`benchmarks._triggers_load`)
POSTing ``--rate`` events/s to ``/events`` for ``--seconds`` in requests of
``--batch`` events. 20 triggers are defined: ``viewed`` sends a webhook on every
``product_view`` (half the events) with no wait; ``carted`` sends one ``--wait``
seconds after every ``add_to_cart`` (a tenth of the events); ``pending`` has
``--pending`` journeys seeded in the timer table, due in 2 h (they must neither
fire nor slow the others); 17 more wait hours on the other event types.

Reported: events accepted per second; for ``viewed``, p50/p95/p99/max from
*event accepted* (the 200 answer of its POST) to *webhook received*, expected /
received / lost; for ``carted``, how long after due (event ``ts`` + wait) each
arrived; the worker's and the service's CPU seconds (share of one core over
the run) and peak RSS (sampled every second); the load average before/after.
``--profile x.svg`` records the worker with py-spy.

``timers``: ``--pending`` journeys waiting (due in an hour) plus 1,000 due now;
one worker pass at the due time: how long after due they are decided, and that
none is lost.

    python -m benchmarks.triggers stream --rate 500 --seconds 60 [--feed redis]
    python -m benchmarks.triggers timers --pending 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from benchmarks._util import load_average

ROOT = Path(__file__).resolve().parents[1]


def _profiles(store: Any, n: int, prefix: str = "u") -> None:
    """``n`` consenting persons; their unified id is ``<prefix><i>``, customer id ``c<i>``."""
    people = pd.DataFrame(
        {
            "unified_id": [f"{prefix}{i}" for i in range(n)],
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


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 60) -> int | None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


class _Usage:
    """CPU seconds and peak RSS of a process, sampled every second in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.p = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu = 0.0
        self.base = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def sample(self) -> None:
        try:
            procs = [self.p, *self.p.children(recursive=True)]
            rss, cpu = 0, 0.0
            for q in procs:
                rss += q.memory_info().rss
                t = q.cpu_times()
                cpu += t.user + t.system
            self.peak_rss = max(self.peak_rss, rss)
            self.cpu = max(self.cpu, cpu)
        except Exception:  # noqa: BLE001 - the process ended
            pass

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def mark(self) -> None:
        """Count CPU from now on (not the start-up)."""
        self.sample()
        self.base = self.cpu

    def stop(self) -> dict[str, float]:
        self.sample()
        self._stop.set()
        cpu = self.cpu - self.base
        return {"cpu_s": round(cpu, 1), "peak_rss_gib": round(self.peak_rss / 2**30, 3)}


def _seed_pending(store: Any, trigger: str, n: int, due: dt.datetime) -> None:
    """``n`` journeys of ``trigger`` waiting until ``due`` (persons p0..), as the engine
    would have stored them."""
    from cip.activation.triggers._tables import TIMERS, ensure_trigger_tables

    ensure_trigger_tables(store)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tbl = pa.table(
        {
            "trigger": [trigger] * n,
            "unified_id": [f"p{i}" for i in range(n)],
            "window_key": [f"event:seed{i}" for i in range(n)],
            "step": [0] * n,
            "due_at": [due] * n,
            "anchor_ts": [now] * n,
            "state": ["waiting"] * n,
            "reason": [None] * n,
            "context": ["{}"] * n,
            "created_at": [now] * n,
            "updated_at": [now] * n,
        }
    )
    store.load_arrow("_seed_timers", tbl, mode="replace")
    store.execute(f"INSERT INTO {TIMERS} SELECT * FROM _seed_timers")
    store.execute("DROP TABLE _seed_timers")


def stream(
    rate: int,
    seconds: float,
    root: Path,
    *,
    feed: str = "journal",
    redis_url: str | None = None,
    pending: int = 100_000,
    wait_s: int = 5,
    batch: int = 10,
    drain: float = 120.0,
    profile: Path | None = None,
    keep_logs: Path | None = None,
) -> dict[str, Any]:
    """The end-to-end run: service, worker, receiver and load in their own processes."""
    from cip.activation.signing import new_secret
    from cip.pipelines.api import Workspace
    from cip.serving.auth import KeyStore

    from benchmarks._triggers_load import KINDS, event_type
    from benchmarks.serving import free_port
    from benchmarks.serving import serve as start_service
    from benchmarks.serving import stop as stop_service

    secret = new_secret()
    rx_port, svc_port = free_port(), free_port()
    ws = Workspace.init(root / "ws")
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["destinations"] = {"hook": {"url": f"http://127.0.0.1:{rx_port}/hook", "secret": secret}}
    triggers: list[dict[str, Any]] = [
        {"name": "viewed", "when": {"event": "product_view"}, "channel": "webhook",
         "destination": "hook"},
        {"name": "carted", "when": {"event": "add_to_cart"}, "wait": f"{wait_s}s",
         "channel": "webhook", "destination": "hook"},
        {"name": "pending", "when": {"event": "custom_pending"}, "wait": "2h", "channel": "push"},
    ]  # fmt: skip
    for k in range(17):  # 17 more: journeys with long waits, and events the load never sends
        triggers.append(
            {"name": f"t{k:02d}", "when": {"event": KINDS[1 + k % 4] if k < 4 else f"custom_{k}"},
             "wait": f"{k + 1}h", "channel": "push"}
        )  # fmt: skip
    cfg["triggers"] = triggers
    cfg["policy"] = {"quiet_hours": None}
    cfg["trigger_worker"] = {"poll_seconds": 0.05}
    if feed == "redis":
        key = f"cip:bench:{os.getpid()}:{int(time.time())}"
        cfg["serving"] = {**cfg.get("serving", {}), "redis_url": redis_url, "event_stream": key}
        cfg["trigger_worker"]["feed"] = "redis"
    ws.config_path.write_text(yaml.safe_dump(cfg))
    ws = Workspace.open(ws.root)
    n_events = int(rate * seconds)
    with ws.open_store() as store:
        _profiles(store, n_events + 1, prefix="c")
        t_seed = time.perf_counter()
        _seed_pending(store, "pending", pending, dt.datetime.now(dt.UTC).replace(tzinfo=None)
                      + dt.timedelta(hours=2))  # fmt: skip
        seed_s = time.perf_counter() - t_seed
    api_key, _ = KeyStore(ws.root / "keys.json").create("shop", "bench")
    logs = root / "logs"
    logs.mkdir()
    arrivals, accepted_tsv = root / "arrivals.tsv", root / "accepted.tsv"
    load_before = load_average()
    rx = _start(["-m", "benchmarks._triggers_receiver", "--port", str(rx_port), "--secret",
                 secret, "--out", str(arrivals)], logs / "receiver.log")  # fmt: skip
    svc = start_service(ws.root, svc_port, 1, logs / "serve.log")
    svc_use = _Usage(svc.pid)
    worker = _start(["-m", "cip.pipelines.cli", "--workspace", str(ws.root), "triggers", "run"],
                    logs / "worker.log")  # fmt: skip
    w_use = _Usage(worker.pid)
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-o", str(profile), "--pid", str(worker.pid), "-r", "50",
             "--nonblocking", "--gil", *(["--format", "raw"] if profile.suffix == ".txt" else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    time.sleep(3)  # the worker's first cycle (tables, imports)
    w_use.mark()
    svc_use.mark()
    t0 = time.time()
    gen = subprocess.run(
        [sys.executable, "-m", "benchmarks._triggers_load", "--url",
         f"http://127.0.0.1:{svc_port}", "--key", api_key, "--rate", str(rate), "--seconds",
         str(seconds), "--batch", str(batch), "--out", str(accepted_tsv)],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    load_s = time.time() - t0
    gen_res = json.loads(gen.stdout.strip().splitlines()[-1])
    accepted: dict[int, tuple[float, float]] = {}  # event n -> (sent, accepted)
    for line in accepted_tsv.read_text().splitlines():
        first, count, sent, acc = line.split("\t")
        for n in range(int(first), int(first) + int(count)):
            accepted[n] = (float(sent), float(acc))
    want = {
        trig: {n for n in accepted if event_type(n) == ev}
        for trig, ev in (("viewed", "product_view"), ("carted", "add_to_cart"))
    }

    def received() -> dict[str, dict[int, float]]:
        got: dict[str, dict[int, float]] = {"viewed": {}, "carted": {}}
        bad = 0
        for line in arrivals.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != 5 or not parts[2].startswith("ev"):
                continue
            bad += parts[4] != "1"
            got.setdefault(parts[1], {}).setdefault(int(parts[2][2:]), float(parts[3]))
        got["_bad"] = {0: bad}
        return got

    deadline = time.time() + drain
    while time.time() < deadline:
        got = received()
        if all(want[k] <= set(got[k]) for k in want):
            break
        time.sleep(0.5)
    drained_s = time.time() - t0 - load_s
    worker_use, svc_usage = w_use.stop(), svc_use.stop()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
    worker_rc = _stop(worker)
    stop_service(svc)
    _stop(rx)
    got = received()
    load_after = load_average()
    if keep_logs is not None:
        import shutil

        shutil.copytree(logs, keep_logs, dirs_exist_ok=True)
    with ws.open_store(read_only=True) as store:
        still = int(store.sql("SELECT count(*) AS n FROM trigger_timers WHERE state = 'waiting' "
                              "AND \"trigger\" = 'pending'")["n"].iloc[0])  # fmt: skip
        undelivered = int(store.sql("SELECT count(*) AS n FROM messages WHERE decision = 'sent' "
                                    "AND sent_at IS NULL AND destination IS NOT NULL")["n"].iloc[0])  # fmt: skip

    def pct(a: list[float]) -> dict[str, float | None]:
        if not a:
            return {"p50": None, "p95": None, "p99": None, "max": None}
        x = np.array(a)
        return {f"p{q}": round(float(np.percentile(x, q)), 3) for q in (50, 95, 99)} | {
            "max": round(float(x.max()), 3)
        }

    lat = [t - accepted[n][1] for n, t in got["viewed"].items() if n in accepted]
    late = [t - (accepted[n][0] + wait_s) for n, t in got["carted"].items() if n in accepted]
    busy_s = load_s + drained_s
    return {
        "feed": feed,
        "triggers": len(triggers),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "seeded_pending_timers": pending,
        "seed_s": round(seed_s, 1),
        "pending_timers_still_waiting_at_end": still,
        "load": gen_res,
        "no_wait": {
            "trigger": "viewed",
            "expected": len(want["viewed"]),
            "received": len(set(got["viewed"]) & want["viewed"]),
            "lost": len(want["viewed"] - set(got["viewed"])),
            "latency_accepted_to_received_s": pct(lat),
        },
        "timer": {
            "trigger": "carted",
            "wait_s": wait_s,
            "expected": len(want["carted"]),
            "received": len(set(got["carted"]) & want["carted"]),
            "lost": len(want["carted"] - set(got["carted"])),
            "received_after_due_s": pct(late),
        },
        "bad_signatures": got["_bad"][0],
        "decided_not_delivered_at_end": undelivered,
        "drain_s_after_load": round(drained_s, 1),
        "worker": {
            **worker_use,
            "cpu_share_of_one_core": round(worker_use["cpu_s"] / busy_s, 2),
            "exit_code_on_sigterm": worker_rc,
        },
        "service": {**svc_usage, "cpu_share_of_one_core": round(svc_usage["cpu_s"] / busy_s, 2)},
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
    s = sub.add_parser("stream", help="event -> webhook latency, end to end")
    s.add_argument("--rate", type=int, default=500, help="Events per second sent to /events.")
    s.add_argument("--seconds", type=float, default=60, help="How long the load runs.")
    s.add_argument("--feed", choices=["journal", "redis"], default="journal")
    s.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (--feed redis).")
    s.add_argument("--pending", type=int, default=100_000, help="Journeys seeded, due in 2 h.")
    s.add_argument("--wait", type=int, default=5, help="Seconds the timer trigger waits.")
    s.add_argument("--batch", type=int, default=10, help="Events per POST /events.")
    s.add_argument("--drain", type=float, default=120, help="Max seconds to wait after the load.")
    s.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy profile (GIL holder) of the worker: x.svg (flame graph) or x.txt (collapsed stacks).",
    )
    s.add_argument("--keep-logs", type=Path, default=None, help="Copy the processes' logs here.")
    t = sub.add_parser("timers")
    t.add_argument("--pending", type=int, default=100_000)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if a.what == "stream":
            res = stream(
                a.rate, a.seconds, Path(tmp), feed=a.feed, redis_url=a.redis, pending=a.pending,
                wait_s=a.wait, batch=a.batch, drain=a.drain,
                profile=a.profile.resolve() if a.profile else None, keep_logs=a.keep_logs,
            )  # fmt: skip
        else:
            res = timers(a.pending, Path(tmp))
    print(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
