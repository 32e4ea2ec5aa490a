"""A local HTTP receiver for webhook tests (127.0.0.1, random port)."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A local HTTP receiver; fails a deterministic pseudo-random share of requests.

    Half of the failures happen *after* the batch was processed (the answer is
    lost), so the sender resends a batch the receiver already has: the receiver
    de-duplicates by Idempotency-Key.
    """

    def __init__(self, fail_rate: float = 0.3, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.requests = 0
        self.failures = 0
        self.by_key: dict[str, dict] = {}
        self.duplicates = 0
        self.refuse = False
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key")
                with lock:
                    outer.requests += 1
                    fail = outer.rng.random() < outer.fail_rate
                    before = fail and outer.rng.random() < 0.5
                    if outer.refuse:
                        code = 400
                    elif before:
                        code = 503
                    else:
                        if key in outer.by_key:
                            outer.duplicates += 1
                        else:
                            outer.by_key[key] = json.loads(body)
                        code = 500 if fail else 200
                    outer.failures += code != 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def changes(self) -> list[tuple[str, str, str, str]]:
        return [
            (b["segment"], b["as_of"], c["unified_id"], c["change"])
            for b in self.by_key.values()
            for c in b["changes"]
        ]
