"""Open-loop HTTP load generator for the serving benchmark (run as its own process).

    python -m benchmarks._serving_load --url http://127.0.0.1:PORT --path /recommend \
        --key KEY --ids ids.txt --rate 300 --seconds 60 [--batch 1]

Request ``i`` is *scheduled* at ``t0 + i / rate``; latency is measured from the
scheduled time to the end of the response, so a server that falls behind is
charged for the queueing it causes (no coordinated omission). A minimal HTTP/1.1
keep-alive client on asyncio streams keeps the generator's own CPU cost low.
Prints one JSON object: counts, errors, achieved rate, latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlparse

import numpy as np


async def _conn(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def request(reader, writer, head: bytes, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: ``(status, body)``."""
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    data = await reader.readexactly(length) if length else b""
    return status, data


async def run(args: argparse.Namespace) -> dict:
    u = urlparse(args.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    assert host in ("127.0.0.1", "localhost"), "the benchmark only targets this machine"
    with open(args.ids) as fh:
        ids = [line.strip() for line in fh if line.strip()]
    rng = random.Random(args.seed)
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {args.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: "
    ).encode()
    total = int(args.rate * args.seconds)
    queue: asyncio.Queue = asyncio.Queue()
    lat_sched = np.full(total, np.nan)
    lat_send = np.full(total, np.nan)
    status = np.zeros(total, np.int32)

    extra = json.loads(args.extra) if args.extra else {}
    items = []
    if args.item_ids:
        with open(args.item_ids) as fh:
            items = [line.strip() for line in fh if line.strip()]

    def body() -> bytes:
        if args.batch > 1:
            return json.dumps({"customer_ids": rng.sample(ids, args.batch)}).encode()
        if extra:  # a block request: k from the block unless given, context items if any
            doc = {"customer_id": rng.choice(ids), **extra}
            if items:
                doc["items"] = [rng.choice(items)]
            return json.dumps(doc).encode()
        return json.dumps({"customer_id": rng.choice(ids), "n": args.n}).encode()

    async def worker() -> None:
        reader = writer = None
        while True:
            item = await queue.get()
            if item is None:
                break
            i, scheduled, payload = item
            sent = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await _conn(host, port)
                status[i], _ = await request(reader, writer, head, payload)
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                status[i] = -1
                if writer is not None:
                    writer.close()
                reader = writer = None
            done = time.perf_counter()
            lat_sched[i] = (done - scheduled) * 1000
            lat_send[i] = (done - sent) * 1000
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(args.connections)]
    payloads = [body() for _ in range(min(total, 5000))]
    t0 = time.perf_counter() + 0.2
    for i in range(total):
        at = t0 + i / args.rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, at, payloads[i % len(payloads)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - t0
    ok = status == 200
    q = [50, 90, 99, 99.9]
    s = lat_sched[ok] if ok.any() else np.array([np.nan])
    return {
        "path": args.path,
        "offered_rate": args.rate,
        "seconds": args.seconds,
        "requests": total,
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "error_statuses": sorted({int(x) for x in status[~ok]}),
        "achieved_rate": round(total / elapsed, 1),
        "latency_ms": {f"p{p}": round(float(np.percentile(s, p)), 2) for p in q}
        | {"max": round(float(np.nanmax(s)), 2), "mean": round(float(np.nanmean(s)), 2)},
        "service_time_ms": {
            f"p{p}": round(float(np.percentile(lat_send[ok], p)), 2) for p in (50, 99)
        }
        if ok.any()
        else {},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", default="/recommend")
    ap.add_argument("--key", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default=None, help="JSON merged into each body (block requests).")
    ap.add_argument("--item-ids", default=None, help="File of item ids: one context item each.")
    print(json.dumps(asyncio.run(run(ap.parse_args()))))


if __name__ == "__main__":
    main()
