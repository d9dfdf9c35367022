"""The KV stores (Redis, etcd, ZooKeeper, Consul) and Docker labels carry ``http`` keys through
to a working HTTP router with a middleware: one real request each, answered by the echo backend.
"""

from __future__ import annotations

import copy
import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from tests.consulkit import running_consul
from tests.fixtures.providers.docker_engine import (
    FakeDockerEngine,
    on_loopback,
    recorded_containers,
)
from tests.harness import LoopThread, stop_router
from tests.integration.test_kv_providers import Router, Store, empty_store, store
from tests.mwkit import echo_backend, echoed

__all__ = ["empty_store", "store"]  # the KV store fixtures, shared with test_kv_providers


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_backend() as port:
        yield port


def http_keys(port: int) -> dict[str, str]:
    """Router ``web`` on ``ep`` for /kv, through middleware ``tag``, to the echo backend."""
    return {"http/routers/web/rule": "PathPrefix(`/kv`)",
            "http/routers/web/entrypoints/0": "ep",
            "http/routers/web/service": "echo",
            "http/routers/web/middlewares/0": "tag",
            "http/middlewares/tag/headers/customrequestheaders/X-Provider": "kv",
            "http/services/echo/loadbalancer/servers/0/url": f"http://127.0.0.1:{port}"}


def answer(port: int, path: str) -> tuple[int, dict[str, list[str]]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, echoed(body)["fields"] if response.status == 200 else {}
    finally:
        connection.close()


def eventually_routed(port: int, path: str, within: float = 5) -> dict[str, list[str]]:
    deadline = time.monotonic() + within
    while True:
        try:
            status, fields = answer(port, path)
            if status == 200:
                return fields
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{path} not routed within {within} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_kv_store_http_keys_route_through_their_middleware(empty_store: Store,
                                                            echo: int) -> None:
    for key, value in http_keys(echo).items():
        empty_store.put(f"traefik/{key}", value)
    router = Router(empty_store)
    try:
        fields = eventually_routed(router.app.entrypoints["ep"].port, "/kv/x")
        assert fields["x-provider"] == ["kv"]
    finally:
        router.close()


@pytest.mark.slow
def test_consul_kv_http_keys_route_through_their_middleware(echo: int) -> None:
    with running_consul() as (consul, _):
        for key, value in http_keys(echo).items():
            consul.kv_put(f"traefik/{key}", value)
        loop = LoopThread()
        static, _ = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
            "providers": {"consul": {"endpoints": [consul.address]}}}, "test")
        app = Switchyard(static)
        loop.run(app.start())
        try:
            fields = eventually_routed(app.entrypoints["ep"].port, "/kv/y")
            assert fields["x-provider"] == ["kv"]
        finally:
            stop_router(loop, app)
            loop.run(app.shutdown())
            loop.stop()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[FakeDockerEngine, LoopThread]]:
    loop = LoopThread()
    fake = FakeDockerEngine(str(tmp_path / "docker.sock"))
    loop.run(fake.start())
    yield fake, loop
    loop.run(fake.stop())
    loop.stop()


def test_docker_http_labels_route_through_their_middleware(
        engine: tuple[FakeDockerEngine, LoopThread], echo: int) -> None:
    fake, _ = engine
    entry, inspect = recorded_containers()["demo-whoami-1"]
    labelled = copy.deepcopy(inspect)
    labelled["Config"]["Labels"] = {
        "traefik.http.routers.web.rule": "PathPrefix(`/docker`)",
        "traefik.http.routers.web.entrypoints": "ep",
        "traefik.http.routers.web.middlewares": "tag",
        "traefik.http.middlewares.tag.headers.customrequestheaders.X-Provider": "docker",
        "traefik.http.services.web.loadbalancer.server.port": "1"}
    fake.containers = {"demo-whoami-1": (entry, on_loopback(labelled, echo))}
    loop = LoopThread()
    static, _ = static_from_dict({
        "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
        "providers": {"docker": {"endpoint": f"unix://{fake.socket_path}", "watch": False}},
    }, "test")
    app = Switchyard(static)
    loop.run(app.start())
    try:
        fields = eventually_routed(app.entrypoints["ep"].port, "/docker/z")
        assert fields["x-provider"] == ["docker"]
    finally:
        stop_router(loop, app)
        loop.run(app.shutdown())
        loop.stop()

