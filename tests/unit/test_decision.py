"""The routing decision: `explain` and the data plane must give the same answer.

The data plane here is the real `ClientConnection`, fed real ClientHello bytes
through a transport that only records what it is asked to do: no socket, so
hypothesis can try many routing tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.build import build_runtime
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
from switchyard.config.static import StaticConfig
from switchyard.explain import explain
from switchyard.observability.record import CloseReason, Phase
from switchyard.proxy.connection import ClientConnection
from switchyard.proxy.decision import Action, ChallengeResponder, decide
from switchyard.routing.table import HTTPSRoute, RouteList, RoutingTable
from switchyard.rules import ConnMeta, parse_rule
from switchyard.runtime import Runtime
from tests.unit.test_clienthello import python_hello

STATIC = {"entryPoints": {"ep": {"address": ":443"}}}


class RecordingTransport:
    """Stands in for the client's transport: remembers writes and whether it was closed."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 443)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Host:
    """The entry point as a connection sees it."""

    def __init__(self, table: RoutingTable) -> None:
        self.name = "ep"
        self.table = table
        self.loop = asyncio.get_running_loop()
        self.access_log = None
        self.acme_resolvers: Sequence[ChallengeResponder] = ()

    def proxy_trust(self, client_ip: str) -> bool | None:
        return None

    def opened(self, conn: ClientConnection) -> None:
        pass

    def closed(self, conn: ClientConnection) -> None:
        pass


def build(dynamic: dict[str, Any]) -> tuple[StaticConfig, Runtime]:
    static, issues = static_from_dict(STATIC, "test")
    assert not issues
    config, issues = load_dynamic_from_dict(dynamic, "test")
    return static, build_runtime(static, {"file": config})


def data_plane(runtime: Runtime, client_ip: str, first_bytes: bytes) -> ClientConnection:
    """Run a real ClientConnection up to its decision (dialling is where it stops here)."""
    async def run() -> ClientConnection:
        conn = ClientConnection(Host(runtime.tables["ep"]))
        conn.connection_made(RecordingTransport((client_ip, 50000)))  # type: ignore[arg-type]
        if conn.record.phase is not Phase.DIALING:
            conn.data_received(first_bytes)
        if conn.record.reason is None and not conn.record.server and not conn.record.http:
            await asyncio.sleep(0)  # a rate limit answers in a task of its own, then dials
        if conn.record.reason is None:
            conn.close(CloseReason.SHUTDOWN)  # stop the dial: the decision is what we compare
        return conn
    return asyncio.run(run())


def hello(sni: str | None, alpn: tuple[str, ...]) -> bytes:
    return python_hello(sni, alpn)


# -- generated routing tables -------------------------------------------------------------

RULES = ["HostSNI(`a.example.com`)", "HostSNI(`b.example.com`)", "HostSNI(`*`)",
         "HostSNI(`*.example.com`)", "ClientIP(`10.0.0.0/8`)", "HostSNI(`a.example.com`) && ALPN(`h2`)",
         "!ClientIP(`192.0.2.0/24`)", "HostSNIRegexp(`^b`) || ClientIP(`192.0.2.7`)"]
TLS_KINDS = [None, {"passthrough": True}, {}, {"options": "nosuch"}, {"options": "h1only"}]


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    routers = {}
    for index in range(draw(st.integers(1, 5))):
        router: dict[str, Any] = {"rule": draw(st.sampled_from(RULES)),
                                  "service": draw(st.sampled_from(["up", "empty", "split"])),
                                  "entryPoints": ["ep"]}
        tls = draw(st.sampled_from(TLS_KINDS))
        if tls is not None:
            router["tls"] = tls
        middlewares = draw(st.lists(st.sampled_from(["office", "none-allowed", "two", "pool",
                                                     "rate"]),
                                    max_size=2, unique=True))
        if middlewares:
            router["middlewares"] = middlewares
        if draw(st.booleans()):
            router["priority"] = draw(st.integers(-2, 40))
        routers[f"r{index}"] = router
    # The strategies and weights of the balancer: explain's peek must pick what pick picks.
    strategy = draw(st.sampled_from(["", "wrr", "p2c", "hrw", "leastConn"]))
    weights = draw(st.lists(st.sampled_from([None, 0, 1, 3]), min_size=3, max_size=3))
    up = [{"address": f"127.0.0.1:{9 + i}", **({} if w is None else {"weight": w})}
          for i, w in enumerate(weights)]
    return {"tcp": {
        "routers": routers,
        "middlewares": {"office": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}},
                        "none-allowed": {"inFlightConn": {"amount": 0}},
                        "two": {"inFlightConn": {"amount": 2}},
                        "pool": {"inFlightConn": {"amount": 1, "scope": "global"}},
                        "rate": {"rateLimit": {"average": 1, "period": "1m"}}},
        "services": {"up": {"loadBalancer": {"servers": up, "strategy": strategy}},
                     "empty": {"loadBalancer": {"servers": []}},
                     "split": {"weighted": {"services": [{"name": "up", "weight": 0},
                                                         {"name": "empty", "weight": 1}]}}},
    }, "tls": {"options": {"h1only": {"alpnProtocols": ["http/1.1"], "sniStrict": True}}}}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dynamic=configs(),
       client_ip=st.sampled_from(["10.1.2.3", "192.0.2.7", "198.51.100.9"]),
       tls=st.booleans(),
       sni=st.sampled_from([None, "a.example.com", "b.example.com", "c.example.com"]),
       alpn=st.sampled_from([(), ("h2",), ("h2", "http/1.1"), ("x-custom",)]))
def test_explain_says_what_the_data_plane_does(dynamic: dict[str, Any], client_ip: str,
                                                tls: bool, sni: str | None,
                                                alpn: tuple[str, ...]) -> None:
    static, runtime = build(dynamic)
    said = explain(runtime, static, "ep", client_ip, tls=tls, sni=sni if tls else None,
                   alpn=alpn if tls else ())
    done = data_plane(runtime, client_ip, hello(sni, alpn) if tls else b"plain bytes")
    record = done.record
    if said.action == "forward":
        assert record.reason is CloseReason.SHUTDOWN  # it got as far as dialling
        assert (record.router, record.server) == (said.router, said.server)
    elif said.action == "http":
        assert record.http and record.router == ""  # handed to the HTTP server
    else:
        assert record.reason is not None and record.reason.value == said.close_reason
        assert record.router == (said.router or "")


def test_broken_tls_options_are_a_tls_config_close_in_both() -> None:
    static, runtime = build({"tcp": {
        "routers": {"broken-opts": {"rule": "HostSNI(`x.example.com`)", "service": "up",
                                    "entryPoints": ["ep"], "tls": {"options": "nosuch"}}},
        "services": {"up": {"loadBalancer": {"servers": [{"address": "127.0.0.1:9"}]}}}}})
    said = explain(runtime, static, "ep", "10.0.0.1", tls=True, sni="x.example.com")
    assert said.action == "refuse" and said.close_reason == "tls_config"
    assert said.router == "broken-opts@file"
    assert not said.outcome.startswith("routed")
    done = data_plane(runtime, "10.0.0.1", hello("x.example.com", ()))
    assert done.record.reason is CloseReason.TLS_CONFIG
    assert done.transport is not None and done.transport.is_closing()


def test_decision_refuses_with_the_first_refusing_middleware_and_lists_those_reached() -> None:
    _, runtime = build({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "up", "entryPoints": ["ep"],
                          "middlewares": ["office", "none"]}},
        "middlewares": {"office": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}},
                        "none": {"inFlightConn": {"amount": 0}}},
        "services": {"up": {"loadBalancer": {"servers": [{"address": "127.0.0.1:9"}]}}}}})
    table = runtime.tables["ep"]
    outside = decide(table, ConnMeta(None, (), "192.0.2.1", False))
    assert outside.reason is CloseReason.REJECTED
    assert [m.name for m, _ in outside.verdicts] == ["office@file"]
    inside = decide(table, ConnMeta(None, (), "10.0.0.1", False))
    assert [(m.name, r is None) for m, r in inside.verdicts] == [("office@file", True),
                                                                  ("none@file", False)]


def test_explain_peeks_at_the_balancer_without_moving_it() -> None:
    _, runtime = build(yaml.safe_load("""
tcp:
  routers: {r: {rule: "HostSNI(`*`)", service: up, entryPoints: [ep]}}
  services: {up: {loadBalancer: {servers: [{address: "127.0.0.1:9"}, {address: "127.0.0.1:10"}]}}}
"""))
    table = runtime.tables["ep"]
    meta = ConnMeta(None, (), "10.0.0.1", False)
    from switchyard.proxy.decision import peek
    looked = [decide(table, meta, choose=peek).server for _ in range(3)]
    assert looked[0] is looked[1] is looked[2]
    picked = [decide(table, meta).server for _ in range(2)]
    assert picked[0] is looked[0] and picked[1] is not picked[0]
    assert decide(table, meta).action is Action.FORWARD


# -- TLS dispatch between TCP routers and HTTPS routers (Traefik's order) -------------------


def https_route(name: str, rule: str, priority: int = 0) -> HTTPSRoute:
    return HTTPSRoute(name, parse_rule(rule), priority or len(rule))


def with_https(table: RoutingTable, *routes: HTTPSRoute) -> RoutingTable:
    ordered = sorted(routes, key=lambda r: -r.priority)
    ranked = [dataclasses.replace(r, rank=i) for i, r in enumerate(ordered)]
    return dataclasses.replace(table, https=RouteList(ranked), serves_http=True,
                               default_https=https_route("default", "HostSNI(`*`)", -1))


def tcp_table(routers: dict[str, dict[str, Any]]) -> RoutingTable:
    for router in routers.values():
        router.setdefault("service", "up")
        router.setdefault("entryPoints", ["ep"])
    _, runtime = build({"tcp": {"routers": routers, "services": {
        "up": {"loadBalancer": {"servers": [{"address": "127.0.0.1:9"}]}}}}})
    return runtime.tables["ep"]


def tls(sni: str | None, client_ip: str = "10.0.0.1") -> ConnMeta:
    return ConnMeta(sni, (), client_ip, True)


def test_an_https_host_beats_a_tcp_router_for_the_same_name_whatever_the_priorities() -> None:
    table = with_https(tcp_table({"db": {"rule": "HostSNI(`a.example.com`)", "priority": 9999,
                                         "tls": {"passthrough": True}}}),
                       https_route("web@file", "HostSNI(`a.example.com`)", 1))
    found = decide(table, tls("a.example.com"))
    assert found.action is Action.HTTP and found.https is not None
    assert found.https.name == "web@file"


def test_a_specific_tcp_route_beats_the_https_catch_all_which_beats_the_tcp_catch_all() -> None:
    table = with_https(tcp_table({
        "db": {"rule": "HostSNI(`db.example.com`)", "tls": {"passthrough": True}},
        "rest": {"rule": "HostSNI(`*`)", "tls": {"passthrough": True}}}),
        https_route("web@file", "HostSNI(`*`)", -1))
    assert decide(table, tls("db.example.com")).route is not None
    other = decide(table, tls("other.example.com"))
    assert other.action is Action.HTTP and other.https is not None
    assert other.https.name == "web@file"
    only_tcp = dataclasses.replace(with_https(table), serves_http=True)
    assert decide(only_tcp, tls("other.example.com")).route is not None


def test_a_catch_all_with_a_client_ip_condition_is_not_a_catch_all() -> None:
    table = with_https(tcp_table({"office": {"rule": "HostSNI(`*`) && ClientIP(`10.0.0.0/8`)",
                                             "tls": {"passthrough": True}}}),
                       https_route("web@file", "HostSNI(`*`)", -1))
    found = decide(table, tls("x.example.com"))
    assert found.route is not None and found.route.name == "office@file"


def test_nothing_matches_tls_the_default_https_handler_takes_it() -> None:
    table = with_https(tcp_table({"db": {"rule": "HostSNI(`db.example.com`)",
                                         "tls": {"passthrough": True}}}))
    found = decide(table, tls("nobody.example.com"))
    assert found.action is Action.HTTP and found.https is not None
    assert found.https.name == "default"


def test_plain_bytes_no_tcp_router_matches_go_to_the_http_server() -> None:
    table = with_https(tcp_table({"office": {"rule": "ClientIP(`10.0.0.0/8`)"}}))
    assert decide(table, ConnMeta(None, (), "192.0.2.1", False)).action is Action.HTTP
    assert decide(table, ConnMeta(None, (), "10.0.0.1", False)).route is not None


def test_an_https_router_switches_the_early_path_off() -> None:
    plain_only = tcp_table({"smtp": {"rule": "HostSNI(`*`)"}})
    assert plain_only.early_path
    assert not with_https(plain_only, https_route("web@file", "HostSNI(`a.example.com`)")).early_path
    assert dataclasses.replace(plain_only, serves_http=True).early_path  # plain HTTP does not


def test_after_a_postgres_ssl_request_only_tcp_tls_routers_are_consulted() -> None:
    table = with_https(tcp_table({}), https_route("web@file", "HostSNI(`pg.example.com`)"))
    found = decide(table, tls("pg.example.com"), postgres=True)
    assert (found.action, found.reason) == (Action.REFUSE, CloseReason.NO_ROUTE)


# -- balancing strategies: a live explain names the server the next connection gets --------


def data_plane_keeping(runtime: Runtime, client_ip: str, keep: bool) -> ClientConnection:
    """As `data_plane`, but with `keep` the connection stays open on its server afterwards."""
    async def run() -> ClientConnection:
        conn = ClientConnection(Host(runtime.tables["ep"]))
        conn.connection_made(RecordingTransport((client_ip, 50000)))  # type: ignore[arg-type]
        if not keep:
            conn.close(CloseReason.SHUTDOWN)
        return conn
    return asyncio.run(run())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(["wrr", "p2c", "hrw", "leastConn"]),
       weights=st.lists(st.sampled_from([0, 1, 2, 5]), min_size=1, max_size=4),
       steps=st.lists(st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "192.0.2.9"]),
                                st.booleans()), min_size=1, max_size=12))
def test_live_explain_names_the_server_each_strategy_picks_next(
        strategy: str, weights: list[int], steps: list[tuple[str, bool]]) -> None:
    servers = [{"address": f"127.0.0.1:{20 + i}", "weight": w} for i, w in enumerate(weights)]
    static, runtime = build({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"]}},
        "services": {"s": {"loadBalancer": {"servers": servers, "strategy": strategy}}}}})
    for client_ip, keep in steps:
        said = explain(runtime, static, "ep", client_ip, tls=False, live=True)
        assert said.service is not None and said.service.strategy == strategy
        done = data_plane_keeping(runtime, client_ip, keep)
        assert done.record.server == (said.server or "")
        if said.server is None:
            assert said.close_reason == "no_server"
