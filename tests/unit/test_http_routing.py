"""Compiled HTTP routing: order, host index, HTTPS domains and router validation as Traefik."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.config.http import HTTPRouter
from switchyard.http.routing import (
    MAX_USER_PRIORITY,
    HandlerBuildError,
    HTTPRoute,
    HTTPRouteList,
    HTTPRouting,
    HTTPSDomain,
    HTTPSDomainList,
    RouterSpec,
    build_http_routing,
)
from switchyard.rules import ConnMeta, Headers, RequestMeta, parse_http_rule, parse_rule

EPS = ("web", "websecure")
OPTIONS = ("default", "modern@file", "legacy@file")


def routers(**raw: Mapping[str, Any]) -> dict[str, HTTPRouter]:
    """Routers of the file provider, named as keyword arguments (``_`` stands for ``-``)."""
    found = {}
    for name, config in raw.items():
        found[f"{name.replace('_', '-')}@file"] = HTTPRouter.model_validate(
            {"service": "svc", "entryPoints": ["web"], **config}
        )
    return found


def build(configs: Mapping[str, HTTPRouter], **options: Any) -> HTTPRouting[str]:
    options.setdefault("tls_options", OPTIONS)
    return build_http_routing(configs, EPS, lambda spec: f"handler:{spec.name}", **options)


def request(host: str = "example.com", path: str = "/", **fields: Any) -> RequestMeta:
    return RequestMeta(host, path, **fields)


def served_by(routing: HTTPRouting[str], meta: RequestMeta, ep: str = "web", tls: bool = False) -> str | None:
    table = routing.tables[ep]
    route = (table.https if tls else table.http).match(meta)
    return None if route is None else route.name


def errors(routing: HTTPRouting[str], name: str) -> list[str]:
    return routing.routers[name].errors


# --- order and matching ---------------------------------------------------------------------


def test_longer_rules_win_by_default() -> None:
    routing = build(routers(
        short={"rule": "PathPrefix(`/`)"},
        long={"rule": "PathPrefix(`/api`)"},
    ))
    assert served_by(routing, request(path="/api/x")) == "long@file"
    assert served_by(routing, request(path="/other")) == "short@file"


def test_explicit_priority_beats_length_and_ties_go_by_name() -> None:
    routing = build(routers(
        b={"rule": "PathPrefix(`/`)", "priority": 100},
        a={"rule": "PathPrefix(`/`)", "priority": 100},
        long={"rule": "PathPrefix(`/api/v1`)"},
    ))
    assert served_by(routing, request(path="/api/v1")) == "a@file"
    assert [r.name for r in routing.tables["web"].http] == ["a@file", "b@file", "long@file"]


def test_no_match_is_none() -> None:
    routing = build(routers(api={"rule": "Host(`api.example.com`)"}))
    assert served_by(routing, request("www.example.com")) is None
    assert served_by(routing, request("api.example.com"), ep="websecure") is None


def test_https_routers_serve_only_tls_connections() -> None:
    routing = build(routers(
        plain={"rule": "Host(`a.test`)"},
        secure={"rule": "Host(`a.test`)", "tls": {}, "entryPoints": ["web"]},
    ))
    assert served_by(routing, request("a.test")) == "plain@file"
    assert served_by(routing, request("a.test"), tls=True) == "secure@file"


def test_a_router_serves_each_of_its_entry_points() -> None:
    routing = build(routers(both={"rule": "Path(`/x`)", "entryPoints": ["web", "websecure"]}))
    assert served_by(routing, request(path="/x")) == "both@file"
    assert served_by(routing, request(path="/x"), ep="websecure") == "both@file"
    assert routing.routers["both@file"].using == ["web", "websecure"]


def test_routers_without_entry_points_use_the_default_ones() -> None:
    configs = {"r@file": HTTPRouter.model_validate({"rule": "Path(`/x`)", "service": "s"})}
    assert served_by(build(configs), request(path="/x"), ep="websecure") == "r@file"
    only_web = build(configs, default_entrypoints=["web"])
    assert served_by(only_web, request(path="/x"), ep="websecure") is None
    assert served_by(only_web, request(path="/x")) == "r@file"


def test_the_default_rule_syntax_applies_to_routers_without_one() -> None:
    configs = routers(
        v2={"rule": "Host(`a.test`, `b.test`)"},
        v3={"rule": "Host(`c.test`)", "ruleSyntax": "v3"},
    )
    routing = build(configs, default_rule_syntax="v2")
    assert served_by(routing, request("b.test")) == "v2@file"
    assert served_by(routing, request("c.test")) == "v3@file"
    assert "Host takes exactly one argument" in errors(build(configs), "v2@file")[0]


def test_the_builder_gets_qualified_names_once_per_router() -> None:
    seen: list[RouterSpec] = []

    def handler(spec: RouterSpec) -> str:
        seen.append(spec)
        return spec.name

    configs = {
        "r@docker": HTTPRouter.model_validate({
            "rule": "Host(`a`)", "service": "svc", "middlewares": ["auth", "hdr@file"],
            "entryPoints": ["web", "websecure"], "tls": {"options": "modern"},
        }),
    }
    routing = build_http_routing(configs, EPS, handler, tls_options=["default", "modern@docker"])
    assert len(seen) == 1
    spec = seen[0]
    assert (spec.name, spec.provider, spec.service) == ("r@docker", "docker", "svc@docker")
    assert spec.middlewares == ("auth@docker", "hdr@file")
    assert spec.tls_options == "modern@docker"
    route = routing.tables["websecure"].https.match(request("a"))
    assert route is not None and route.handler == "r@docker" and route.service == "svc@docker"
    assert route.tls_options == "modern@docker"


def test_a_handler_build_error_disables_the_router() -> None:
    def handler(spec: RouterSpec) -> str:
        raise HandlerBuildError(f'the service "{spec.service}" does not exist')

    routing = build_http_routing(routers(r={"rule": "Path(`/`)"}), EPS, handler)
    assert routing.routers["r@file"].status == "disabled"
    assert errors(routing, "r@file") == ['the service "svc@file" does not exist']
    assert not routing.tables["web"].http


# --- validation (messages as Traefik 3.7's API shows them) --------------------------------


def test_a_router_without_service_gets_both_of_traefiks_errors() -> None:
    routing = build({"r@file": HTTPRouter.model_validate({"rule": "Path(`/ns`)"})})
    assert errors(routing, "r@file") == [
        "router has no service and no child routers",
        "router must have either a service or child routers",
    ]
    assert routing.routers["r@file"].status == "disabled"


def test_a_router_without_rule_is_disabled() -> None:
    routing = build(routers(r={"rule": ""}))
    assert errors(routing, "r@file") == ["router has no rule"]


def test_an_invalid_rule_disables_the_router_with_the_parse_error() -> None:
    routing = build(routers(r={"rule": "Host(`a`, `b`)"}))
    (message,) = errors(routing, "r@file")
    assert message.startswith("error while parsing rule Host(`a`, `b`): rule Host(`a`, `b`):")
    assert "Host takes exactly one argument" in message
    assert routing.routers["r@file"].status == "disabled"


def test_unknown_entry_points_are_warnings_until_none_is_left() -> None:
    routing = build(routers(
        some={"rule": "Path(`/a`)", "entryPoints": ["nope", "web"]},
        none={"rule": "Path(`/b`)", "entryPoints": ["nope"]},
    ))
    assert errors(routing, "some@file") == ['entryPoint "nope" doesn\'t exist']
    assert routing.routers["some@file"].status == "warning"
    assert served_by(routing, request(path="/a")) == "some@file"
    assert errors(routing, "none@file") == [
        'entryPoint "nope" doesn\'t exist', "no valid entryPoint for this router"]
    assert routing.routers["none@file"].status == "disabled"


def test_a_priority_above_the_user_maximum_is_refused() -> None:
    routing = build(routers(r={"rule": "Path(`/`)", "priority": MAX_USER_PRIORITY + 1}))
    expected = (
        f"the router priority {MAX_USER_PRIORITY + 1} exceeds the max user-defined priority "
        "9223372036854774807"
    )
    assert errors(routing, "r@file") == [expected]
    internal = {"api@internal": HTTPRouter.model_validate(
        {"rule": "PathPrefix(`/api`)", "service": "api@internal",
         "priority": MAX_USER_PRIORITY + 999, "entryPoints": ["web"]})}
    assert served_by(build(internal), request(path="/api")) == "api@internal"


def test_the_computed_priority_is_reported() -> None:
    routing = build(routers(r={"rule": "Host(`a.test`)"}))
    assert routing.routers["r@file"].priority == len("Host(`a.test`)")


def test_unknown_tls_options_disable_the_router_and_close_its_domains() -> None:
    routing = build(routers(r={"rule": "Host(`b.test`)", "tls": {"options": "unknown"},
                               "entryPoints": ["websecure"]}))
    assert errors(routing, "r@file") == ["building router handler: unknown TLS options: unknown@file"]
    (domain,) = routing.tables["websecure"].https_domains
    assert (domain.domain, domain.tls_options) == ("b.test", None)


def test_multi_layer_routing_is_reported_as_unsupported() -> None:
    routing = build(routers(
        parent={"rule": "Host(`a`)", "service": ""},
        child={"rule": "Path(`/x`)", "parentRefs": ["parent@file"], "entryPoints": []},
    ))
    for name in ("parent@file", "child@file"):
        assert "multi-layer routing (parentRefs) is not supported yet" in errors(routing, name)
    assert not routing.tables["web"].http


# --- HTTPS domains and TLS options ----------------------------------------------------------


def https_routers(**raw: Mapping[str, Any]) -> dict[str, HTTPRouter]:
    return routers(**{name: {"entryPoints": ["websecure"], "tls": {}, **config}
                      for name, config in raw.items()})


def domains(routing: HTTPRouting[str], ep: str = "websecure") -> list[tuple[str, str | None]]:
    return [(d.domain, d.tls_options) for d in routing.tables[ep].https_domains]


def test_each_host_domain_gets_its_routers_tls_options() -> None:
    routing = build(https_routers(
        a={"rule": "Host(`a.test`) || Host(`B.test`)", "tls": {"options": "modern"}},
        c={"rule": "Host(`c.test`) && PathPrefix(`/x`)"},
    ))
    assert sorted(domains(routing)) == [
        ("a.test", "modern@file"), ("b.test", "modern@file"), ("c.test", "default")]
    assert domains(routing, "web") == []


def test_routers_without_host_add_the_catch_all_with_default_options() -> None:
    routing = build(https_routers(any={"rule": "PathPrefix(`/`)"}))
    (entry,) = routing.tables["websecure"].https_domains
    assert (entry.domain, entry.tls_options, entry.is_catch_all) == ("*", "default", True)
    assert entry.priority == -1


def test_tls_options_on_a_router_without_host_cannot_apply() -> None:
    routing = build(https_routers(r={"rule": "PathPrefix(`/`)", "tls": {"options": "modern"}}))
    # Traefik moves it to a copy with default options, and says why.
    assert list(routing.routers) == ["websecure-conflicted-r@file"]
    assert errors(routing, "websecure-conflicted-r@file") == [
        "no domain found in rule PathPrefix(`/`), the TLS option modern@file cannot be applied"]
    assert routing.routers["websecure-conflicted-r@file"].status == "warning"
    assert domains(routing) == [("*", "default")]


def test_negated_hosts_are_not_domains() -> None:
    routing = build(https_routers(r={"rule": "!Host(`neg.test`) && Path(`/neg`)"}))
    assert domains(routing) == [("*", "default")]


def test_conflicting_tls_options_for_a_host_fall_back_to_default_in_router_copies() -> None:
    configs = https_routers(
        r1={"rule": "Host(`a.test`)", "tls": {"options": "modern"}},
        r2={"rule": "Host(`a.test`) && Path(`/x`)", "tls": {"options": "legacy"},
            "entryPoints": ["websecure", "web"]},
        other={"rule": "Host(`o.test`)", "tls": {"options": "modern"}},
    )
    routing = build(configs)
    assert set(routing.routers) == {
        "websecure-conflicted-r1@file", "websecure-conflicted-r2@file", "r2@file", "other@file"}
    message = (
        "router's TLSOptions configuration is conflicting with other routers on the same "
        "entrypoint and host, default TLS options will be used instead"
    )
    for name in ("websecure-conflicted-r1@file", "websecure-conflicted-r2@file"):
        assert errors(routing, name) == [message]
        assert routing.routers[name].config.entry_points == ["websecure"]
    # On web r2 is alone: it keeps its name and its options.
    assert routing.routers["r2@file"].errors == []
    assert routing.routers["r2@file"].config.entry_points == ["web"]
    assert dict(domains(routing)) == {"a.test": "default", "o.test": "modern@file"}
    assert dict(domains(routing, "web")) == {"a.test": "legacy@file"}
    route = routing.tables["websecure"].https.match(request("a.test", "/x"))
    assert route is not None
    assert (route.name, route.tls_options) == ("websecure-conflicted-r2@file", "default")


def test_an_unparsable_rule_gets_no_domain_and_an_error() -> None:
    routing = build(https_routers(r={"rule": "Host(`p6.test`) && Bogus(`x`)"}))
    found = errors(routing, "r@file")
    assert found[0].startswith("error while parsing rule")
    assert found[1].startswith("invalid rule Host(`p6.test`) && Bogus(`x`), error: rule")
    assert domains(routing) == []


def test_domains_are_ordered_like_hostsni_routes() -> None:
    routing = build(https_routers(
        a={"rule": "Host(`*.example.com`)"},
        b={"rule": "Host(`www.example.com`)"},
        c={"rule": "Path(`/`)"},
        d={"rule": "Host(`x.io`)"},
    ))
    assert [d.domain for d in routing.tables["websecure"].https_domains] == [
        "www.example.com", "*.example.com", "x.io", "*"]


def test_domains_that_are_no_valid_sni_are_left_out() -> None:
    routing = build(https_routers(r={"rule": "Host(`exa mple.com`) || Host(`ok.test`)"}))
    assert domains(routing) == [("ok.test", "default")]


def test_an_sni_picks_its_domain_before_the_catch_all() -> None:
    routing = build(https_routers(
        app={"rule": "Host(`app.test`)", "tls": {"options": "modern"}},
        wild={"rule": "Host(`*.wild.test`)"},
        rest={"rule": "PathPrefix(`/`)"},
    ))
    found = routing.tables["websecure"].https_domains

    def pick(sni: str) -> str | None:
        entry = found.match(ConnMeta(sni, (), "192.0.2.1", True))
        return None if entry is None else entry.domain

    assert pick("app.test") == "app.test"
    assert pick("a.wild.test") == "*.wild.test"
    assert pick("unknown.test") == "*"
    assert pick("") == "*"


# --- the indexes give the same answers as a scan ----------------------------------------

RULES = [
    "Host(`a.test`)",
    "Host(`A.test.`) && PathPrefix(`/api`)",
    "Host(`b.test`) || Host(`a.test`)",
    "Host(`*.test`)",
    "Host(`*`)",
    "!Host(`a.test`)",
    "PathPrefix(`/`)",
    "PathPrefix(`/api`)",
    "Host(`b.test`) && Method(`POST`)",
    "HostRegexp(`^a`)",
    "Host(`a.test`) && (Path(`/x`) || Header(`X-A`, `1`))",
]
HOSTS = ["a.test", "A.test:80", "a.test.", "b.test", "c.test", "", "x.a.test"]
PATHS = ["/", "/api", "/x", "/api/v1"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(RULES), st.integers(0, 3)), min_size=1, max_size=12),
    st.lists(
        st.builds(
            lambda host, path, method, header: RequestMeta(
                host, path, method, Headers([("X-A", "1")] if header else [])),
            st.sampled_from(HOSTS), st.sampled_from(PATHS), st.sampled_from(["GET", "POST"]),
            st.booleans(),
        ),
        min_size=1, max_size=6,
    ),
)
def test_the_host_index_picks_what_a_scan_in_rank_order_picks(
    specs: list[tuple[str, int]], metas: list[RequestMeta]
) -> None:
    routes = [
        HTTPRoute(f"r{i}", parse_http_rule(text), priority, None, "s", rank=i)
        for i, (text, priority) in enumerate(sorted(specs, key=lambda s: -s[1]))
    ]
    indexed: HTTPRouteList[None] = HTTPRouteList(routes)
    for meta in metas:
        expected = next((r for r in routes if r.rule.matches(meta)), None)
        assert indexed.match(meta) is expected


SNI_DOMAINS = ["a.test", "b.test", "*.test", "*", "x.a.test", "*.a.test"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(SNI_DOMAINS), min_size=1, max_size=6, unique=True),
    st.lists(st.sampled_from(["a.test", "b.test", "c.test", "x.a.test", "y.a.test", ""]),
             min_size=1, max_size=4),
)
def test_the_sni_index_picks_what_a_scan_in_rank_order_picks(
    names: Sequence[str], snis: Sequence[str]
) -> None:
    entries = []
    for name in names:
        rule = parse_rule(f"HostSNI(`{name}`)")
        entries.append((name, rule))
    entries.sort(key=lambda e: -len(e[0]) if e[0] != "*" else 1)
    listed = [HTTPSDomain(name, "default", rule, 0, rank) for rank, (name, rule) in
              enumerate(entries)]
    index = HTTPSDomainList(listed)
    for sni in snis:
        meta = ConnMeta(sni, (), "192.0.2.1", True)
        expected = next((d for d in listed if d.rule.matches(meta)), None)
        assert index.match(meta) is expected


def test_route_lists_report_their_size() -> None:
    assert not HTTPRouteList([])
    assert len(HTTPSDomainList([])) == 0


@pytest.mark.parametrize("count", [1, 200])
def test_many_host_routers_route_each_host_to_its_own(count: int) -> None:
    configs = routers(**{f"r{i}": {"rule": f"Host(`h{i}.test`) && PathPrefix(`/`)"}
                         for i in range(count)})
    routing = build(configs)
    assert served_by(routing, request(f"h{count - 1}.test")) == f"r{count - 1}@file"
