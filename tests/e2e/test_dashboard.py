"""The dashboard in headless Chromium: routers, an error, live connection counts, a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from tests.harness import Backends, LoopThread, connect, greeting_name, start_router, stop_router

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

DYNAMIC = """
tcp:
  routers:
    shop:
      rule: "HostSNI(`*`)"
      service: shop
    broken:
      rule: "HostSNI(`needs.tls.example.com`)"
      service: shop
  services:
    shop:
      loadBalancer:
        servers:
          - address: "127.0.0.1:{port}"
http:
  routers:
    site:
      rule: "Host(`site.test`)"
      service: site
      middlewares: [prefix]
    lost:
      rule: "Host(`lost.test`)"
      service: site
      middlewares: [nosuch]
  middlewares:
    prefix: {{addPrefix: {{prefix: "/app"}}}}
  services:
    site:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{port}"
"""


def ensure_chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing; skip only if that fails."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    problems = []
    for commands in ([install], [["apt-get", "update", "-qq"], install]):
        try:
            for command in commands:
                subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(str(exc))
            continue
        if os.path.exists(CHROMIUM):
            return CHROMIUM
    pytest.skip("Chromium is missing and `apt-get install -y chromium` failed: "
                + "; ".join(problems) + f" (apt-get on PATH: {shutil.which('apt-get')})")


@pytest.fixture
def page() -> Iterator[Page]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_dashboard_renders_routers_errors_and_live_connection_counts(
        page: Page, loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(port=backends.whoami("shop")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if _is_error(m) else None)
    try:
        # The object start_internal returned; Switchyard keeps it to close it on shutdown.
        api = f"http://127.0.0.1:{app.internal_servers[0].port}"
        with connect(app.entrypoints["ep"].port) as conn:
            assert greeting_name(conn) == "shop"
            page.goto(f"{api}/?refresh=200")
            assert page.url == f"{api}/dashboard/?refresh=200"
            page.wait_for_selector("body[data-loaded]", timeout=10_000)

            routers = page.locator("#routers tbody")
            assert routers.locator('tr[data-name="shop@file"] .badge').inner_text() == "enabled"
            assert routers.locator('tr[data-name="broken@file"] .badge').inner_text() == (
                "disabled")
            error = routers.locator("li.error")
            assert "has HostSNI matcher, but no TLS on router" in error.inner_text()
            assert page.locator("#problems li.error").count() == 2
            http = page.locator("#http-routers tbody")
            assert http.locator('tr[data-name="site@file"] .badge').inner_text() == "enabled"
            assert "prefix@file" in http.locator('tr[data-name="site@file"]').inner_text()
            assert 'middleware "nosuch@file" does not exist' in http.locator(
                "li.error").inner_text()
            assert "addprefix" in page.locator(
                '#http-middlewares tr[data-name="prefix@file"]').inner_text()
            assert "http://127.0.0.1:" in page.locator(
                '#http-services tr[data-name="site@file"]').inner_text()
            assert page.locator("#open-connections").inner_text() == "1"
            assert page.locator('#routers tr[data-name="shop@file"] td[data-field="open"]'
                                ).inner_text() == "1"
            assert "shop@file" in page.locator("#connections tbody").inner_text()
            assert "UP" in page.locator('#services tr[data-name="shop@file"]').inner_text()

            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"\ndashboard screenshot: {screenshot}")
            assert screenshot.stat().st_size > 10_000
        # The page refreshes by itself: the closed connection disappears from the counts.
        page.wait_for_function(
            "document.getElementById('open-connections').textContent === '0'", timeout=5_000)
        assert "No open connection" in page.locator("#connections tbody").inner_text()
        assert problems == []
    finally:
        stop_router(loop_thread, app)


def _is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"
