"""The embedded demo: whoami backends, a demo config, and Switchyard routing to them."""

from __future__ import annotations

import asyncio
import datetime
import tempfile
from pathlib import Path

import yaml

from switchyard.config.loader import load_static
from switchyard.server import Switchyard
from switchyard.whoami import server_tls_context, start_http_whoami, start_whoami

DEMO_CONFIG = """\
# Switchyard demo: the dynamic configuration, in Traefik's own format.
tcp:
  routers:
    # TLS passthrough, routed by SNI: the backend terminates TLS itself.
    secure:
      entryPoints: [tls]
      rule: "HostSNI(`secure.demo.localhost`)"
      service: tls-backend
      tls:
        passthrough: true
    # A wildcard SNI router: any other *.demo.localhost name.
    wildcard:
      entryPoints: [tls]
      rule: "HostSNI(`*.demo.localhost`)"
      service: tls-backend-2
      tls:
        passthrough: true
    # Plain TCP catch-all: every plain connection, round robin over two servers.
    plain:
      entryPoints: [tcp]
      rule: "HostSNI(`*`)"
      service: plain-backends
    # Allow-listed: loopback clients only, at most 2 at a time per client IP.
    admin:
      entryPoints: [admin]
      rule: "HostSNI(`*`)"
      service: admin-backend
      middlewares: [local-only, two-at-a-time]
    # Allow-listed for a network you are not in: every connection is refused.
    blocked:
      entryPoints: [blocked]
      rule: "HostSNI(`*`)"
      service: admin-backend
      middlewares: [documentation-net-only]
  middlewares:
    local-only:
      ipAllowList:
        sourceRange: ["127.0.0.1/32", "::1"]
    two-at-a-time:
      inFlightConn:
        amount: 2
    documentation-net-only:
      ipAllowList:
        sourceRange: ["192.0.2.0/24"]
  services:
    tls-backend:
      loadBalancer:
        servers: [{address: "127.0.0.1:{tls_a}"}]
    tls-backend-2:
      loadBalancer:
        servers: [{address: "127.0.0.1:{tls_b}"}]
    plain-backends:
      loadBalancer:
        servers: [{address: "127.0.0.1:{plain_a}"}, {address: "127.0.0.1:{plain_b}"}]
    admin-backend:
      loadBalancer:
        servers: [{address: "127.0.0.1:{admin}"}]
http:
  routers:
    # HTTP on its own entry point: round robin over two HTTP backends, a response header added.
    app:
      entryPoints: [web]
      rule: "Host(`app.demo.localhost`)"
      service: app
      middlewares: [demo-header]
    # The longer rule wins for /api: its own backend, the prefix stripped on the way.
    app-api:
      entryPoints: [web]
      rule: "Host(`app.demo.localhost`) && PathPrefix(`/api`)"
      service: api
      middlewares: [strip-api, demo-header]
    # HTTPS, terminated here with the demo certificate, on the entry point of the TLS
    # passthrough routers: an HTTPS router's own Host wins over the TCP wildcard.
    app-secure:
      entryPoints: [tls]
      rule: "Host(`app.demo.localhost`)"
      service: app
      middlewares: [demo-header]
      tls: {}
  middlewares:
    demo-header:
      headers:
        customResponseHeaders:
          X-Demo: "switchyard"
    strip-api:
      stripPrefix:
        prefixes: ["/api"]
  services:
    app:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:{http_a}"}, {url: "http://127.0.0.1:{http_b}"}]
    api:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:{http_api}"}]
tls:
  certificates:
    - certFile: "{cert}"
      keyFile: "{key}"
"""


def write_self_signed(directory: Path) -> tuple[str, str]:
    """A throwaway certificate for *.demo.localhost, so the TLS backends can serve."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "demo.localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("demo.localhost"), x509.DNSName("*.demo.localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "demo.crt", directory / "demo.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def run_demo(base_port: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-demo-"))
    cert, key = write_self_signed(workdir)
    tls = server_tls_context(cert, key)
    backends = {
        "tls_a": await start_whoami("secure-backend", tls=tls),
        "tls_b": await start_whoami("wildcard-backend", tls=tls),
        "plain_a": await start_whoami("plain-a"),
        "plain_b": await start_whoami("plain-b"),
        "admin": await start_whoami("admin-backend"),
        "http_a": await start_http_whoami("app-a"),
        "http_b": await start_http_whoami("app-b"),
        "http_api": await start_http_whoami("api-backend"),
    }
    values = {name: str(server.sockets[0].getsockname()[1]) for name, server in backends.items()}
    values.update(cert=cert, key=key)
    dynamic = workdir / "dynamic.yml"
    text = DEMO_CONFIG
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    dynamic.write_text(text)
    entrypoints = {"tcp": base_port, "admin": base_port + 1, "blocked": base_port + 2,
                   "tls": base_port + 3, "web": base_port + 4, "traefik": base_port + 5}
    access_log = workdir / "access.log"
    static_file = workdir / "traefik.yml"
    # A real static file, so that the `check` and `explain` commands printed below read the
    # same configuration the demo runs.
    static_file.write_text(yaml.safe_dump({
        "entryPoints": {name: {"address": f"127.0.0.1:{port}"}
                        for name, port in entrypoints.items()},
        "providers": {"file": {"filename": str(dynamic)}},
        "api": {"insecure": True, "dashboard": True},
        "ping": {},
        "metrics": {"prometheus": {}},
        "accessLog": {"filePath": str(access_log), "format": "json"},
    }, sort_keys=False))
    static, _ = load_static(str(static_file))
    app = Switchyard(static)
    tcp, admin, blocked, tls_port, web, api = (entrypoints[n] for n in (
        "tcp", "admin", "blocked", "tls", "web", "traefik"))
    serving = asyncio.create_task(app.serve())
    # The API entry point is the last to listen: say what to try once everything answers.
    while not app.internal_servers and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():
        await serving  # it failed to start: let the error through
    print(f"""
Switchyard demo is running. Static config: {static_file}
                            Dynamic config: {dynamic}

  Plain TCP catch-all, round robin over plain-a / plain-b (run it twice):
    nc 127.0.0.1 {tcp}
  TLS passthrough by SNI (the backend's own certificate answers):
    openssl s_client -connect 127.0.0.1:{tls_port} -servername secure.demo.localhost -quiet
  Wildcard SNI router (*.demo.localhost):
    openssl s_client -connect 127.0.0.1:{tls_port} -servername anything.demo.localhost -quiet
  Unknown SNI: no TCP router matches; the default HTTPS handler answers (its own
  certificate, then HTTP 404), as Traefik does:
    openssl s_client -connect 127.0.0.1:{tls_port} -servername example.com -quiet
  Allow-listed (loopback allowed, at most 2 connections at a time):
    nc 127.0.0.1 {admin}
  Allow-listed for 192.0.2.0/24 only: closed at once, nothing written:
    nc 127.0.0.1 {blocked}

Each backend greets with its name and the client address it sees, then echoes.

  HTTP routers (Host; Host && PathPrefix, the longer rule first), round robin over
  app-a / app-b; each answers with its name and the request head it received:
    curl -i -H 'Host: app.demo.localhost' http://127.0.0.1:{web}/
    curl -H 'Host: app.demo.localhost' http://127.0.0.1:{web}/api/users
  HTTPS terminated here, on the same entry point as the TLS passthrough routers:
    curl -k --resolve app.demo.localhost:{tls_port}:127.0.0.1 https://app.demo.localhost:{tls_port}/

  Dashboard:     http://127.0.0.1:{api}/dashboard/
  API:           http://127.0.0.1:{api}/api/rawdata
  Metrics:       http://127.0.0.1:{api}/metrics
  Ping:          http://127.0.0.1:{api}/ping   (switchyard healthcheck -c {static_file})
  Access log:    {access_log}   (one JSON line per connection)

  Which router takes a connection, and why (asks this running instance):
    switchyard explain -c {static_file} --entrypoint tls --sni secure.demo.localhost \\
      --client-ip 127.0.0.1
    switchyard explain -c {static_file} --entrypoint blocked --client-ip 127.0.0.1
    switchyard explain -c {static_file} --entrypoint web --host app.demo.localhost \\
      --path /api/users --client-ip 127.0.0.1
  Every configuration problem, with file and line:
    switchyard check -c {static_file}

Ctrl-C stops.
""", flush=True)
    try:
        await serving
    finally:
        for server in backends.values():
            server.close()
