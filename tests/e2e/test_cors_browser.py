"""CORS through the ``headers`` middleware as a browser sees it: headless Chromium runs fetch()
from a page of another origin, and Chromium itself sends the preflight and decides.

The page comes from a small HTTP server of its own (one origin); the API it calls is an HTTP
router of Switchyard's (another port, so another origin) in front of the echo backend, which
counts what reaches it. A preflight the middleware allows lets the PUT through and the page
reads the answer and an exposed header; a request header the policy does not list makes
Chromium refuse before the PUT is sent; an origin not in the list is refused too.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.test_dashboard import CHROMIUM_ARGS, ensure_chromium
from tests.harness import LoopThread
from tests.mwkit import serve

PAGE = b"<!doctype html><title>cors</title><p>a page of another origin</p>"

DYNAMIC = """
http:
  routers:
    api:
      rule: "PathPrefix(`/api`)"
      service: echo
      middlewares: [cors]
  middlewares:
    cors:
      headers:
        accessControlAllowMethods: [GET, PUT]
        accessControlAllowHeaders: [X-Token, Content-Type]
        accessControlAllowOriginList: ["{origin}"]
        accessControlExposeHeaders: [X-Request-Id]
        accessControlMaxAge: 0
        customResponseHeaders:
          X-Request-Id: "r-1"
  services:
    echo:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{backend}"}}]
"""

FETCH = """async ([url, init]) => {
    try {
        const answer = await fetch(url, init);
        return {ok: true, status: answer.status, body: await answer.text(),
                requestId: answer.headers.get("X-Request-Id")};
    } catch (error) {
        return {ok: false, error: String(error)};
    }
}"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Backend(http.server.BaseHTTPRequestHandler):
    """Answers every request with its method; keeps the methods that reached it."""

    reached: ClassVar[list[str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.reached.append(self.command)
        body = f'{{"method": "{self.command}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[tuple[int, list[str]]]:
    reached: ClassVar[list[str]] = []
    handler = type("Counting", (_Backend,), {"reached": reached})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], reached
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page() -> Iterator[Page]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_chromium_preflights_and_the_middleware_decides(
        page: Page, origin: str, backend: tuple[int, list[str]], loop_thread: LoopThread,
        tmp_path: Path) -> None:
    backend_port, reached = backend
    seen: list[str] = []
    with serve(loop_thread, tmp_path, DYNAMIC.format(origin=origin,
                                                     backend=backend_port)) as ports:
        api = f"http://127.0.0.1:{ports['web']}/api/items"
        page.on("request", lambda request: seen.append(request.method))
        page.goto(origin + "/")

        allowed = page.evaluate(FETCH, [api, {"method": "PUT", "body": "x=1",
                                              "headers": {"X-Token": "t",
                                                          "Content-Type": "text/plain"}}])
        assert allowed["ok"], allowed
        assert allowed["status"] == 200 and allowed["body"] == '{"method": "PUT"}'
        assert allowed["requestId"] == "r-1"  # readable only because it is exposed

        refused = page.evaluate(FETCH, [api, {"method": "PUT", "headers": {"X-Other": "1"}}])
        assert refused == {"ok": False, "error": "TypeError: Failed to fetch"}
        assert reached == ["PUT"]  # Chromium stopped at the preflight: the PUT was never sent

        # A method outside accessControlAllowMethods is refused the same way.
        deleted = page.evaluate(FETCH, [api, {"method": "DELETE"}])
        assert deleted == {"ok": False, "error": "TypeError: Failed to fetch"}

        # From an origin the list does not hold, even a simple GET's answer stays unreadable.
        page.goto(f"http://localhost:{origin.rsplit(':', 1)[1]}/")
        foreign = page.evaluate(FETCH, [api, {"method": "GET"}])
        assert foreign == {"ok": False, "error": "TypeError: Failed to fetch"}
        # A simple GET needs no preflight: it reached the backend, its answer was withheld.
        # The preflights were answered by the middleware: no OPTIONS ever reached it.
        assert reached == ["PUT", "GET"]
    # What the page's requests were, as Chromium made them: the two navigations, and fetches
    # only; the preflights (OPTIONS) are Chromium's own and do not show as page requests.
    assert seen == ["GET", "PUT", "PUT", "DELETE", "GET", "GET"]
