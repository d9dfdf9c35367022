"""The consulCatalog provider against the stand-in Consul: real connections to real backends.

The services are registered in tests/consulkit.py's stand-in of Consul's HTTP API (no
Consul server can be installed here); Switchyard reads and watches it over loopback.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.config.loader import ConfigLoadError, static_from_dict
from switchyard.providers.consul_catalog import ConsulCatalogOptions, consul_catalog_providers
from switchyard.server import Switchyard
from tests.consulkit import ConsulStandIn, running_consul
from tests.harness import Backends, LoopThread, connect, greeting_name, stop_router
from tests.mwkit import echo_backend, echoed

TCP_TAGS = ("traefik.tcp.routers.db.rule=HostSNI(`*`)", "traefik.tcp.routers.db.entrypoints=ep")


@pytest.fixture
def consul() -> Iterator[ConsulStandIn]:
    with running_consul() as (standin, _):
        yield standin


@pytest.fixture
def consul_and_loop() -> Iterator[tuple[ConsulStandIn, LoopThread]]:
    with running_consul() as running:
        yield running


class Router:
    """Switchyard with the consulCatalog provider as its only provider, on its own loop."""

    def __init__(self, consul: ConsulStandIn, **options: Any) -> None:
        self.loop = LoopThread()
        static, issues = static_from_dict({
            "entryPoints": {"ep": {"address": "127.0.0.1:0"}},
            "providers": {"providersThrottleDuration": "50ms", "consulCatalog": {
                "endpoint": {"address": consul.address}, "watch": True, **options}},
        }, "test")
        assert not issues, issues
        self.app = Switchyard(static)
        self.loop.run(self.app.start())
        self.port = self.app.entrypoints["ep"].port

    def backend(self) -> str:
        with connect(self.port) as conn:
            return greeting_name(conn)

    def backends_seen(self, tries: int = 6) -> set[str]:
        return {self.backend() for _ in range(tries)}

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
    """Seconds until ``check`` held; fails after ``within`` seconds."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (OSError, AssertionError):
            pass
        assert time.monotonic() - start < within, f"not true within {within} s"
        time.sleep(0.02)


def test_a_tagged_service_routes_connections_to_its_instance(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS)

    proxy = router()

    assert proxy.backend() == "primary"
    status = proxy.app.runtime.routers["db@consulcatalog"]
    assert (status.status, status.config.rule) == ("enabled", "HostSNI(`*`)")


def test_a_service_without_tags_gets_the_default_http_router_on_its_name(
        consul: ConsulStandIn, router: Callable[..., Router]) -> None:
    with echo_backend() as port:
        consul.register("api", port, service_id="api-1")
        proxy = router(defaultRule="Host(`{{ normalize .Name }}.example.com`)")

        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.request("GET", "/hello", headers={"Host": "api.example.com"})
        answer = conn.getresponse()
        body = answer.read()
        conn.request("GET", "/hello", headers={"Host": "other.example.com"})
        other = conn.getresponse()
        other.read()
        conn.close()

    assert answer.status == 200
    assert echoed(body)["target"] == "/hello"
    assert other.status == 404


def test_the_node_address_serves_when_the_service_has_none(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    port = backends.whoami("primary")
    consul.register("db", port, tags=TCP_TAGS, node="worker", node_address="127.0.0.1",
                    address="")

    proxy = router()

    assert proxy.backend() == "primary"
    balancer = proxy.app.runtime.services["db@consulcatalog"].config.load_balancer
    assert [s.address for s in balancer.servers] == [f"127.0.0.1:{port}"]


def test_with_watch_a_new_instance_takes_traffic_within_a_second(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS, service_id="db-1")
    proxy = router()
    assert proxy.backend() == "primary"

    consul.register("db", backends.whoami("replica"), tags=TCP_TAGS, service_id="db-2",
                    node="node-2")

    assert eventually(lambda: proxy.backends_seen() == {"primary", "replica"}, 1.0) < 1.0
    # The watch is a pair of blocking queries on the index, not polling.
    assert any(r.startswith("/v1/catalog/services?index=") for r in consul.requests)
    assert any(r.startswith("/v1/health/state/any?index=") for r in consul.requests)


def test_an_instance_going_critical_is_taken_out_and_back_in_when_passing(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS, service_id="db-1")
    consul.register("db", backends.whoami("replica"), tags=TCP_TAGS, service_id="db-2",
                    node="node-2")
    proxy = router()
    assert proxy.backends_seen() == {"primary", "replica"}

    consul.set_status("db-2", "critical", node="node-2")
    assert eventually(lambda: proxy.backends_seen() == {"primary"}, 1.0) < 1.0

    consul.set_status("db-2", "warning", node="node-2")  # strictChecks' default lets it in
    assert eventually(lambda: proxy.backends_seen() == {"primary", "replica"}, 1.0) < 1.0


def test_strict_checks_passing_only_leaves_warning_instances_out(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS, service_id="db-1")
    consul.register("db", backends.whoami("replica"), tags=TCP_TAGS, service_id="db-2",
                    node="node-2", status="warning")

    proxy = router(strictChecks=["passing"])

    assert proxy.backends_seen() == {"primary"}


def test_without_watch_the_catalog_is_polled_every_refresh_interval(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS, service_id="db-1")
    proxy = router(watch=False, refreshInterval="200ms")
    assert proxy.backend() == "primary"

    # The new instance first: a poll between the two writes still finds one to route to.
    consul.register("db", backends.whoami("replica"), tags=TCP_TAGS, service_id="db-2")
    consul.deregister("db-1")

    assert eventually(lambda: proxy.backend() == "replica", 2.0)
    assert not any("index=" in r for r in consul.requests)


def test_consul_going_away_keeps_the_last_good_config_and_it_reconnects(
        consul_and_loop: tuple[ConsulStandIn, LoopThread], backends: Backends) -> None:
    consul, consul_loop = consul_and_loop
    consul.register("db", backends.whoami("primary"), tags=TCP_TAGS, service_id="db-1")
    proxy = Router(consul)
    try:
        assert proxy.backend() == "primary"

        consul_loop.run(consul.stop())
        eventually(lambda: "consulcatalog" in proxy.app.provider_errors, 2.0)
        assert proxy.backend() == "primary"  # the last good configuration still routes

        consul.deregister("db-1")
        consul.register("db", backends.whoami("replica"), tags=TCP_TAGS, service_id="db-2")
        consul_loop.run(consul.start())  # the same port, as a restarted agent

        # Reconnection backs off up to 5 s; the new state then arrives as any change does.
        eventually(lambda: proxy.backend() == "replica", 8.0)
        assert not proxy.app.provider_errors
    finally:
        proxy.close()


def test_exposed_by_default_false_routes_only_enabled_services(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=(*TCP_TAGS, "traefik.enable=true"))
    consul.register("cache", backends.whoami("cache"), tags=(
        "traefik.tcp.routers.cache.rule=HostSNI(`*`)", "traefik.tcp.routers.cache.priority=9"))

    proxy = router(exposedByDefault=False)

    assert proxy.backends_seen() == {"primary"}
    assert "cache@consulcatalog" not in proxy.app.runtime.routers
    assert any("tag=traefik.enable%3Dtrue" in r for r in consul.requests)


def test_constraints_select_services_by_their_tags(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=(*TCP_TAGS, "team-a"))
    consul.register("cache", backends.whoami("cache"), tags=(
        "traefik.tcp.routers.cache.rule=HostSNI(`*`)", "traefik.tcp.routers.cache.priority=9",
        "team-b"))

    proxy = router(constraints="Tag(`team-a`) || TagRegex(`^team-[c-z]$`)")

    assert proxy.backends_seen() == {"primary"}


def test_a_custom_prefix_reads_its_own_tags_only(
        consul: ConsulStandIn, router: Callable[..., Router], backends: Backends) -> None:
    consul.register("db", backends.whoami("primary"), tags=(
        "edge.tcp.routers.db.rule=HostSNI(`*`)", "traefik.tcp.routers.db.priority=-5"))

    proxy = router(prefix="edge")

    assert proxy.backend() == "primary"
    assert proxy.app.runtime.routers["db@consulcatalog"].config.priority == 0


def test_the_token_and_datacenter_are_sent_and_a_refusal_is_the_providers_error(
        backends: Backends) -> None:
    with running_consul(token="s3cret", datacenter="east") as (consul, _):
        consul.register("db", backends.whoami("primary"), tags=TCP_TAGS)
        endpoint = {"address": consul.address, "token": "s3cret", "datacenter": "east"}
        [good] = consul_catalog_providers(ConsulCatalogOptions.model_validate(
            {"endpoint": endpoint}))
        [refused] = consul_catalog_providers(ConsulCatalogOptions.model_validate(
            {"endpoint": {**endpoint, "token": "wrong"}}))

        loaded, failed = good.load(), refused.load()

    assert loaded.config is not None and "db" in loaded.config.tcp.routers, loaded.error
    assert failed.config is None and "HTTP 403" in failed.error
    assert all("dc=east" in request for request in consul.requests)


def test_the_agent_is_reached_over_https_with_the_configured_ca(
        backends: Backends, ca: Any, tmp_path: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with running_consul(tls=server) as (consul, _):
        consul.register("db", backends.whoami("primary"), tags=TCP_TAGS)
        [trusting] = consul_catalog_providers(ConsulCatalogOptions.model_validate({"endpoint": {
            "address": consul.address, "scheme": "https",
            "tls": {"ca": str(tmp_path / "ca.pem")}}}))
        [untrusting] = consul_catalog_providers(ConsulCatalogOptions.model_validate({
            "endpoint": {"address": consul.address, "scheme": "https"}}))

        loaded, failed = trusting.load(), untrusting.load()

    assert loaded.config is not None and "db" in loaded.config.tcp.routers, loaded.error
    assert failed.config is None and "certificate verify failed" in failed.error


def test_namespaces_make_one_provider_each() -> None:
    providers = consul_catalog_providers(ConsulCatalogOptions.model_validate(
        {"namespaces": ["ns-a", "ns-b"]}))

    assert [p.name for p in providers] == ["consulcatalog-ns-a", "consulcatalog-ns-b"]


@pytest.mark.parametrize(("options", "message"), [
    ({"connectAware": True}, "connectAware is not supported by Switchyard"),
    ({"constraints": "Label(`a`, `b`)"}, "constraints: .*unknown function Label"),
    ({"defaultRule": "{{ if .Name }}x{{ end }}"}, "defaultRule: .*'if' is not supported"),
    ({"strictChecks": ["healthy"]}, "strictChecks: healthy"),
    ({"endpoint": {"address": "ftp://consul:21"}}, "endpoint.address"),
])
def test_options_switchyard_cannot_honour_are_refused_naming_them(
        options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigLoadError, match=message):
        consul_catalog_providers(ConsulCatalogOptions.model_validate(options))
