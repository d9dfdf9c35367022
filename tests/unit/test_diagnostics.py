"""Configurations that load and still mislead: each warning names every element involved."""

from __future__ import annotations

from typing import Any

import yaml

from switchyard.build import build_runtime
from switchyard.config.loader import load_dynamic_from_dict, static_from_dict
from switchyard.diagnostics import Diagnostic, diagnose


def diagnostics(dynamic: str, **entry_points: Any) -> list[Diagnostic]:
    eps = entry_points or {"ep": {}}
    static, _ = static_from_dict({"entryPoints": {
        name: {"address": f"127.0.0.1:{9000 + i}", **extra}
        for i, (name, extra) in enumerate(eps.items())}}, "test")
    config, _ = load_dynamic_from_dict(yaml.safe_load(dynamic), "test")
    return diagnose(build_runtime(static, {"file": config}), static)


def codes(found: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(d.code, d.name) for d in found]


SERVICES = """
  services:
    plain: {loadBalancer: {servers: [{address: "127.0.0.1:1"}]}}
    tls-backend: {loadBalancer: {servers: [{address: "127.0.0.1:2", tls: true}]}}
"""


def test_a_clean_configuration_has_nothing_to_say() -> None:
    assert diagnostics("""
tcp:
  routers:
    db: {rule: "HostSNI(`db`)", service: plain, tls: {passthrough: true}}
    site: {rule: "HostSNI(`site`)", service: tls-backend, tls: {options: h1}}
""" + SERVICES + """
tls:
  options:
    h1: {alpnProtocols: [http/1.1]}
""") == []


def test_passthrough_to_servers_with_tls_is_double_tls() -> None:
    [found] = diagnostics("""
tcp:
  routers:
    db: {rule: "HostSNI(`db`)", service: tls-backend, tls: {passthrough: true}}
""" + SERVICES)
    assert (found.code, found.kind, found.name, found.related) == (
        "passthrough-to-tls-servers", "router", "db@file", ("tls-backend@file",))
    assert str(found).startswith(
        'router "db@file": passes the client\'s TLS through (passthrough: true) to service '
        '"tls-backend@file", whose servers 127.0.0.1:2 have tls: true')
    assert "every connection fails" in found.message
    assert "Remove tls: true from those servers" in found.message


def test_termination_with_the_default_alpn_in_front_of_raw_tcp_suggests_http11() -> None:
    [found] = diagnostics("""
tcp:
  routers:
    site: {rule: "HostSNI(`site`)", service: plain, tls: {}}
""" + SERVICES)
    assert codes([found]) == [("default-alpn-h2", "site@file")]
    assert found.related == ("plain@file",)
    assert "curl --http2" in found.message
    assert found.message.endswith("set alpnProtocols: [http/1.1] in tls.options.default (or "
                                  "give the router TLS options of its own)")

    [named] = diagnostics("""
tcp:
  routers:
    site: {rule: "HostSNI(`site`)", service: plain, tls: {options: modern}}
""" + SERVICES + """
tls:
  options:
    modern: {minVersion: VersionTLS13}
""")
    assert named.message.endswith("set alpnProtocols: [http/1.1] in tls.options.modern")


def test_tls_options_on_a_passthrough_router_are_said_to_be_ignored() -> None:
    [found] = diagnostics("""
tcp:
  routers:
    db: {rule: "HostSNI(`db`)", service: plain, tls: {passthrough: true, options: nowhere}}
""" + SERVICES)
    assert codes([found]) == [("passthrough-tls-options", "db@file")]
    assert found.message.startswith('tls.options "nowhere" is ignored: the router passes TLS '
                                    "through")


def test_ip_white_list_is_deprecated_in_favour_of_ip_allow_list() -> None:
    [found] = diagnostics("""
tcp:
  middlewares:
    office: {ipWhiteList: {sourceRange: ["10.0.0.0/8"]}}
""")
    assert codes([found]) == [("ip-white-list-deprecated", "office@file")]
    assert "rename it to ipAllowList" in found.message


def test_a_plain_catch_all_next_to_tls_routers_keeps_server_first_clients_waiting() -> None:
    found = diagnostics("""
tcp:
  routers:
    db: {rule: "HostSNI(`db`)", service: plain, tls: {passthrough: true}}
    mail: {rule: "HostSNI(`*`)", service: plain}
    office: {rule: "ClientIP(`10.0.0.0/8`)", service: plain}
""" + SERVICES, ep={"transport": {"respondingTimeouts": {"readTimeout": "5s"}}})
    assert codes(found) == [("server-first-wait", "ep"), ("server-first-wait", "ep")]
    mail = next(d for d in found if "mail@file" in d.related)
    assert (mail.kind, mail.entry_point, mail.related) == ("entryPoint", "ep",
                                                            ("mail@file", "db@file"))
    assert 'has TLS routers ("db@file") and the plain router "mail@file"' in mail.message
    assert "server-first client (SMTP, MySQL, SSH" in mail.message
    assert "closed after readTimeout (5s)" in mail.message


def test_a_server_first_entry_point_of_its_own_is_fine() -> None:
    assert diagnostics("""
tcp:
  routers:
    db: {rule: "HostSNI(`db`)", service: plain, entryPoints: [tls], tls: {passthrough: true}}
    mail: {rule: "HostSNI(`*`)", service: plain, entryPoints: [smtp]}
    sni-less: {rule: "HostSNI(`*`) && !ClientIP(`10.0.0.0/8`)", service: plain,
               entryPoints: [smtp]}
""" + SERVICES, tls={}, smtp={}) == []


def test_transport_tls_settings_no_server_uses_are_said() -> None:
    [found] = diagnostics("""
tcp:
  routers:
    r: {rule: "HostSNI(`*`)", service: svc}
  services:
    svc:
      loadBalancer:
        serversTransport: verified
        servers: [{address: "127.0.0.1:1"}]
  serversTransports:
    verified:
      tls: {serverName: db.internal}
""")
    assert (found.code, found.kind, found.name, found.related) == (
        "transport-tls-unused", "service", "svc@file", ("verified@file", "r@file"))
    assert "add tls: true to the servers that expect TLS" in found.message
