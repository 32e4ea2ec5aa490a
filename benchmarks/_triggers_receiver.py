"""Webhook receiver for the trigger benchmark (run as its own process).

    python -m benchmarks._triggers_receiver --port PORT --secret whsec_... --out arrivals.tsv

HTTP/1.1 with keep-alive (one thread per connection). Each request's Standard
Webhooks signature is verified; the arrival (epoch seconds, taken when the
body has been read) is appended as ``message_id trigger event_id arrived_at
signature_ok`` to ``--out`` before the 200 answer. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from cip.activation.signing import verify_signature

    out = open(a.out, "w", buffering=1)  # noqa: SIM115 - closed at exit
    lock = threading.Lock()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the worker's client reuses connections

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            at = time.time()
            try:
                verify_signature(a.secret, dict(self.headers.items()), raw)
                ok = 1
            except Exception:  # noqa: BLE001 - counted, not fatal
                ok = 0
            body = json.loads(raw)
            ctx = body.get("context") or {}
            with lock:
                out.write(
                    f"{body['message_id']}\t{body['trigger']}\t{ctx.get('event_id', '')}"
                    f"\t{at:.6f}\t{ok}\n"
                )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", a.port), H)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    out.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
