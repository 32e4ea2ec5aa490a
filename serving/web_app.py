"""``/web/``: the browser tracker file and, when enabled, the demo storefront.

Mounted on the service at ``/web`` (``CIPService.mount_asgi_app``); these paths
need no key (:mod:`serving.auth`). What it serves:

* ``/web/cip.js`` -- the tracker and widget library, built from ``serving/web/src``
  and vendored as ``serving/web/dist/cip.js`` (no npm needed to use it);
* ``/web/demo/`` -- a small storefront over the served workspace's products, only
  with ``serving.web_demo: true`` (``cip serve --demo``); ``/web/demo/config.json``
  gives the page the publishable demo key and ``/web/demo/products.json`` the
  catalog (at most 5,000 products, categories interleaved). Otherwise 404.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["WEB_DIR", "TRACKER_FILE", "WebApp"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
TRACKER_FILE = WEB_DIR / "dist" / "cip.js"
_DEMO_FILES = {
    "index.html": "text/html; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
}
_MAX_PRODUCTS = 5000


class WebApp:
    """A tiny ASGI app for ``/web/`` (static files plus the demo's two JSON answers).

    Args:
        holder: callable returning the service's :class:`~cip.serving.state.StateHolder`
            (None while the service starts).
    """

    def __init__(self, holder: Callable[[], Any]) -> None:
        self.holder = holder

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith("/web"):
            path = path[4:]
        code, ctype, body = self._answer(path or "/", scope.get("method", "GET"))
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-cache"),
            (b"x-content-type-options", b"nosniff"),
        ]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, path: str, method: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return _err(405, "only GET here")
        if path == "/cip.js":
            if not TRACKER_FILE.exists():
                return _err(404, "the tracker is not built (cd serving/web && npm run build)")
            return 200, "text/javascript; charset=utf-8", TRACKER_FILE.read_bytes()
        if not path.startswith("/demo"):
            return _err(404, f"no such file {path[:100]}")
        h = self.holder()
        if h is None:
            return _err(503, "the service is starting; retry shortly")
        if not h.settings.web_demo:
            return _err(404, "the demo storefront is off (cip serve --demo)")
        name = path[len("/demo") :].lstrip("/") or "index.html"
        if name == "config.json":
            cfg = {"key": h.settings.web_demo_key, "host": ""}
            return 200, "application/json", json.dumps(cfg).encode()
        if name == "products.json":
            return 200, "application/json", json.dumps(_products(h)).encode()
        if name in _DEMO_FILES:
            return 200, _DEMO_FILES[name], (WEB_DIR / "demo" / name).read_bytes()
        return _err(404, f"no such file {path[:100]}")


def _err(code: int, message: str) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps({"error": message}).encode()


def _products(holder: Any) -> list[dict[str, Any]]:
    state = holder.state
    if state is None:
        return []
    try:  # categories interleaved: the first products of the list show the range
        df = state.snapshot.store.sql(
            "SELECT item_id, title, category, price, in_stock FROM ("
            "SELECT *, row_number() OVER (PARTITION BY category ORDER BY item_id) AS rk FROM ("
            "SELECT DISTINCT ON (item_id) CAST(item_id AS VARCHAR) AS item_id, title, category, "
            "price, in_stock FROM products WHERE item_id IS NOT NULL)) "
            f"ORDER BY rk, category, item_id LIMIT {_MAX_PRODUCTS}"
        )
    except Exception as exc:  # no products table: an empty shop window, said in the log
        log.warning("demo storefront: no products (%s)", type(exc).__name__)
        return []
    df = df.astype(object).where(df.notna(), None)
    return [
        {k: (float(v) if k == "price" and v is not None else v) for k, v in r.items()}
        for r in df.to_dict("records")
    ]
