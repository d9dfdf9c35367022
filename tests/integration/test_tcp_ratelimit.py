"""The TCP rateLimit on real sockets: Traefik's fixture, burst and average, Redis shared limits."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    ensure_command,
    free_port,
    read_lines,
    start_router,
    stop_router,
)
from tests.integration.test_proxy_flow import tls_backend_context, tls_client

# Traefik's integration/fixtures/tcp/ratelimit.toml, dynamic part, as written there (the
# backend port and certificate paths are the test's).
FIXTURE = """
[tcp]
  [tcp.routers]
    [tcp.routers.to-whoami-a]
      entryPoints = ["tcp"]
      rule = "HostSNI(`whoami-a.test`)"
      service = "whoami-a"
      middlewares = ["test-ratelimit"]
      [tcp.routers.to-whoami-a.tls]
        passthrough = true

  [tcp.services]
    [tcp.services.whoami-a.loadBalancer]
      [[tcp.services.whoami-a.loadBalancer.servers]]
        address = "localhost:{port}"

  [tcp.middlewares]
    [tcp.middlewares.test-ratelimit.rateLimit]
      average = 1

[[tls.certificates]]
  certFile = "{cert}"
  keyFile = "{key}"
"""


def tls_admitted(ca: Any, port: int) -> bool:
    """Whether a TLS client for whoami-a.test reaches the backend (its greeting arrives)."""
    try:
        with tls_client(ca, port, "whoami-a.test") as sock:
            return bool(read_lines(sock, 1))
    except (ssl.SSLError, ConnectionError, OSError):
        return False


def test_traefiks_fixture_loads_and_admits_one_connection_a_second(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    backend = backends.whoami("whoami-a", tls=tls_backend_context(ca, "whoami-a.test"))
    cert = ca.issue_cert("whoami-c.test")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "whoami-c.crt")
    cert.private_key_pem.write_to_path(tmp_path / "whoami-c.key")
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(FIXTURE.format(port=backend, cert=tmp_path / "whoami-c.crt",
                                      key=tmp_path / "whoami-c.key"))
    static, issues = static_from_dict({
        "entryPoints": {"tcp": {"address": "127.0.0.1:0"}},
        "providers": {"file": {"filename": str(dynamic)}}}, "test")
    assert not issues
    app = Switchyard(static)
    loop_thread.run(app.start())
    try:
        assert not app.runtime.problems()
        port = app.entrypoints["tcp"].port
        assert tls_admitted(ca, port)
        assert not tls_admitted(ca, port)  # within the same second: refused
        time.sleep(1.05)
        assert tls_admitted(ca, port)
    finally:
        stop_router(loop_thread, app)


def limited(average: int, period: str, burst: int, backend: int, **extra: Any) -> str:
    return json.dumps({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"],
                          "middlewares": ["limit"]}},
        "middlewares": {"limit": {"rateLimit": {"average": average, "period": period,
                                                "burst": burst, **extra}}},
        "services": {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{backend}"}]}}}}})


def admitted(port: int) -> bool:
    with connect(port) as sock:
        return bool(read_lines(sock, 1))


def test_the_limit_admits_burst_at_once_then_average_per_period_and_counts_rejections(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, limited(2, "1s", 3, backends.whoami("b")),
                       entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
                       api={"insecure": True}, metrics={"prometheus": {"entryPoint": "traefik"}})
    port = app.entrypoints["ep"].port
    try:
        assert [admitted(port) for _ in range(5)] == [True, True, True, False, False]
        time.sleep(0.55)  # 2 a second: one more token
        assert [admitted(port) for _ in range(2)] == [True, False]
        with urllib.request.urlopen(
                f"http://127.0.0.1:{app.internal_servers[0].port}/metrics", timeout=5) as got:
            metrics = got.read().decode()
        assert ('traefik_tcp_middleware_rejections_total{entrypoint="ep",middleware='
                '"limit@file",reason="rate_limited",router="r@file"} 3.0') in metrics
    finally:
        stop_router(loop_thread, app)


class RedisServer:
    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [ensure_command("redis-server", "redis-server"), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    yield server
    server.stop()


def test_two_instances_share_one_limit_in_redis(loop_thread: LoopThread, backends: Backends,
                                               tmp_path: Path, redis_server: RedisServer) -> None:
    backend = backends.whoami("b")
    redis = {"redis": {"endpoints": [f"127.0.0.1:{redis_server.port}"]}}
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    first = start_router(loop_thread, first_dir, limited(1, "1m", 4, backend, **redis))
    second = start_router(loop_thread, second_dir, limited(1, "1m", 4, backend, **redis))
    try:
        ports = [first.entrypoints["ep"].port, second.entrypoints["ep"].port]
        got = [admitted(ports[i % 2]) for i in range(8)]
        assert got == [True] * 4 + [False] * 4  # one bucket of 4 for both instances
    finally:
        stop_router(loop_thread, first)
        stop_router(loop_thread, second)


def test_a_redis_limit_that_cannot_be_asked_refuses(loop_thread: LoopThread, backends: Backends,
                                                    tmp_path: Path) -> None:
    redis = {"redis": {"endpoints": [f"127.0.0.1:{free_port()}"], "dialTimeout": "1s"}}
    app = start_router(loop_thread, tmp_path, limited(100, "1s", 100, backends.whoami("b"),
                                                      **redis))
    try:
        assert not admitted(app.entrypoints["ep"].port)
        record = next(iter(app.entrypoints["ep"].connections), None)
        assert record is None  # closed, not left waiting
    finally:
        stop_router(loop_thread, app)
