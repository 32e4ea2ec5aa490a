"""Open-loop ``/events`` load for the trigger benchmark (run as its own process).

    python -m benchmarks._triggers_load --url http://127.0.0.1:PORT --key KEY \
        --rate 500 --seconds 60 --batch 10 --out accepted.tsv

Every ``batch`` events form one ``POST /events``; request ``k`` is *scheduled* at
``t0 + k * batch / rate`` and handed to one of ``--connections`` keep-alive
connections, so a slow answer does not slow the offered rate. Event ``n`` is for
customer ``c<n>`` with ``ts`` = the time it is sent; its type follows a fixed mix
(even ``n``: ``product_view``; odd ``n``: add_to_cart, search, add_to_wishlist,
login, review in turn). Each accepted request appends ``first_n count sent_at
accepted_at`` (epoch seconds; accepted = the 200 answer read) to ``--out``.
Prints one JSON object: requests, errors, achieved rate, POST latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from urllib.parse import urlparse

import numpy as np

from benchmarks._serving_load import request

KINDS = ("add_to_cart", "search", "add_to_wishlist", "login", "review")


def event_type(n: int) -> str:
    """The event type of event ``n`` in the benchmark's mix."""
    return "product_view" if n % 2 == 0 else KINDS[(n // 2) % len(KINDS)]


async def run(args: argparse.Namespace) -> dict:
    u = urlparse(args.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    assert host in ("127.0.0.1", "localhost"), "the benchmark only targets this machine"
    head = (
        f"POST /events HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {args.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    n_req = int(args.rate * args.seconds) // args.batch
    queue: asyncio.Queue = asyncio.Queue()
    lat = np.full(n_req, np.nan)
    status = np.zeros(n_req, np.int32)
    out = open(args.out, "w", buffering=1)  # noqa: SIM115 - closed below

    def body(k: int) -> tuple[bytes, float]:
        now = dt.datetime.now(dt.UTC)
        first = k * args.batch
        evs = [
            {
                "event_id": f"ev{n}",
                "ts": now.isoformat(),
                "event_type": event_type(n),
                "customer_id": f"c{n}",
                "item_id": f"i{n % 997}",
            }
            for n in range(first, first + args.batch)
        ]
        return json.dumps({"events": evs}).encode(), now.timestamp()

    async def worker() -> None:
        reader = writer = None
        while True:
            item = await queue.get()
            if item is None:
                break
            k, scheduled = item
            payload, sent_at = body(k)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                status[k], data = await request(reader, writer, head, payload)
                if status[k] == 200 and json.loads(data).get("accepted") != args.batch:
                    status[k] = -2  # some events rejected
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                status[k] = -1
                if writer is not None:
                    writer.close()
                reader = writer = None
            done = time.time()
            lat[k] = (time.perf_counter() - scheduled) * 1000
            if status[k] == 200:
                out.write(f"{k * args.batch}\t{args.batch}\t{sent_at:.6f}\t{done:.6f}\n")
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(args.connections)]
    t0 = time.perf_counter() + 0.2
    for k in range(n_req):
        at = t0 + k * args.batch / args.rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((k, at))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    out.close()
    ok = status == 200
    s = lat[ok] if ok.any() else np.array([np.nan])
    return {
        "requests": n_req,
        "events_per_request": args.batch,
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "error_statuses": sorted({int(x) for x in status[~ok]}),
        "events_accepted": int(ok.sum()) * args.batch,
        "achieved_events_per_s": round(n_req * args.batch / elapsed, 1),
        "post_latency_ms": {f"p{p}": round(float(np.percentile(s, p)), 1) for p in (50, 95, 99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=10, help="Events per POST /events.")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--out", required=True, help="TSV of accepted requests.")
    print(json.dumps(asyncio.run(run(ap.parse_args()))))


if __name__ == "__main__":
    main()
