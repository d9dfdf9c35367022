"""`explain`: candidates in routing order, middleware verdicts, service and outcome."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from switchyard.build import build_runtime
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
from switchyard.explain import ExplainError, Explanation, explain, render_text

STATIC = {"entryPoints": {"web": {"address": ":443"}, "raw": {"address": ":25"},
                          "traefik": {"address": ":8080"}},
          "api": {"insecure": True}}

DYNAMIC = """
tcp:
  routers:
    api:
      rule: "HostSNI(`api.example.com`)"
      service: api
      entryPoints: [web]
      tls: {passthrough: true}
    db:
      rule: "HostSNI(`db.example.com`) && ClientIP(`10.0.0.0/8`)"
      service: db
      entryPoints: [web]
      middlewares: [office, limit]
      tls: {passthrough: true}
    catch-all-tls:
      rule: "HostSNI(`*`)"
      service: api
      entryPoints: [web]
      tls: {passthrough: true}
    plain-on-web:
      rule: "ClientIP(`192.0.2.0/24`)"
      service: api
      entryPoints: [web]
    h2-only:
      rule: "HostSNI(`h2.example.com`) && ALPN(`h2`)"
      service: split
      entryPoints: [web]
      tls: {passthrough: true}
    smtp:
      rule: "HostSNI(`*`)"
      service: api
      entryPoints: [raw]
      middlewares: [nobody]
    broken:
      rule: "HostSNI(`needs.tls.example.com`)"
      service: api
      entryPoints: [web]
  middlewares:
    office:
      ipAllowList:
        sourceRange: ["10.1.0.0/16"]
    limit:
      inFlightConn:
        amount: 4
    nobody:
      inFlightConn:
        amount: 0
  services:
    api:
      loadBalancer:
        servers: [{address: "10.9.0.1:443"}, {address: "10.9.0.2:443", tls: true}]
    db:
      loadBalancer:
        servers: [{address: "10.9.1.1:5432"}]
        healthCheck: {}
    split:
      weighted:
        services: [{name: api, weight: 3}, {name: db}]
"""


def run(entrypoint: str, client_ip: str, **kwargs: Any) -> Explanation:
    static, issues = static_from_dict(STATIC, "test")
    assert not issues
    dynamic, issues = load_dynamic_from_dict(yaml.safe_load(DYNAMIC), "test")
    assert not issues
    runtime = build_runtime(static, {"file": dynamic})
    return explain(runtime, static, entrypoint, client_ip, **kwargs)


def test_highest_priority_match_wins_and_lower_matches_are_still_listed() -> None:
    found = run("web", "10.1.2.3", tls=True, sni="DB.example.com")
    assert found.router == "db@file"
    order = [(c.router, c.matched, c.chosen) for c in found.candidates]
    assert order == [
        ("db@file", True, True),
        ("h2-only@file", False, False),
        ("api@file", False, False),
        ("catch-all-tls@file", True, False),
    ]
    assert [c.priority for c in found.candidates] == sorted(
        (c.priority for c in found.candidates), reverse=True)
    assert found.other_kind_routers == 1


def test_alpn_takes_part_in_matching() -> None:
    assert run("web", "10.1.2.3", tls=True, sni="h2.example.com").router == "catch-all-tls@file"
    assert run("web", "10.1.2.3", tls=True, sni="h2.example.com",
               alpn=("http/1.1", "h2")).router == "h2-only@file"


def test_plain_connection_is_matched_against_non_tls_routers_only() -> None:
    found = run("web", "192.0.2.9", tls=False)
    assert [c.router for c in found.candidates] == ["plain-on-web@file"]
    assert found.router == "plain-on-web@file"
    assert found.other_kind_routers == 4
    unmatched = run("web", "198.51.100.1", tls=False)
    assert (unmatched.action, unmatched.close_reason) == ("http", None)
    assert unmatched.outcome.startswith('no TCP router takes it: handed to the HTTP server of "web"')


def test_entrypoint_with_only_non_tls_routers_routes_at_accept_without_sni() -> None:
    found = run("raw", "203.0.113.5", tls=True, sni="mail.example.com")
    assert found.routed_at_accept
    assert found.router == "smtp@file"
    assert "never read" in render_text(found)


def test_allow_list_refusal_closes_and_later_middlewares_are_not_reached() -> None:
    found = run("web", "10.2.0.1", tls=True, sni="db.example.com")
    office, limit = found.middlewares
    assert (office.type, office.reached, office.allows) == ("ipAllowList", True, False)
    assert "10.2.0.1" in office.detail
    assert (limit.reached, limit.allows) == (False, None)
    assert found.outcome.startswith('closed by middleware "office@file"')


def test_in_flight_limit_depends_on_open_connections_unless_amount_is_zero() -> None:
    allowed = run("web", "10.1.0.7", tls=True, sni="db.example.com")
    office, limit = allowed.middlewares
    assert office.allows is True and "10.1.0.0/16" in office.detail
    assert (limit.type, limit.allows) == ("inFlightConn", None)
    assert "fewer than 4 connections from 10.1.0.7" in limit.detail
    assert allowed.outcome == 'routed by "db@file" to service "db@file"'
    [nobody] = run("raw", "10.1.0.7", tls=False).middlewares
    assert nobody.allows is False and "every connection is refused" in nobody.detail


def test_ipv4_mapped_client_address_is_seen_as_ipv4() -> None:
    found = run("web", "::ffff:10.1.0.7", tls=True, sni="db.example.com")
    assert found.client_ip == "10.1.0.7"
    assert found.router == "db@file"


def test_disabled_routers_of_the_entrypoint_are_listed_with_their_errors() -> None:
    found = run("web", "10.1.2.3", tls=False)
    [broken] = found.disabled
    assert broken.router == "broken@file"
    assert "no TLS on router" in broken.errors[0]


def test_service_description_includes_servers_and_weighted_children() -> None:
    db = run("web", "10.1.0.7", tls=True, sni="db.example.com").service
    assert db is not None and db.health_check
    assert [s.address for s in db.servers] == ["10.9.1.1:5432"]
    split = run("web", "10.1.0.7", tls=True, sni="h2.example.com", alpn=("h2",)).service
    assert split is not None and split.type == "weighted"
    assert [(c.service.name, c.weight) for c in split.children] == [("api@file", 3),
                                                                      ("db@file", 1)]
    assert [s.tls for s in split.children[0].service.servers] == [False, True]


def test_json_uses_camel_case_keys_like_the_api() -> None:
    data = run("web", "10.1.0.7", tls=True, sni="db.example.com").as_json()
    assert {"entryPoint", "clientIP", "routedAtAccept", "otherKindRouters"} <= set(data)
    assert data["service"]["healthCheck"] is True
    assert data["candidates"][0] == {"router": "db@file", "rule": data["candidates"][0]["rule"],
                                     "priority": data["candidates"][0]["priority"],
                                     "matched": True, "chosen": True}


def test_text_marks_the_chosen_router_and_shows_the_result() -> None:
    text = render_text(run("web", "10.1.0.7", tls=True, sni="api.example.com"))
    chosen = [line for line in text.splitlines() if "<- chosen" in line]
    assert len(chosen) == 1 and "api@file" in chosen[0]
    assert "server 10.9.0.2:443 (TLS to backend)" in text
    assert text.splitlines()[-1] == 'Result: routed by "api@file" to service "api@file"'


@pytest.mark.parametrize(("entrypoint", "client_ip", "kwargs", "message"), [
    ("nope", "10.0.0.1", {"tls": False}, "known: raw, web"),
    ("traefik", "10.0.0.1", {"tls": False}, "over HTTP"),
    ("web", "10.0.0.300", {"tls": False}, "is not an IP address"),
    ("web", "10.0.0.1", {"tls": False, "sni": "a.example.com"}, "drop --no-tls"),
])
def test_questions_that_cannot_be_answered_say_what_to_change(
        entrypoint: str, client_ip: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ExplainError, match=message):
        run(entrypoint, client_ip, **kwargs)


def test_explain_repeats_the_check_warnings_that_bear_on_the_connection() -> None:
    plain = run("web", "192.0.2.1", tls=False)
    assert plain.router == "plain-on-web@file"
    assert any("server-first" in w and "plain-on-web@file" in w for w in plain.warnings)
    assert "server-first" in render_text(plain)
    smtp = run("raw", "10.1.0.7", tls=False)
    assert not any("server-first" in w for w in smtp.warnings)  # no TLS router on "raw"
