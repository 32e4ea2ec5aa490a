"""The browser tracker and widget in headless Chromium against a real ``cip serve --demo``.

One served shop (``cip serve --demo`` over the small serving shop) and one browser for
the whole module; each test gets a fresh browser context (cookies, localStorage).
Pages are either the real demo storefront (same origin as the service) or a tiny shop
page from a second local web server (another origin, as a real shop's pages are),
loading the real ``/web/cip.js``; the shop's browser key allows that origin only. What the service
accepted is read back from its durable events log. Debian's chromium only (``make
install-dev`` installs it); missing chromium or playwright fails under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
import yaml
from cip.pipelines.api import Workspace as Api
from cip.pipelines.workflows.blocks import fit_blocks
from cip.pipelines.workflows.setup import EVENTS_DIR, ensure_events_source
from cip.pipelines.workspace import Workspace
from cip.serving.auth import KeyStore

pytest_plugins = ["tests._serving_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP forwarder to the service that can go down (connections refused) and up."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, _free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _call(self, coro):  # noqa: ANN001
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def up(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._call(start())

    def down(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for w in list(self.conns):  # keep-alive connections too: a real outage
                w.transport.abort()
            self.conns.clear()

        self._call(stop())

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.transport.abort()
            return
        self.conns.update((w, uw))

        async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                b.transport.abort() if a.at_eof() is False else b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        self.conns.difference_update((w, uw))


class _ShopPage(BaseHTTPRequestHandler):
    """``/shop.html?cfg=JSON``: a blank shop page loading cip.js and calling cip.init(cfg)."""

    service = ""

    def do_GET(self) -> None:  # noqa: N802
        cfg = parse_qs(urlparse(self.path).query).get("cfg", ["{}"])[0]
        json.loads(cfg)  # only JSON goes into the page
        body = (
            f'<html><body><div id="recs"></div><script src="{self.service}/web/cip.js">'
            f"</script><script>cip.init({cfg});</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Site:
    """The served shop: URLs, keys, and the events the service has accepted."""

    def __init__(self, root: Path, url: str, pk: str, shop_key: str, pages: str) -> None:
        self.root, self.url, self.pk, self.shop_key = root, url, pk, shop_key
        self.pages = pages  # the shop's page server (another origin)

    def events_with(self, anonymous_id: str, event_type: str, timeout: float = 15.0) -> list[dict]:
        """The visitor's events once one of ``event_type`` has arrived: a click is sent
        by ``sendBeacon``, which leaves the page's queue at once (``cip.pending()`` is 0)
        while the request may still be on its way to the service."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.events(anonymous_id)
            if any(r["event_type"] == event_type for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def events(self, anonymous_id: str | None = None) -> list[dict]:
        rows = []
        for f in sorted((self.root / "sources" / "_http_events").glob("events-*.jsonl*")):
            rows += [json.loads(line) for line in f.read_text().splitlines() if line]
        if anonymous_id is not None:
            rows = [r for r in rows if r.get("anonymous_id") == anonymous_id]
        return rows


@pytest.fixture(scope="module")
def site(_shop_template: Path, tmp_path_factory: pytest.TempPathFactory):
    """``cip serve --demo`` over a copy of the serving shop, stopped after the module."""
    root = tmp_path_factory.mktemp("web") / "shop"
    shutil.copytree(_shop_template, root)
    ws = Workspace.init(root)
    cfg = yaml.safe_load(ws.config_path.read_text()) or {}
    # events files published each second (the stitching test ingests them)
    cfg["serving"] = {
        **(cfg.get("serving") or {}),
        "events_rotate_seconds": 1,
        "reload_interval_seconds": 0,
    }
    ws.config_path.write_text(yaml.safe_dump(cfg))
    fit_blocks(ws, log_mlflow=False)  # the named blocks (one per kind) the widget can ask for
    port, page_port = _free_port(), _free_port()
    pages = f"http://127.0.0.1:{page_port}"
    ks = KeyStore(root / "keys.json")
    shop_key = ks.create("shop")[0]
    pk = ks.create("browser", "shop-pages", origins=[pages])[0]
    _ShopPage.service = f"http://127.0.0.1:{port}"
    httpd = ThreadingHTTPServer(("127.0.0.1", page_port), _ShopPage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    log = root.parent / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "cip.pipelines.cli", "--workspace", str(root)]
    proc = subprocess.Popen(
        [*argv, "serve", "--demo", "--port", str(port)],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a loaded 2-core machine
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"cip serve did not start: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        demo_key = json.loads(httpx.get(f"{url}/web/demo/config.json").text)["key"]
        assert demo_key.startswith("pk_") and demo_key != pk
        yield Site(root, url, pk, shop_key, pages)
    finally:
        httpd.shutdown()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _page(browser, site: Site, init: dict | None = None, host: str = "127.0.0.1"):
    """A fresh context and a shop page (on the page server, at ``host``) with cip.js."""
    ctx = browser.new_context()
    page = ctx.new_page()
    cfg = json.dumps({"host": site.url, "key": site.pk, **(init or {})})
    url = site.pages.replace("127.0.0.1", host)
    page.goto(f"{url}/shop.html?{urlencode({'cfg': cfg})}")
    page.wait_for_function("window.cip && window.cip.cfg")
    return ctx, page


def _drained(page, timeout: float = 10_000) -> None:
    page.wait_for_function("cip.pending() === 0", timeout=timeout)


def _posts(page, path: str) -> list:
    """Record the page's POSTs to ``path`` from now on."""
    seen: list = []
    page.on("request", lambda r: seen.append(r) if r.method == "POST" and path in r.url else None)
    return seen


def test_events_are_batched_and_accepted(browser, site) -> None:
    ctx, page = _page(browser, site, {"batchSize": 5, "flushInterval": 300})
    try:
        posts = _posts(page, "/events")
        ids = page.evaluate(
            """() => [cip.page(), cip.productView('a1'), cip.addToCart('a1', 2),
                      cip.search('hose'), cip.checkout(), cip.purchase('o-web-1', {total: 9}),
                      cip.signUp(), cip.productView('a2'), cip.track('page_view', {path: '/x'}),
                      cip.productView('b1'), cip.removeFromCart('a1'), cip.track('search')]"""
        )
        _drained(page)
        anon = page.evaluate("cip.anonymousId()")
        cookie = {c["name"]: c["value"] for c in ctx.cookies()}["cip_aid"]
        assert anon == cookie and anon.startswith("a-")
        got = site.events(anon)
        assert sorted(e["event_id"] for e in got) == sorted(ids)
        types = {e["event_type"] for e in got}
        assert types >= {"page_view", "product_view", "add_to_cart", "checkout", "purchase"}
        assert types >= {"search", "sign_up", "remove_from_cart"}
        cart = next(e for e in got if e["event_type"] == "add_to_cart")
        assert cart["item_id"] == "a1" and json.loads(cart["properties"]) == {"quantity": 2}
        assert {e["channel"] for e in got} == {"web"} and all(e.get("session_id") for e in got)
        assert 2 <= len(posts) <= 4  # 12 events in batches of at most 5
        assert all(p.url.startswith(f"{site.url}/events?key=pk_") for p in posts)
    finally:
        ctx.close()


def test_identify_stitches_the_anonymous_visitor_to_the_customer(browser, site, tmp_path) -> None:
    ctx, page = _page(browser, site, {"flushInterval": 100})
    try:
        page.evaluate("cip.productView('b2')")
        page.evaluate("cip.identify('C-web-7')")
        page.evaluate("cip.addToCart('b3')")
        _drained(page)
        anon = page.evaluate("cip.anonymousId()")
        got = {e["event_type"]: e for e in site.events(anon)}
        assert set(got) == {"product_view", "identify", "add_to_cart"}
        assert "customer_id" not in got["product_view"]
        assert got["identify"]["customer_id"] == "C-web-7"  # both ids: the identity link
        assert got["add_to_cart"]["customer_id"] == "C-web-7"
        # the service joins the two at once: the customer's recommendations use the
        # anonymous session (b2 viewed before logging in)
        r = httpx.post(
            f"{site.url}/recommend",
            json={"customer_id": "C-web-7", "anonymous_id": anon, "n": 3},
            headers={"X-API-Key": site.shop_key},
        )
        assert r.json()["strategy"] == "session"
        assert {i["item_id"] for i in r.json()["items"]} <= {"b1", "b4", "b5"}
        # and the identity graph: the published events, ingested and unified in a fresh
        # workspace, make the visitor and the customer one person
        deadline = time.monotonic() + 20
        published: list[Path] = []
        while not any("C-web-7" in f.read_text() for f in published):
            assert time.monotonic() < deadline, "events file not published"
            time.sleep(0.3)
            published = sorted((site.root / EVENTS_DIR).glob("events-*.jsonl"))
        api = Api.init(tmp_path / "ws")
        (api.root / EVENTS_DIR).mkdir(parents=True, exist_ok=True)
        for f in published:
            shutil.copy(f, api.root / EVENTS_DIR / f.name)
        ensure_events_source(api)
        api.reload()
        api.ingest("http_events")
        api.unify()
        with api.open_store(read_only=True) as st:
            ids = st.sql(
                "SELECT identifier_value, unified_id FROM identity_map "
                "WHERE identifier_value IN (?, ?)",
                [anon, "C-web-7"],
            )
        assert len(ids) == 2 and ids["unified_id"].nunique() == 1
        # logging out starts a new anonymous visitor
        page.evaluate("cip.reset()")
        assert page.evaluate("cip.customerId()") is None
        assert page.evaluate("cip.anonymousId()") != anon
    finally:
        ctx.close()


def test_nothing_is_sent_for_a_refused_purpose(browser, site) -> None:
    ctx, page = _page(browser, site, {"flushInterval": 3000})
    try:
        posts = _posts(page, "/events")
        page.evaluate("cip.productView('a3'); cip.page()")  # queued, not yet sent
        assert page.evaluate("cip.pending()") == 2
        page.evaluate("cip.consent({analytics: false})")
        assert page.evaluate("cip.pending()") == 0  # dropped from the queue
        assert page.evaluate("[cip.productView('a4'), cip.search('x'), cip.page()]") == [None] * 3
        page.evaluate("cip.flush()")
        page.wait_for_timeout(800)
        anon = page.evaluate("cip.anonymousId()")
        assert posts == [] and site.events(anon) == []
        # the refusal is remembered on the next page of the site
        page.reload()
        page.wait_for_function("window.cip && window.cip.cfg")
        assert page.evaluate("cip.allowed('analytics')") is False
        assert page.evaluate("cip.track('page_view')") is None
        # refusing personalization is told to the service (a consent event), nothing else
        page.evaluate("cip.consent({personalization: false}); cip.flush()")
        _drained(page)
        [c] = site.events(anon)
        assert c["event_type"] == "consent"
        assert json.loads(c["properties"]) == {"granted": False, "purpose": "personalization"}
    finally:
        ctx.close()


def test_events_survive_the_service_being_down(browser, site) -> None:
    proxy = Proxy(int(site.url.rsplit(":", 1)[1]))
    proxy.up()
    host = f"http://127.0.0.1:{proxy.port}"
    init = {"host": host, "flushInterval": 100, "retryBase": 300, "retryMax": 1500}
    ctx, page = _page(browser, site, init)
    try:
        failed: list = []
        page.on("requestfailed", lambda r: failed.append(r) if "/events" in r.url else None)
        page.evaluate("cip.page()")
        _drained(page)
        proxy.down()
        t0 = time.monotonic()
        ids = [page.evaluate(f"cip.productView('a{i % 5 + 1}')") for i in range(6)]
        page.wait_for_timeout(2500)
        # a new page of the site while the service is still down: the queue is kept
        page.reload()
        page.wait_for_function("window.cip && window.cip.cfg")
        ids += page.evaluate("[cip.addToCart('a1'), cip.checkout()]")
        while time.monotonic() - t0 < 10:  # a real 10 s outage: connections refused
            page.wait_for_timeout(250)
        assert page.evaluate("cip.pending()") == len(ids) and len(failed) >= 2
        proxy.up()
        _drained(page, 15_000)
        anon = page.evaluate("cip.anonymousId()")
        got = [e["event_id"] for e in site.events(anon) if e["event_type"] != "page_view"]
        assert sorted(set(got)) == sorted(ids)  # nothing lost
    finally:
        ctx.close()
        proxy.close()


def test_widget_renders_a_block_and_reports_impression_and_click(browser, site) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(f"{site.url}/web/demo/")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        assert page.locator("#products .card").count() == 13
        items = page.locator("#recs [data-cip-item]")
        assert items.count() == 4
        first = items.nth(0).get_attribute("data-cip-item")
        assert "Item " in items.nth(0).inner_text()  # the shop's template, its catalog
        items.nth(0).click()
        _drained(page)
        anon = page.evaluate("cip.anonymousId()")
        got = site.events_with(anon, "recommendation_click")
        [imp] = [e for e in got if e["event_type"] == "recommendation_impression"]
        props = json.loads(imp["properties"])
        assert props["block"] == "recommended" and len(props["items"]) == 4
        assert props["strategy"] in ("popular", "session", "personalized")
        [click] = [e for e in got if e["event_type"] == "recommendation_click"]
        assert click["item_id"] == first and json.loads(click["properties"])["position"] == 1
        # the demo's product buttons are tracked too
        page.locator("#products .card .view").nth(1).click()
        _drained(page)
        assert any(e["event_type"] == "product_view" for e in site.events(anon))
    finally:
        ctx.close()


def test_widget_renders_a_named_block_with_the_pages_items(browser, site) -> None:
    ctx, page = _page(browser, site, {"flushInterval": 100})
    try:
        item = "a1"  # a product page
        res = page.evaluate(
            """async (item) => {
              const res = await cip.recommend({block: 'similar', n: 3, items: [item],
                                               container: '#recs'});
              return {strategy: res.strategy, block: res.block, items: res.items.map(i => i.item_id)};
            }""",
            item,
        )
        assert res["strategy"] == "block" and res["block"] == "similar"
        assert len(res["items"]) == 3 and item not in res["items"]
        shown = page.locator("#recs [data-cip-item]")
        assert [shown.nth(i).get_attribute("data-cip-item") for i in range(3)] == res["items"]
        assert page.locator("#recs").get_attribute("data-cip-block") == "similar"
        shown.nth(2).click()
        _drained(page)
        got = site.events_with(page.evaluate("cip.anonymousId()"), "recommendation_click")
        [imp] = [e for e in got if e["event_type"] == "recommendation_impression"]
        assert json.loads(imp["properties"])["block"] == "similar"
        assert json.loads(imp["properties"])["strategy"] == "block"
        [click] = [e for e in got if e["event_type"] == "recommendation_click"]
        assert click["item_id"] == res["items"][2]
        assert json.loads(click["properties"])["position"] == 3
    finally:
        ctx.close()


def test_browser_key_is_refused_for_secret_endpoints_and_other_origins(browser, site) -> None:
    ctx, page = _page(browser, site)
    try:
        codes = page.evaluate(
            """async () => {
              const out = {};
              for (const p of ['/score', '/segment_members', '/admin/reload', '/recommend']) {
                const r = await cip._post(p, p === '/recommend' ? {n: 2} : {});
                out[p] = r.status;
              }
              return out;
            }"""
        )
        assert codes == {
            "/score": 403,
            "/segment_members": 403,
            "/admin/reload": 403,
            "/recommend": 200,
        }
    finally:
        ctx.close()
    # the same key on a page of another origin: refused, and the page cannot read it
    ctx, page = _page(browser, site, {"flushInterval": 100}, host="localhost")
    try:
        err = page.evaluate(
            """async () => {
              try { await cip._post('/recommend', {n: 2}); return 'read'; }
              catch (e) { return 'refused'; }
            }"""
        )
        assert err == "refused"
        page.evaluate("cip.page()")
        page.wait_for_timeout(600)
        assert site.events(page.evaluate("cip.anonymousId()")) == []
        assert page.evaluate("cip.pending()") == 1  # kept: the page cannot tell why
    finally:
        ctx.close()
