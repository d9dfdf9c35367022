"""The indexed routing table picks exactly what Traefik's ordered scan would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.routing.table import Route, RouteList, sort_routes
from switchyard.rules import ConnMeta, parse_rule
from switchyard.services import DEFAULT_TRANSPORT, LoadBalancer

HOSTS = ["a.example", "b.example", "x.a.example", "A.EXAMPLE", "c.test"]
RULES = [
    *(f"HostSNI(`{h}`)" for h in HOSTS),
    "HostSNI(`a.example`) || HostSNI(`c.test`)",
    "HostSNI(`*.example`)",
    "HostSNIRegexp(`^[ab][.]`)",
    "HostSNIRegexp(`example`)",
    "HostSNIRegexp(`(?i)^C`)",
    "HostSNIRegexp(`^$`)",
    "HostSNI(`*`)",
    "ClientIP(`10.0.0.0/8`)",
    "HostSNI(`b.example`) && ClientIP(`10.1.2.3`)",
    "!HostSNI(`a.example`)",
    "ALPN(`h2`)",
]
SERVICE = LoadBalancer("svc@test", [], DEFAULT_TRANSPORT)


def make_routes(spec: list[tuple[int, int]]) -> list[Route]:
    return sort_routes([
        Route(name=f"r{i}", rule=parse_rule(RULES[rule]), priority=priority, middlewares=(),
              service=SERVICE, service_name="svc@test", tls=True, passthrough=True)
        for i, (rule, priority) in enumerate(spec)
    ])


@settings(max_examples=300)
@given(
    spec=st.lists(st.tuples(st.integers(0, len(RULES) - 1), st.integers(-3, 40)), max_size=12),
    sni=st.sampled_from([*HOSTS, "nope.example", "", "b.example."]),
    ip=st.sampled_from(["10.1.2.3", "192.0.2.1"]),
    alpn=st.sampled_from([(), ("h2",)]),
)
def test_index_agrees_with_the_ordered_scan(spec: list[tuple[int, int]], sni: str, ip: str,
                                            alpn: tuple[str, ...]) -> None:
    routes = make_routes(spec)
    meta = ConnMeta(sni or None, alpn, ip, True)
    expected = next((r for r in routes if r.rule.matches(meta)), None)
    assert RouteList(routes).match(meta) is expected


def test_higher_priority_scan_rule_beats_an_indexed_exact_host() -> None:
    routes = make_routes([(0, 5), (7, 50)])  # HostSNI(a.example) at 5, regexp at 50
    assert RouteList(routes).match(ConnMeta("a.example", (), "1.1.1.1", True)).name == "r1"  # type: ignore[union-attr]


def test_exact_host_lookup_ignores_case() -> None:
    routes = make_routes([(0, 1)])
    assert RouteList(routes).match(ConnMeta("A.Example", (), "1.1.1.1", True)) is routes[0]
