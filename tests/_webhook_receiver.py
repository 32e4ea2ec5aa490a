"""A local HTTP receiver for webhook tests (127.0.0.1, random port)."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Receiver:
    """A local HTTP receiver; fails a deterministic pseudo-random share of requests.

    Half of the failures happen *after* the batch was processed (the answer is
    lost), so the sender resends a batch the receiver already has: the receiver
    de-duplicates by webhook-id (the same as Idempotency-Key).

    With ``secret`` it verifies every request first with the official Standard
    Webhooks library (``standardwebhooks``) and answers 401 to one that does not
    verify (counted in ``rejected``). ``answers`` holds ``(status, headers)`` to
    give the next requests before the usual behaviour (e.g. 503 + Retry-After).
    ``seen`` keeps the (lower-cased) headers and body of every request.
    """

    def __init__(self, fail_rate: float = 0.3, seed: int = 7, secret: str | None = None) -> None:
        self.rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.requests = 0
        self.failures = 0
        self.by_key: dict[str, dict] = {}
        self.duplicates = 0
        self.refuse = False
        self.rejected = 0
        self.verifier = Webhook(secret) if secret else None
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                key = headers.get("webhook-id") or headers.get("idempotency-key")
                extra: dict[str, str] = {}
                with lock:
                    outer.requests += 1
                    outer.seen.append((headers, body))
                    fail = outer.rng.random() < outer.fail_rate
                    before = fail and outer.rng.random() < 0.5
                    if outer.verifier is not None and not outer._verified(body, headers):
                        code = 401
                        outer.rejected += 1
                    elif outer.answers:
                        code, extra = outer.answers.pop(0)
                    elif outer.refuse:
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
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            self.verifier.verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

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
