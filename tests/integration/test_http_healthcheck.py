"""Active HTTP health checks against real backends: what is sent, what counts as healthy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from switchyard.config.http import ServerHealthCheck
from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.healthcheck import HTTPHealthCheck, HTTPHealthMonitor, check_url, probe
from switchyard.http.proxy import ReverseProxy, parse_server_url
from tests.harness import LoopThread
from tests.httpkit import Engine
from tests.namedbackend import NamedBackend, get


@pytest.fixture
def backend(loop_thread: LoopThread) -> Iterator[Any]:
    started: list[NamedBackend] = []

    def start(name: str, status: int = 200) -> NamedBackend:
        started.append(NamedBackend(loop_thread, name, status))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def probe_once(loop: LoopThread, server: BalancedServer, check: HTTPHealthCheck) -> str | None:
    async def run() -> str | None:
        async with aiohttp.ClientSession() as session:
            return await probe(session, server, check)

    return loop.run(run())


def wait_until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_defaults_and_fallbacks_follow_traefik() -> None:
    check = HTTPHealthCheck.from_config(ServerHealthCheck(path="/health"), "app@file")
    assert (check.method, check.interval, check.unhealthy_interval, check.timeout) == (
        "GET", 30.0, 30.0, 5.0)
    assert check.follow_redirects and check.status == 0
    odd = HTTPHealthCheck.from_config(
        ServerHealthCheck(interval=-1, unhealthyInterval=0, timeout=0, method="head"), "a")
    assert (odd.method, odd.interval, odd.unhealthy_interval, odd.timeout) == (
        "HEAD", 30.0, 30.0, 5.0)
    assert HTTPHealthCheck.from_config(
        ServerHealthCheck(interval=2), "a").unhealthy_interval == 2.0


def test_unknown_mode_and_absolute_paths_are_refused_naming_the_service() -> None:
    with pytest.raises(ValueError, match='service "odd@file": healthCheck mode "tcp" is unknown'):
        HTTPHealthCheck.from_config(ServerHealthCheck(mode="tcp"), "odd@file")
    assert HTTPHealthCheck.from_config(ServerHealthCheck(mode="grpc"), "a").mode == "grpc"
    with pytest.raises(ValueError, match="health check path must be a relative URL"):
        HTTPHealthCheck.from_config(ServerHealthCheck(path="http://other/health"), "a")


def test_probe_url_resolves_the_path_against_the_server_url() -> None:
    check = HTTPHealthCheck(path="/health?full=1")
    assert check_url("http://10.0.0.1:8080/base/", check) == "http://10.0.0.1:8080/health?full=1"
    assert check_url("http://10.0.0.1/base/", HTTPHealthCheck(path="ping")) == (
        "http://10.0.0.1/base/ping")
    assert check_url("http://10.0.0.1:80", HTTPHealthCheck(scheme="https", port=8443)) == (
        "https://10.0.0.1:8443/")
    assert check_url("http://[::1]:80", HTTPHealthCheck(port=81)) == "http://[::1]:81/"


def test_probe_sends_method_path_hostname_and_headers(loop_thread: LoopThread,
                                                       backend: Any) -> None:
    server = backend("app")
    check = HTTPHealthCheck(path="/healthz", method="HEAD", hostname="health.test",
                            headers=(("X-Probe", "1"),))
    assert probe_once(loop_thread, server.balanced(), check) is None
    head = server.heads[-1].decode().lower()
    assert head.startswith("head /healthz http/1.1\r\n")
    assert "host: health.test\r\n" in head and "x-probe: 1\r\n" in head


def test_status_zero_takes_2xx_and_3xx_a_set_status_only_itself(loop_thread: LoopThread,
                                                                 backend: Any) -> None:
    server = backend("app", 500)
    balanced = server.balanced()
    assert probe_once(loop_thread, balanced, HTTPHealthCheck()) == (
        "received error status code: 500")
    server.status = 399
    assert probe_once(loop_thread, balanced, HTTPHealthCheck()) is None
    server.status = 200
    assert probe_once(loop_thread, balanced, HTTPHealthCheck(status=204)) == (
        "received error status code: 200 expected status code: 204")
    server.status = 204
    assert probe_once(loop_thread, balanced, HTTPHealthCheck(status=204)) is None


def test_redirects_are_followed_unless_switched_off(loop_thread: LoopThread,
                                                    backend: Any) -> None:
    sick = backend("sick", 503)
    mover = backend("mover", 302)
    mover.headers = [("Location", sick.url + "/elsewhere")]
    balanced = mover.balanced()
    assert probe_once(loop_thread, balanced, HTTPHealthCheck()) == (
        "received error status code: 503")
    assert sick.paths == ["/elsewhere"]
    assert probe_once(loop_thread, balanced, HTTPHealthCheck(follow_redirects=False)) is None


def test_port_replaces_the_server_port_and_a_dead_port_fails(loop_thread: LoopThread,
                                                             backend: Any) -> None:
    app, health = backend("app"), backend("health")
    balanced = app.balanced()
    assert probe_once(loop_thread, balanced, HTTPHealthCheck(port=health.port)) is None
    assert health.hits == 1 and app.hits == 0
    health.stop()
    failure = probe_once(loop_thread, balanced, HTTPHealthCheck(port=health.port))
    assert failure is not None and failure.startswith("HTTP request failed: ")


def test_timeout_bounds_a_probe(loop_thread: LoopThread) -> None:
    async def silent() -> asyncio.Server:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers
            writer.close()
        return await asyncio.start_server(hold, "127.0.0.1", 0)

    server = loop_thread.run(silent())
    try:
        port = server.sockets[0].getsockname()[1]
        balanced = BalancedServer(ReverseProxy(parse_server_url(f"http://127.0.0.1:{port}")))
        started = time.monotonic()
        failure = probe_once(loop_thread, balanced, HTTPHealthCheck(timeout=0.2))
        assert failure == "HTTP request failed: no answer within 0.2s"
        assert time.monotonic() - started < 2
    finally:
        loop_thread.run(_close(server))


async def _close(server: asyncio.Server) -> None:
    server.close()


def test_monitor_takes_a_failing_server_out_and_back(loop_thread: LoopThread, backend: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    good, flaky = backend("good"), backend("flaky")
    balancer = LoadBalancer("app@file", [good.balanced(), flaky.balanced()])
    engine = Engine(loop_thread, balancer)
    monitor = HTTPHealthMonitor()
    check = HTTPHealthCheck(path="/health", interval=0.05, unhealthy_interval=0.05)

    async def start() -> None:
        monitor.update([(balancer, check)])

    caplog.set_level(logging.WARNING, logger="switchyard.healthcheck")
    try:
        loop_thread.run(start())
        flaky.status = 500
        wait_until(lambda: not balancer.servers[1].up)
        assert {get(engine.url + "/app")[2] for _ in range(6)} == {"good"}
        assert (f'service "app@file": server {flaky.url} is DOWN: '
                "received error status code: 500") in caplog.text
        flaky.status = 200
        wait_until(lambda: balancer.servers[1].up)
        assert f'service "app@file": server {flaky.url} is UP again' in caplog.text
        assert "/health" in flaky.paths
    finally:
        loop_thread.run(monitor.stop())
        engine.close()


def test_monitor_update_cancels_checks_of_balancers_no_longer_given(loop_thread: LoopThread,
                                                                     backend: Any) -> None:
    server = backend("app")
    balancer = LoadBalancer("app@file", [server.balanced()])
    monitor = HTTPHealthMonitor()
    check = HTTPHealthCheck(interval=0.03)

    async def update(checked: list[Any]) -> None:
        monitor.update(checked)

    loop_thread.run(update([(balancer, check)]))
    wait_until(lambda: server.hits >= 2)
    loop_thread.run(update([]))
    time.sleep(0.1)
    hits = server.hits
    time.sleep(0.15)
    assert server.hits == hits
    loop_thread.run(monitor.stop())
