"""Config -> runtime: per-element errors as Traefik reports them, the rest keeps running."""

from __future__ import annotations

from typing import Any

import yaml

from switchyard.build import build_runtime
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
from switchyard.rules import ConnMeta
from switchyard.runtime import Runtime
from switchyard.services import LoadBalancer, WeightedService


def build(dynamic: str, entrypoints: tuple[str, ...] = ("ep",), **static: Any) -> Runtime:
    raw_static = {"entryPoints": {name: {"address": f"127.0.0.1:{9000 + i}"}
                                  for i, name in enumerate(entrypoints)}, **static}
    settings, _ = static_from_dict(raw_static, "test")
    config, issues = load_dynamic_from_dict(yaml.safe_load(dynamic), "test")
    return build_runtime(settings, {"file": config}, issues)


SERVICE = """
  services:
    svc:
      loadBalancer: {servers: [{address: "127.0.0.1:1"}]}
"""


def errors(runtime: Runtime, router: str) -> list[str]:
    return runtime.routers[router].errors


def test_good_router_runs_next_to_a_broken_one() -> None:
    runtime = build("""
tcp:
  routers:
    good: {rule: "HostSNI(`*`)", service: svc}
    bad: {rule: "HostSNI(`a`", service: svc}
""" + SERVICE)
    assert runtime.routers["good@file"].status == "enabled"
    assert runtime.routers["bad@file"].status == "disabled"
    assert "invalid rule" in errors(runtime, "bad@file")[0]
    route = runtime.tables["ep"].plain.match(ConnMeta(None, (), "127.0.0.1", False))
    assert route is not None and route.name == "good@file"


def test_router_name_with_at_sign_is_disabled() -> None:
    runtime = build('tcp:\n  routers:\n    "a@b": {rule: "HostSNI(`*`)", service: svc}\n' + SERVICE)
    router = runtime.routers["a@b@file"]
    assert router.status == "disabled"
    assert 'must not contain "@"' in router.errors[0]


def test_missing_service_and_missing_rule_are_reported_in_traefiks_order() -> None:
    runtime = build("""
tcp:
  routers:
    no-service: {rule: "HostSNI(`*`)"}
    no-rule: {service: svc}
    unknown-service: {rule: "HostSNI(`*`)", service: nowhere}
""" + SERVICE)
    assert errors(runtime, "no-service@file") == ["the service is missing on the router"]
    assert errors(runtime, "no-rule@file") == ["router has no rule"]
    assert errors(runtime, "unknown-service@file") == ['the service "nowhere@file" does not exist']


def test_host_sni_without_tls_checks_only_the_first_value() -> None:
    runtime = build("""
tcp:
  routers:
    star-first: {rule: "HostSNI(`*`) || HostSNI(`a.example`)", service: svc}
    domain-first: {rule: "HostSNI(`a.example`) || HostSNI(`*`)", service: svc}
    regexp: {rule: "HostSNIRegexp(`^a`)", service: svc}
""" + SERVICE)
    assert runtime.routers["star-first@file"].status == "enabled"
    assert "no TLS on router" in errors(runtime, "domain-first@file")[0]
    assert runtime.routers["regexp@file"].status == "enabled"


def test_priority_above_the_maximum_is_refused() -> None:
    runtime = build(f"""
tcp:
  routers:
    huge: {{rule: "HostSNI(`*`)", service: svc, priority: {2**63 - 1000}}}
    fine: {{rule: "HostSNI(`*`)", service: svc, priority: {2**63 - 1001}}}
""" + SERVICE)
    assert "exceeds the max priority" in errors(runtime, "huge@file")[0]
    assert runtime.routers["fine@file"].status == "enabled"


def test_default_priority_is_the_rule_length_and_minus_one_for_the_catch_all() -> None:
    runtime = build("""
tcp:
  routers:
    catch-all: {rule: "HostSNI(`*`)", service: svc}
    by-ip: {rule: "ClientIP(`10.0.0.0/8`)", service: svc}
    explicit: {rule: "ClientIP(`10.0.0.0/8`)", service: svc, priority: 7}
""" + SERVICE)
    assert runtime.routers["catch-all@file"].priority == -1
    assert runtime.routers["by-ip@file"].priority == len("ClientIP(`10.0.0.0/8`)")
    assert runtime.routers["explicit@file"].priority == 7


def test_unknown_middleware_disables_the_router() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: svc, middlewares: [ghost]}
""" + SERVICE)
    assert errors(runtime, "r@file") == ['middleware "ghost@file" does not exist']


def test_empty_allow_list_is_an_error_on_the_middleware_and_the_router() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: svc, middlewares: [empty]}
  middlewares:
    empty: {ipAllowList: {sourceRange: []}}
""" + SERVICE)
    assert runtime.middlewares["empty@file"].status == "disabled"
    assert "sourceRange is empty" in errors(runtime, "r@file")[0]


def test_several_middleware_types_keep_the_last_and_warn() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: svc, middlewares: [both]}
  middlewares:
    both:
      inFlightConn: {amount: 1}
      ipAllowList: {sourceRange: ["10.0.0.1"]}
""" + SERVICE)
    middleware = runtime.middlewares["both@file"]
    assert middleware.status == "warning"
    assert "only ipAllowList applies" in middleware.errors[0]
    assert runtime.routers["r@file"].status == "enabled"


def test_unknown_entry_point_is_a_warning_unless_none_is_left() -> None:
    runtime = build("""
tcp:
  routers:
    some: {rule: "HostSNI(`*`)", service: svc, entryPoints: [ep, nope]}
    none: {rule: "HostSNI(`*`)", service: svc, entryPoints: [nope]}
""" + SERVICE)
    assert runtime.routers["some@file"].status == "warning"
    assert runtime.routers["some@file"].using == ["ep"]
    assert "no valid entryPoint for this router" in errors(runtime, "none@file")


def test_routers_without_entry_points_attach_to_every_default_one() -> None:
    runtime = build('tcp:\n  routers:\n    r: {rule: "HostSNI(`*`)", service: svc}\n' + SERVICE,
                    entrypoints=("a", "b", "traefik"))
    assert runtime.routers["r@file"].using == ["a", "b"]


def test_weighted_cycle_is_reported() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: one}
  services:
    one: {weighted: {services: [{name: two}]}}
    two: {weighted: {services: [{name: one}]}}
""")
    assert "recursion detected" in errors(runtime, "r@file")[0]


def test_nested_weighted_services_build() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: top}
  services:
    top: {weighted: {services: [{name: mid, weight: 3}, {name: leaf-b, weight: 1}]}}
    mid: {weighted: {services: [{name: leaf-a}]}}
    leaf-a: {loadBalancer: {servers: [{address: "127.0.0.1:1"}]}}
    leaf-b: {loadBalancer: {servers: [{address: "127.0.0.1:2"}]}}
""")
    assert isinstance(runtime.service_objects["top@file"], WeightedService)
    picked = [runtime.service_objects["top@file"].pick() for _ in range(4)]
    assert sorted(p[0].address for p in picked if p) == ["127.0.0.1:1"] * 3 + ["127.0.0.1:2"]


def test_service_with_both_types_is_refused() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: both}
  services:
    both:
      loadBalancer: {servers: [{address: "127.0.0.1:1"}]}
      weighted: {services: [{name: x}]}
""")
    assert "multi-types service not supported" in errors(runtime, "r@file")[0]
    assert runtime.services["both@file"].status == "disabled"


def test_invalid_server_address_is_skipped_with_a_warning() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: svc}
  services:
    svc: {loadBalancer: {servers: [{address: "no-port"}, {address: "127.0.0.1:5"}]}}
""")
    service = runtime.service_objects["svc@file"]
    assert isinstance(service, LoadBalancer)
    assert [s.address for s in service.servers] == ["127.0.0.1:5"]
    assert runtime.services["svc@file"].status == "warning"


def test_references_with_a_provider_are_used_verbatim() -> None:
    runtime = build('tcp:\n  routers:\n    r: {rule: "HostSNI(`*`)", service: "svc@other"}\n'
                    + SERVICE)
    assert errors(runtime, "r@file") == ['the service "svc@other" does not exist']


def test_unchanged_load_balancer_survives_a_rebuild_with_its_health_state() -> None:
    dynamic = 'tcp:\n  routers:\n    r: {rule: "HostSNI(`*`)", service: svc}\n' + SERVICE
    first = build(dynamic)
    balancer = first.service_objects["svc@file"]
    assert isinstance(balancer, LoadBalancer)
    balancer.servers[0].up = False
    settings, _ = static_from_dict({"entryPoints": {"ep": {"address": ":9000"}}}, "t")
    config, _ = load_dynamic_from_dict(yaml.safe_load(dynamic), "test")
    second = build_runtime(settings, {"file": config}, previous=first)
    assert second.service_objects["svc@file"] is balancer
    assert not balancer.servers[0].up


def test_sni_index_and_ordered_rules_agree_on_the_highest_priority() -> None:
    runtime = build("""
tcp:
  routers:
    exact: {rule: "HostSNI(`a.example`)", service: svc, tls: {passthrough: true}}
    regexp-low: {rule: "HostSNIRegexp(`example`)", service: svc, tls: {passthrough: true}, priority: 1}
    regexp-high: {rule: "HostSNIRegexp(`^a[.]`)", service: svc, tls: {passthrough: true}, priority: 100}
""" + SERVICE)
    table = runtime.tables["ep"].tls
    meta = ConnMeta("a.example", (), "127.0.0.1", True)
    assert table.match(meta).name == "regexp-high@file"  # type: ignore[union-attr]
    assert table.match(ConnMeta("b.example", (), "1.2.3.4", True)).name == "regexp-low@file"  # type: ignore[union-attr]


def test_http_routers_are_built_beside_tcp_ones_with_their_own_errors() -> None:
    runtime = build('tcp:\n  routers:\n    r: {rule: "HostSNI(`*`)", service: svc}\n' + SERVICE
                    + 'http:\n  routers:\n    web: {rule: "Host(`a`)", service: x}\n')
    assert runtime.routers["r@file"].status == "enabled"
    web = runtime.http.routers["web@file"]
    assert web.status == "disabled"
    assert any('the service "x@file" does not exist' in e for e in web.errors)
    assert 'router "web@file"' in "\n".join(runtime.problems())


def test_udp_section_is_reported_as_unsupported() -> None:
    runtime = build('tcp: {}\nudp:\n  routers:\n    dns: {service: x}\n')
    [issue] = runtime.issues
    assert (issue.path, issue.severity, issue.message) == (
        "udp", "warning", "the udp section is ignored: Switchyard does not support UDP")


# --- what no router uses is still checked ------------------------------------------------

def unused_issues(runtime: Runtime) -> dict[str, str]:
    return {i.path: i.message for i in runtime.issues if i.severity == "warning"}


def test_an_unreferenced_broken_service_stays_enabled_and_is_reported() -> None:
    runtime = build("""
tcp:
  services:
    odd:
      loadBalancer:
        proxyProtocol: {version: 42}
        servers: [{address: "127.0.0.1:1"}]
""")
    # Traefik's status model: a service no router builds shows enabled (spec 8.1).
    assert (runtime.services["odd@file"].status, runtime.services["odd@file"].errors) == (
        "enabled", [])
    assert unused_issues(runtime) == {"tcp.services.odd": (
        'service "odd@file" is not built because no router uses it; once a router uses '
        "it: unknown proxyProtocol version: 42 (use 1 or 2)")}


def test_a_service_whose_only_router_is_disabled_is_still_checked() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`a`)", service: odd}
  services:
    odd:
      loadBalancer: {servers: [{address: "nowhere"}]}
""")
    assert runtime.routers["r@file"].status == "disabled"
    assert "the routers that use it are disabled" in unused_issues(runtime)["tcp.services.odd"]
    assert "servers[0] skipped" in unused_issues(runtime)["tcp.services.odd"]


def test_a_service_that_failed_for_its_router_is_reported_once() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: odd}
  services:
    odd:
      loadBalancer:
        proxyProtocol: {version: 42}
        servers: [{address: "127.0.0.1:1"}]
""")
    assert runtime.services["odd@file"].status == "disabled"
    assert unused_issues(runtime) == {}


def test_unreferenced_tls_options_middlewares_and_transports_are_checked() -> None:
    runtime = build("""
tcp:
  middlewares:
    empty: {ipAllowList: {sourceRange: []}}
  serversTransports:
    spiffe:
      tls: {spiffe: {ids: ["spiffe://example.org/db"]}}
    pp:
      proxyProtocol: {version: 3}
tls:
  options:
    bad: {cipherSuites: [foobar]}
""")
    found = unused_issues(runtime)
    assert runtime.middlewares["empty@file"].status == "enabled"
    assert "sourceRange is empty" in found["tcp.middlewares.empty"]
    assert found["tls.options.bad"].startswith(
        'TLS options "bad@file" are used by no TLS-terminating router; once one uses them, '
        'its connections are closed: cipherSuites: unknown cipher suite "foobar"')
    assert found["tcp.serversTransports.spiffe"] == (
        'serversTransport "spiffe@file": no service uses it; once a server with tls: true '
        "dials through it, the service fails: tls.spiffe: SPIFFE is not supported; use rootCAs "
        "with peerCertSANs for URI identities")
    assert "unknown proxyProtocol version: 3" in found["tcp.serversTransports.pp"]


def test_a_transport_that_cannot_dial_tls_disables_the_service_of_tls_servers() -> None:
    runtime = build("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: db}
    plain: {rule: "HostSNI(`*`) && ClientIP(`10.0.0.0/8`)", service: plain}
  services:
    db:
      loadBalancer:
        serversTransport: spiffe
        servers: [{address: "10.0.0.1:5432", tls: true}]
    plain:
      loadBalancer:
        serversTransport: spiffe
        servers: [{address: "10.0.0.2:5432"}]
  serversTransports:
    spiffe:
      tls: {spiffe: {ids: ["spiffe://example.org/db"]}}
""")
    assert runtime.services["db@file"].status == "disabled"
    assert runtime.services["db@file"].errors == [
        ('serversTransport "spiffe@file": tls.spiffe: SPIFFE is not supported; use rootCAs '
        "with peerCertSANs for URI identities")]
    assert runtime.routers["r@file"].status == "disabled"
    # Plain servers never use the transport's TLS: they dial as Traefik's would.
    assert runtime.routers["plain@file"].status == "enabled"


def test_certificates_are_loaded_even_when_no_router_terminates_tls() -> None:
    runtime = build("""
tcp: {}
tls:
  stores:
    other: {}
""")
    assert runtime.tls_problems == [("tls.stores.other: only the 'default' store is used, by "
                                     "Traefik's routers as by Switchyard's; store ignored: move "
                                     "its settings to tls.stores.default or remove it")]


class _Resolver:
    def __init__(self, name: str) -> None:
        self.name = name

    def certificates(self) -> list[tuple[bytes, bytes]]:
        return []


RESOLVED = """
tcp:
  routers:
    site: {rule: "HostSNI(`a.example`)", service: svc, tls: {certResolver: le}}
""" + SERVICE


def test_a_declared_certificate_resolver_is_not_reported() -> None:
    settings, _ = static_from_dict({"entryPoints": {"ep": {"address": ":0"}},
                                    "certificatesResolvers": {"le": {"acme": {}}}}, "test")
    config, _ = load_dynamic_from_dict(yaml.safe_load(RESOLVED), "test")
    runtime = build_runtime(settings, {"file": config}, resolvers={"le": _Resolver("le")})
    assert runtime.routers["site@file"].errors == []
    assert runtime.acme_requests == [("le", [("a.example", [])])]


def test_an_undeclared_or_disabled_certificate_resolver_is_reported() -> None:
    undeclared = build(RESOLVED)
    assert errors(undeclared, "site@file") == [
        ('the router uses a non-existent certificate resolver "le": declare it in the static '
        "certificatesResolvers, or fix the name")]
    settings, _ = static_from_dict({"entryPoints": {"ep": {"address": ":0"}},
                                    "certificatesResolvers": {"le": {"acme": {}}}}, "test")
    config, _ = load_dynamic_from_dict(yaml.safe_load(RESOLVED), "test")
    disabled = build_runtime(settings, {"file": config})
    assert "is disabled (see the certificatesResolvers message" in errors(
        disabled, "site@file")[0]
