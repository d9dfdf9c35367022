"""`switchyard check` and `switchyard explain` run as a user runs them, on good and broken configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STATIC = """
entryPoints:
  web:
    address: ":8443"
  smtp:
    address: ":2525"
providers:
  file:
    filename: "{dynamic}"
"""

GOOD = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: db
      entryPoints: [web]
      middlewares: [office]
      tls:
        passthrough: true
    mail:
      rule: "HostSNI(`*`)"
      service: mail
      entryPoints: [smtp]
  middlewares:
    office:
      ipAllowList:
        sourceRange: ["10.0.0.0/8"]
  services:
    db:
      loadBalancer:
        servers:
          - address: "10.9.0.1:5432"
    mail:
      loadBalancer:
        servers:
          - address: "10.9.0.2:25"
"""

BROKEN = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: db
      tls:
        passthrough: true
    needs-tls:
      rule: "HostSNI(`a.example.com`)"
      service: db
    typo:
      rule: "HostSNI(`*`)"
      servce: db
  services:
    db:
      loadBalancer:
        servers:
          - address: "10.9.0.1:5432"
"""


def write_config(tmp_path: Path, dynamic: str) -> Path:
    dynamic_file = tmp_path / "dynamic.yml"
    dynamic_file.write_text(dynamic)
    static_file = tmp_path / "traefik.yml"
    static_file.write_text(STATIC.format(dynamic=dynamic_file))
    return static_file


def switchyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard", *args], check=False,
                          capture_output=True, text=True, timeout=30)


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    result = switchyard("check", "-c", str(write_config(tmp_path, GOOD)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == [
        "2 routers, 2 services, 1 middlewares: configuration OK"]
    assert result.stderr == ""


def test_check_points_at_file_line_and_key_path_of_each_problem(tmp_path: Path) -> None:
    static = write_config(tmp_path, BROKEN)
    dynamic = tmp_path / "dynamic.yml"
    result = switchyard("check", "-c", str(static))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    needs_tls = line_of(dynamic, "needs-tls:")
    typo = line_of(dynamic, "typo:")
    assert any(line.startswith(f"{dynamic}:{needs_tls}: error: tcp.routers.needs-tls: ")
               and "no TLS on router" in line for line in lines), lines
    assert any(line.startswith(f"{dynamic}:{typo}: error: tcp.routers.typo: ")
               and "the service is missing" in line for line in lines), lines
    assert any(line.startswith(f'{dynamic}:{line_of(dynamic, "servce:")}: warning: '
                               "tcp.routers.typo.servce: ") for line in lines), lines
    assert lines[-1] == "3 routers, 1 services, 0 middlewares: errors found"
    # Each problem is printed once, on stdout; the builder's own log lines stay quiet.
    assert result.stderr == ""


def test_check_reports_an_unreadable_dynamic_file_with_its_position(tmp_path: Path) -> None:
    result = switchyard("check", "-c", str(write_config(tmp_path, "tcp: [unclosed\n")))
    assert result.returncode == 1
    assert f"{tmp_path / 'dynamic.yml'}:2:1: invalid YAML" in result.stderr


def test_explain_names_the_chosen_router_and_what_each_middleware_decides(
        tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "web", "--sni", "db.example.com",
                        "--client-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'Connection: TLS, SNI "db.example.com", client 10.1.2.3, on entry point "web"' in out
    assert "db@file" in next(line for line in out.splitlines() if "<- chosen" in line)
    assert "1. office@file (ipAllowList): allows: client IP 10.1.2.3 is in sourceRange" in out
    assert "server 10.9.0.1:5432" in out
    assert out.strip().endswith('Result: routed by "db@file" to service "db@file"')


def test_explain_json_reports_a_refused_client(tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "web", "--sni", "db.example.com",
                        "--client-ip", "192.0.2.1", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["router"] == "db@file"
    assert found["middlewares"][0]["allows"] is False
    assert found["outcome"].startswith('closed by middleware "office@file"')


def test_explain_without_a_matching_router_says_the_default_https_handler_takes_it(
        tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, BROKEN)),
                        "--entrypoint", "web", "--sni", "other.example.com",
                        "--client-ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert ("Result: TLS terminated for the default HTTPS handler (default TLS options and "
            'certificate), then the HTTP server of "web"') in result.stdout
    assert "needs-tls@file: invalid rule" in result.stdout


def test_explain_rejects_an_unknown_entrypoint_as_a_usage_error(tmp_path: Path) -> None:
    result = switchyard("explain", "-c", str(write_config(tmp_path, GOOD)),
                        "--entrypoint", "nope", "--client-ip", "10.1.2.3")
    assert result.returncode == 2
    assert 'entry point "nope" is not a TCP entry point' in result.stderr
    assert "known: smtp, web" in result.stderr


# --- `check` tells the truth ---------------------------------------------------------------

def check(*args: str) -> tuple[int, list[str]]:
    result = switchyard("check", *args)
    assert result.stderr == "" or result.returncode != 0, result.stderr
    return result.returncode, result.stdout.splitlines()


ACME_STATIC = """
entryPoints:
  web:
    address: ":8443"
providers:
  file:
    filename: "{dynamic}"
certificatesResolvers:
  le:
    acme: {{email: ops@example.com, storage: "{storage}", tlsChallenge: {{}}}}
"""

RESOLVER_ROUTERS = """
tcp:
  routers:
    site:
      rule: "HostSNI(`www.example.com`)"
      service: web
      tls: {certResolver: le}
    typo:
      rule: "HostSNI(`api.example.com`)"
      service: web
      tls: {certResolver: lets-encrypt}
  services:
    web:
      loadBalancer:
        servers:
          - address: "10.0.1.5:8080"
tls:
  options:
    default: {alpnProtocols: [http/1.1]}
"""


def test_check_knows_the_certificate_resolvers_of_the_static_config(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(RESOLVER_ROUTERS)
    static = tmp_path / "traefik.yml"
    static.write_text(ACME_STATIC.format(dynamic=dynamic, storage=tmp_path / "acme.json"))

    code, lines = check("-c", str(static))

    assert code == 0
    assert lines == [
        (f'{dynamic}:{line_of(dynamic, "typo:")}: warning: tcp.routers.typo: router "typo@file": '
        'the router uses a non-existent certificate resolver "lets-encrypt": declare it in the '
        "static certificatesResolvers, or fix the name"),
        "2 routers, 1 services, 0 middlewares: configuration OK with 1 warning"]


def test_check_takes_the_same_traefik_style_flags_as_run(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(GOOD)

    code, lines = check("--entryPoints.web.address=:8443", "--entryPoints.smtp.address", ":2525",
                        f"--providers.file.filename={dynamic}", "--log.level=DEBUG")
    assert (code, lines) == (0, ["2 routers, 2 services, 1 middlewares: configuration OK"])

    code, lines = check("-c", str(write_config(tmp_path, GOOD)), "--entryPoints.web.adress=:1")
    assert code == 0
    assert lines[0] == 'flags: warning: entryPoints.web.adress: unknown key "adress" is ignored; ' \
                       'did you mean "address"?'


def test_check_validates_a_dynamic_file_on_its_own(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(BROKEN)

    code, lines = check(str(dynamic))

    assert code == 1
    assert any(line.startswith(f"{dynamic}:{line_of(dynamic, 'typo:')}: error: tcp.routers.typo:")
               and "the service is missing" in line for line in lines), lines
    assert lines[-2].startswith(f"note: {dynamic} was checked without a static configuration")
    assert lines[-1] == "3 routers, 1 services, 0 middlewares: errors found"

    dynamic.write_text(GOOD)
    assert check(str(dynamic))[0] == 0
    # Against a static configuration, its entry point names are checked too.
    static = tmp_path / "traefik.yml"
    static.write_text('entryPoints:\n  web:\n    address: ":8443"\n')
    code, lines = check(str(dynamic), "-c", str(static))
    assert code == 1
    assert 'router "mail@file": entryPoint "smtp" doesn\'t exist' in "\n".join(lines)


def test_check_refuses_a_dynamic_file_given_as_the_static_one(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(GOOD)

    result = switchyard("check", "-c", str(dynamic))

    assert result.returncode == 1
    assert "configuration OK" not in result.stdout
    assert f"{dynamic}: this looks like a dynamic configuration (tcp)" in result.stderr
    assert f'"switchyard check {dynamic}"' in result.stderr


COMBINED_TOML = """
[global]
  checkNewVersion = false

[log]
  level = "DEBUG"

[entryPoints.tcp]
  address = ":8093"

[api]
  insecure = true

[providers.file]
  filename = "{self}"

[tcp.routers.to-db]
  entryPoints = ["tcp"]
  rule = "HostSNI(`db.test`)"
  service = "db"
  [tcp.routers.to-db.tls]
    passthrough = true

[tcp.services.db.loadBalancer]
  [[tcp.services.db.loadBalancer.servers]]
    address = "127.0.0.1:5432"
"""


def test_a_file_with_static_and_dynamic_sections_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "fixture.toml"
    path.write_text(COMBINED_TOML.format(self=path))

    assert check("-c", str(path)) == (0, [("1 routers, 1 services, 0 middlewares: "
                                          "configuration OK")])
    # Given alone, such a file is checked the way `run -c` reads it.
    assert check(str(path)) == (0, ["1 routers, 1 services, 0 middlewares: configuration OK"])


UNUSED_BROKEN = """
tcp:
  routers:
    mail:
      rule: "HostSNI(`*`)"
      service: mail
      entryPoints: [smtp]
  services:
    mail:
      loadBalancer:
        servers: [{address: "10.9.0.2:25"}]
    spare:
      loadBalancer:
        proxyProtocol: {version: 42}
        servers: [{address: "10.9.0.3:25"}]
  serversTransports:
    mesh:
      tls:
        spiffe: {ids: ["spiffe://example.org/db"]}
tls:
  options:
    strict:
      cipherSuites: [foobar]
"""


def test_check_reports_broken_elements_no_router_uses(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.yml"
    code, lines = check("-c", str(write_config(tmp_path, UNUSED_BROKEN)))
    assert code == 0
    assert lines[:3] == [
        (f'{dynamic}:{line_of(dynamic, "spare:")}: warning: tcp.services.spare: service '
        '"spare@file" is not built because no router uses it; once a router uses it: unknown '
        "proxyProtocol version: 42 (use 1 or 2)"),
        (f'{dynamic}:{line_of(dynamic, "mesh:")}: warning: tcp.serversTransports.mesh: '
        'serversTransport "mesh@file": no service uses it; once a server with tls: true dials '
        "through it, the service fails: tls.spiffe: SPIFFE is not supported; use rootCAs with "
        "peerCertSANs for URI identities"),
        (f'{dynamic}:{line_of(dynamic, "strict:")}: warning: tls.options.strict: TLS options '
        '"strict@file" are used by no TLS-terminating router; once one uses them, its '
        'connections are closed: cipherSuites: unknown cipher suite "foobar" (use Go names such '
        "as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")]
    assert lines[3] == "1 routers, 2 services, 0 middlewares: configuration OK with 3 warnings"


IGNORED = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: db
      entryPoints: [web]
      middlewares: [office]
      tls: {passthrough: true, options: nowhere}
  middlewares:
    office:
      ipWhiteList: {sourceRange: ["10.0.0.0/8"]}
  services:
    db:
      loadBalancer:
        servers: [{address: "10.9.0.1:5432"}]
tls:
  stores:
    internal: {}
    default:
      defaultGeneratedCert: {resolver: le, domain: {main: example.com}}
udp:
  services:
    dns: {loadBalancer: {servers: [{address: "10.9.0.9:53"}]}}
"""


def test_what_switchyard_accepts_but_ignores_is_said(tmp_path: Path) -> None:
    static = write_config(tmp_path, IGNORED)
    static.write_text(static.read_text() + "tracing: {}\nhostResolver: {cnameFlattening: true}\n"
                      "experimental: {plugins: {demo: {moduleName: x}}}\n"
                      "core: {defaultRuleSyntax: v2}\n")
    static.write_text(static.read_text().replace(
        '    address: ":8443"\n', '    address: ":8443"\n    http2: {maxConcurrentStreams: 9}\n'))

    code, lines = check("-c", str(static))

    assert code == 0, lines
    text = "\n".join(lines)
    for expected in (
            'router "db@file": tls.options "nowhere" is ignored: the router passes TLS through',
            ('middleware "office@file": ipWhiteList is deprecated (as in Traefik); rename it to '
            "ipAllowList"),
            "tls.stores.internal: only the 'default' store is used, by Traefik's routers",
            "tls.stores.default.defaultGeneratedCert:",
            "udp: the udp section is ignored: Switchyard does not support UDP",
            "tracing: tracing is not implemented by Switchyard",
            "hostResolver: hostResolver is not implemented by Switchyard",
            "experimental: experimental features (plugins, ...) are not implemented",
            "core.defaultRuleSyntax: core.defaultRuleSyntax is not implemented by Switchyard",
            "entryPoints.web.http2: HTTP/2 settings are not implemented by Switchyard"):
        assert expected in text, expected
    assert lines[-1] == "1 routers, 1 services, 1 middlewares: configuration OK with 10 warnings"


CONTRADICTIONS = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.example.com`)"
      service: tls-db
      entryPoints: [web]
      tls: {passthrough: true}
    site:
      rule: "HostSNI(`www.example.com`)"
      service: app
      entryPoints: [web]
      tls: {}
    rest:
      rule: "HostSNI(`*`)"
      service: app
      entryPoints: [web]
  services:
    tls-db:
      loadBalancer:
        servers: [{address: "10.9.0.1:5432", tls: true}]
    app:
      loadBalancer:
        servers: [{address: "10.9.0.2:8080"}]
"""


def test_contradictions_are_warnings_that_name_both_sides(tmp_path: Path) -> None:
    static = write_config(tmp_path, CONTRADICTIONS)
    dynamic = tmp_path / "dynamic.yml"

    code, lines = check("-c", str(static))

    assert code == 0, lines
    [double] = [line for line in lines if "tcp.routers.db:" in line]
    assert double.startswith(f"{dynamic}:{line_of(dynamic, 'db:')}: warning: tcp.routers.db: "
                             'router "db@file": passes the client\'s TLS through')
    assert 'service "tls-db@file", whose servers 10.9.0.1:5432 have tls: true' in double
    [h2] = [line for line in lines if "tcp.routers.site:" in line]
    assert 'service "app@file"' in h2 and "set alpnProtocols: [http/1.1]" in h2
    [wait] = [line for line in lines if "entryPoints.web:" in line]
    assert wait.startswith(f"{static}:{line_of(static, 'web:')}: warning: entryPoints.web: "
                           'entryPoint "web": has TLS routers ("site@file", "db@file") and the '
                           'plain router "rest@file"')
    assert "closed after readTimeout (60s)" in wait
    assert lines[-1] == "3 routers, 2 services, 0 middlewares: configuration OK with 3 warnings"
