"""The dashboard shows TCP strategies, weights, passive ejections and limit rejections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.test_dashboard import page  # noqa: F401  (the headless Chromium fixture)
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    free_port,
    greeting_name,
    read_lines,
    start_router,
    stop_router,
)


@pytest.mark.slow
def test_dashboard_shows_strategy_weights_ejections_and_rejections(
        page: Page, loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:  # noqa: F811
    live, dead = f"127.0.0.1:{backends.whoami('live')}", f"127.0.0.1:{free_port()}"
    app = start_router(loop_thread, tmp_path, json.dumps({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"],
                          "middlewares": ["dash-limit"]}},
        "middlewares": {"dash-limit": {"rateLimit": {"average": 1, "period": "1m", "burst": 1}}},
        "services": {"s": {"loadBalancer": {
            "strategy": "leastConn", "retry": {"attempts": 2},
            "passiveHealthCheck": {"failureWindow": "1m"},
            "servers": [{"address": dead, "weight": 3}, {"address": live}]}}}}}),
        entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"}, api={"insecure": True})
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            assert greeting_name(sock) == "live"  # the dead one refused, then taken out
        with connect(app.entrypoints["ep"].port) as sock:
            assert read_lines(sock, 1) == []  # over the rate limit
        page.goto(f"http://127.0.0.1:{app.internal_servers[0].port}/dashboard/")
        page.wait_for_selector("body[data-loaded]", timeout=10_000)
        service = page.locator('#services tr[data-name="s@file"]').inner_text()
        assert "strategy leastConn" in service and "weight 3" in service
        assert "taken out 1x by passive health" in service and "DOWN" in service
        middleware = page.locator('#middlewares tr[data-name="dash-limit@file"]').inner_text()
        assert "1 connections per 1m0s, burst 1" in middleware and "(1 refused)" in middleware
    finally:
        stop_router(loop_thread, app)
