"""The consul (KV) provider against the stand-in Consul: Traefik's key layout, watched.

The keys are written over HTTP (``PUT /v1/kv/...``, as ``consul kv put`` does) into
tests/consulkit.py's stand-in of Consul's API; no Consul server can be installed here.
"""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.loader import ConfigLoadError, static_from_dict
from switchyard.providers.consul import ConsulOptions, consul_providers, pairs_from_kv_listing
from switchyard.providers.kv import SourceUnreadable
from switchyard.server import Switchyard
from tests.consulkit import ConsulStandIn, running_consul
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router

ROOT = "traefik"


@pytest.fixture
def consul_and_loop() -> Iterator[tuple[ConsulStandIn, LoopThread]]:
    with running_consul() as running:
        yield running


@pytest.fixture
def consul(consul_and_loop: tuple[ConsulStandIn, LoopThread]) -> ConsulStandIn:
    return consul_and_loop[0]


def put(consul: ConsulStandIn, key: str, value: str) -> None:
    request = urllib.request.Request(f"http://{consul.address}/v1/kv/{key}",
                                     data=value.encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.read() == b"true"


def write_route(consul: ConsulStandIn, backend_port: int, root: str = ROOT) -> None:
    put(consul, f"{root}/tcp/services/app/loadbalancer/servers/0/address",
        f"127.0.0.1:{backend_port}")
    put(consul, f"{root}/tcp/routers/app/entrypoints/0", "ep")
    put(consul, f"{root}/tcp/routers/app/service", "app")
    put(consul, f"{root}/tcp/routers/app/rule", "HostSNI(`*`)")


class Router:
    def __init__(self, consul: ConsulStandIn, **options: Any) -> None:
        self.loop = LoopThread()
        static, issues = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
            "providers": {"providersThrottleDuration": "50ms",
                          "consul": {"endpoints": [consul.address], **options}},
        }, "test")
        assert not issues, issues
        self.app = Switchyard(static)
        self.loop.run(self.app.start())

    def backend(self) -> str:
        with connect(self.app.entrypoints["ep"].port) as conn:
            return greeting_name(conn)

    def close(self) -> None:
        stop_router(self.loop, self.app)
        self.loop.run(self.app.shutdown())
        self.loop.stop()


@pytest.fixture
def router(consul: ConsulStandIn) -> Iterator[Callable[..., Router]]:
    started: list[Router] = []

    def start(**options: Any) -> Router:
        started.append(Router(consul, **options))
        return started[-1]

    yield start
    for each in started:
        each.close()


def eventually(check: Callable[[], bool], within: float) -> float:
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (OSError, AssertionError):
            pass
        assert time.monotonic() - start < within, f"not true within {within} s"
        time.sleep(0.02)


def test_keys_under_the_root_key_route_a_connection(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    write_route(consul, backends.whoami("blue"))
    put(consul, "other/tcp/routers/app/priority", "99")  # outside the root key: not read

    proxy = router()

    assert proxy.backend() == "blue"
    assert proxy.app.runtime.routers["app@consul"].config.priority == 0


def test_a_changed_key_is_applied_within_a_second_through_a_blocking_query(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(consul, blue)
    proxy = router()
    assert proxy.backend() == "blue"

    put(consul, f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address", f"127.0.0.1:{green}")

    assert eventually(lambda: proxy.backend() == "green", 1.0) < 1.0
    assert any(r.startswith(f"/v1/kv/{ROOT}/?") and "index=" in r for r in consul.requests)


def test_deleting_the_keys_removes_the_router(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    write_route(consul, backends.whoami("blue"))
    proxy = router()
    assert "app@consul" in proxy.app.runtime.routers

    consul.kv_delete(f"{ROOT}/tcp/routers/", recurse=True)

    eventually(lambda: "app@consul" not in proxy.app.runtime.routers, 1.0)


def test_consul_going_away_keeps_the_last_good_config_and_it_reconnects(
        consul_and_loop: tuple[ConsulStandIn, LoopThread], backends: Backends) -> None:
    consul, consul_loop = consul_and_loop
    blue, green = backends.whoami("blue"), backends.whoami("green")
    write_route(consul, blue)
    proxy = Router(consul)
    try:
        consul_loop.run(consul.stop())
        eventually(lambda: "consul" in proxy.app.provider_errors, 2.0)
        assert proxy.backend() == "blue"

        consul.kv_put(f"{ROOT}/tcp/services/app/loadbalancer/servers/0/address",
                      f"127.0.0.1:{green}")
        consul_loop.run(consul.start())

        eventually(lambda: proxy.backend() == "green", 8.0)
        assert not proxy.app.provider_errors
    finally:
        proxy.close()


def test_a_value_that_is_not_utf8_keeps_the_last_good_config(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    write_route(consul, backends.whoami("blue"))
    proxy = router()

    consul.kv_put(f"{ROOT}/tcp/routers/app/rule", b"HostSNI(`\xff`)")

    eventually(lambda: "consul" in proxy.app.provider_errors, 1.0)
    assert "not UTF-8" in proxy.app.provider_errors["consul"]
    assert proxy.backend() == "blue"


def test_the_root_key_and_token_are_honoured(backends: Backends) -> None:
    with running_consul(token="s3cret") as (consul, _):
        consul.kv_put("edge/tcp/routers/app/rule", "HostSNI(`*`)")
        consul.kv_put("edge/tcp/routers/app/service", "app")
        consul.kv_put("edge/tcp/services/app/loadbalancer/servers/0/address", "127.0.0.1:1")
        [good] = consul_providers(ConsulOptions.model_validate(
            {"endpoints": [consul.address], "rootKey": "edge", "token": "s3cret"}))
        [refused] = consul_providers(ConsulOptions.model_validate(
            {"endpoints": [consul.address], "rootKey": "edge"}))

        loaded, failed = good.load(), refused.load()

    assert loaded.config is not None and list(loaded.config.tcp.routers) == ["app"]
    assert failed.config is None and "HTTP 403" in failed.error


def test_tls_alone_switches_the_endpoint_to_https_as_traefik_does(
        ca: Any, tmp_path: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    with running_consul(tls=server) as (consul, _):
        consul.kv_put(f"{ROOT}/tcp/routers/app/rule", "HostSNI(`*`)")
        [provider] = consul_providers(ConsulOptions.model_validate(
            {"endpoints": [consul.address], "tls": {"ca": ca.cert_pem.bytes().decode()}}))

        update = provider.load()

    assert update.config is not None and list(update.config.tcp.routers) == ["app"], update.error


def test_the_first_endpoint_that_answers_is_used(consul: ConsulStandIn) -> None:
    consul.kv_put(f"{ROOT}/tcp/routers/app/rule", "HostSNI(`*`)")
    [provider] = consul_providers(ConsulOptions.model_validate(
        {"endpoints": ["127.0.0.1:1", consul.address]}))

    update = provider.load()

    assert update.config is not None, update.error
    assert list(update.config.tcp.routers) == ["app"]


def test_an_empty_prefix_is_an_empty_configuration(consul: ConsulStandIn) -> None:
    [provider] = consul_providers(ConsulOptions.model_validate({"endpoints": [consul.address]}))

    update = provider.load()

    assert update.config is not None and not update.config.tcp.routers, update.error


def test_listing_entries_decode_base64_values_and_skip_folders() -> None:
    listing = [
        {"Key": "traefik/", "Value": None, "Flags": 0, "CreateIndex": 5, "ModifyIndex": 5},
        {"Key": "traefik/tcp/routers/r/rule", "Value": "SG9zdFNOSShgKmAp", "Flags": 0,
         "CreateIndex": 6, "ModifyIndex": 6, "LockIndex": 0},
        {"Key": "traefik/tcp/routers/r/tls", "Value": None},
    ]

    assert pairs_from_kv_listing(listing) == {"traefik/tcp/routers/r/rule": "HostSNI(`*`)",
                                              "traefik/tcp/routers/r/tls": ""}
    assert pairs_from_kv_listing(None) == {}
    with pytest.raises(SourceUnreadable, match="not UTF-8"):
        pairs_from_kv_listing([{"Key": "traefik/x", "Value": "/w=="}])


def test_namespaces_make_one_provider_each_and_the_wildcard_is_refused() -> None:
    providers = consul_providers(ConsulOptions.model_validate({"namespaces": ["a", "b"]}))

    assert [p.name for p in providers] == ["consul-a", "consul-b"]
    with pytest.raises(ConfigLoadError, match="wildcard"):
        consul_providers(ConsulOptions.model_validate({"namespaces": ["*"]}))
