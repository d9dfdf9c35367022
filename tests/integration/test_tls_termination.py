"""TLS termination, TLS options, TLS to backends and Postgres STARTTLS, with real clients."""

from __future__ import annotations

import http.server
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Backends,
    LoopThread,
    connect,
    ensure_command,
    greeting_name,
    http_server,
    read_until_closed,
    start_router,
)


@pytest.fixture
def pem(tmp_path: Path, ca: Any):  # type: ignore[no-untyped-def]
    """Writes a certificate for some names; returns (cert path, key path)."""

    def make(*names: str) -> tuple[str, str]:
        cert = ca.issue_cert(*names)
        stem = tmp_path / names[0].replace("*", "star")
        cert.cert_chain_pems[0].write_to_path(f"{stem}.crt")
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(f"{stem}.crt", append=True)
        cert.private_key_pem.write_to_path(f"{stem}.key")
        return f"{stem}.crt", f"{stem}.key"

    return make


def client_context(ca: Any, *, alpn: list[str] | None = None,
                   max_version: ssl.TLSVersion | None = None,
                   client_cert: Any = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    if max_version is not None:
        context.maximum_version = max_version
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


def tls_connect(port: int, sni: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def peer_names(conn: ssl.SSLSocket) -> list[str]:
    cert = conn.getpeercert()
    assert cert is not None
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


def terminating_router(loop_thread: LoopThread, tmp_path: Path, backend: int, certs: list[tuple[str, str]],
                       options: str = "", router_options: str = "", rule: str = "HostSNI(`*`)",
                       **static: Any) -> int:
    certificates = "\n".join(f'    - {{certFile: "{c}", keyFile: "{k}"}}' for c, k in certs)
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    secure:
      rule: "{rule}"
      service: app
      tls: {{options: "{router_options}"}}
  services:
    app: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}}}
tls:
  certificates:
{certificates}
{options}
""", **static)
    return app.entrypoints["ep"].port


def test_certificate_is_chosen_by_sni_and_the_backend_gets_plaintext(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(loop_thread, tmp_path, backends.whoami("plain-backend"),
                              [pem("one.test"), pem("*.two.test")])
    context = client_context(ca)
    with tls_connect(port, "one.test", context) as conn:
        assert peer_names(conn) == ["one.test"]
        assert greeting_name(conn) == "plain-backend"  # whoami speaks plaintext to us
        conn.sendall(b"secret")
        assert conn.recv(6) == b"secret"
    with tls_connect(port, "x.two.test", context) as conn:
        assert peer_names(conn) == ["*.two.test"]


def test_unknown_sni_gets_the_generated_default_certificate(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with tls_connect(port, "other.test", context) as conn:
        der = conn.getpeercert(binary_form=True)
        assert der is not None
        from cryptography import x509

        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        assert "TRAEFIK DEFAULT CERT" in subject


def test_h2_is_negotiated_by_default_even_for_raw_tcp(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    # Traefik's default alpnProtocols include h2 (spec 4.5 [S]).
    port = terminating_router(loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")])
    with tls_connect(port, "one.test", client_context(ca, alpn=["h2", "http/1.1"])) as conn:
        assert conn.selected_alpn_protocol() == "h2"


def test_min_version_refuses_an_older_client(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(
        loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")],
        options="  options:\n    modern: {minVersion: VersionTLS13}", router_options="modern")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(port, "one.test", client_context(ca, max_version=ssl.TLSVersion.TLSv1_2))
    with tls_connect(port, "one.test", client_context(ca)) as conn:
        assert conn.version() == "TLSv1.3"


def test_require_and_verify_client_cert(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    ca_file = tmp_path / "clients-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = terminating_router(
        loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")],
        options=f"""  options:
    mtls:
      clientAuth:
        caFiles: ["{ca_file}"]
        clientAuthType: RequireAndVerifyClientCert""", router_options="mtls")
    # TLS 1.3 reports a missing client certificate on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError)), tls_connect(
            port, "one.test", client_context(ca)) as conn:
        conn.recv(1)
    client_cert = ca.issue_cert("client@example.test")
    with tls_connect(port, "one.test", client_context(ca, client_cert=client_cert)) as conn:
        assert greeting_name(conn) == "b"


def test_sni_strict_refuses_an_unknown_name(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")],
                              options="  options:\n    default: {sniStrict: true}")
    context = client_context(ca)
    context.check_hostname = False
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(port, "nobody.test", context)
    with tls_connect(port, "one.test", client_context(ca)) as conn:
        assert greeting_name(conn) == "b"


def test_broken_tls_options_close_matching_connections_and_show_an_error(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(
        loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")],
        options="  options:\n    broken: {minVersion: VersionTLS99}", router_options="broken")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(port, "one.test", client_context(ca))


def test_garbage_after_a_valid_hello_closes_that_connection(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="one.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with connect(port) as conn:
        conn.sendall(hello + b"\x17\x03\x03\x00\x05garbage" * 3)
        data = read_until_closed(conn)
    assert not data.startswith(b"Hostname")  # at most a ServerHello and an alert, never plaintext
    with tls_connect(port, "one.test", client_context(ca)) as conn:
        assert greeting_name(conn) == "b"


def test_client_that_stops_mid_handshake_is_closed_at_the_read_timeout(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(
        loop_thread, tmp_path, backends.whoami("b"), [pem("one.test")],
        entrypoint_options={"ep": {"transport": {"respondingTimeouts": {"readTimeout": "500ms"}}}})
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="one.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    with connect(port) as conn:
        conn.sendall(outgoing.read())  # the hello, then silence
        started = time.monotonic()
        read_until_closed(conn)
        assert 0.3 < time.monotonic() - started < 3


def test_openssl_s_client_sees_the_sni_certificate(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any, pem: Any) -> None:
    port = terminating_router(loop_thread, tmp_path, backends.whoami("b"),
                              [pem("one.test"), pem("two.test")])
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def verified(servername: str, expected_name: str) -> bool:
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername,
             "-CAfile", str(ca_file), "-verify_hostname", expected_name, "-verify_return_error",
             "-brief"], input=b"", capture_output=True, timeout=20, check=False)
        return b"Verification: OK" in result.stderr + result.stdout

    assert verified("two.test", "two.test")
    assert verified("one.test", "one.test")
    assert not verified("one.test", "two.test")  # the check itself can fail


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over plain http\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_backend() -> Iterator[int]:
    with http_server(_Page) as port:
        yield port


def test_curl_over_https_reaches_a_plain_http_backend(
        loop_thread: LoopThread, http_backend: int, tmp_path: Path, ca: Any, pem: Any) -> None:
    curl = ensure_command("curl", "curl")
    port = terminating_router(loop_thread, tmp_path, http_backend, [pem("app.test")],
                              rule="HostSNI(`app.test`)")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    result = subprocess.run(
        [curl, "-sS", "--http1.1", "--cacert", str(ca_file), "--resolve",
         f"app.test:{port}:127.0.0.1", f"https://app.test:{port}/"],
        capture_output=True, timeout=20, check=False)
    assert result.stdout == b"hello over plain http\n", result.stderr


# -- TLS to backends -----------------------------------------------------------

def tls_whoami(backends: Backends, ca: Any, *names: str) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    return backends.whoami("tls-backend", tls=context)


def backend_tls_router(loop_thread: LoopThread, tmp_path: Path, address: str,
                       transport_tls: str) -> int:
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app:
      loadBalancer:
        servers: [{{address: "{address}", tls: true}}]
        serversTransport: secure
  serversTransports:
    secure:
      tls: {transport_tls}
""")
    return app.entrypoints["ep"].port


def test_backend_tls_verifies_the_server_host_name_without_server_name(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    backend = tls_whoami(backends, ca, "localhost")
    ca_file = tmp_path / "backend-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = backend_tls_router(loop_thread, tmp_path, f"localhost:{backend}",
                              f'{{rootCAs: ["{ca_file}"]}}')
    with connect(port) as conn:
        assert greeting_name(conn) == "tls-backend"


def test_backend_tls_with_an_untrusted_certificate_fails_the_dial(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    backend = tls_whoami(backends, ca, "localhost")
    port = backend_tls_router(loop_thread, tmp_path, f"localhost:{backend}", "{}")
    with connect(port) as conn:
        assert read_until_closed(conn) == b""


def test_backend_tls_insecure_skip_verify(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    backend = tls_whoami(backends, ca, "elsewhere.test")
    port = backend_tls_router(loop_thread, tmp_path, f"127.0.0.1:{backend}",
                              "{insecureSkipVerify: true}")
    with connect(port) as conn:
        assert greeting_name(conn) == "tls-backend"


def test_health_check_of_a_tls_server_speaks_tls(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any) -> None:
    backend = tls_whoami(backends, ca, "elsewhere.test")
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{backend}", tls: true}}]
        serversTransport: secure
        healthCheck: {{interval: 50ms, timeout: 1s, expect: "Hostname: tls-backend"}}
  serversTransports:
    secure:
      tls: {{insecureSkipVerify: true}}
""")
    balancer = app.runtime.service_objects["app@file"]
    from switchyard.services.healthcheck import probe

    # The greeting only comes over TLS: a plain probe could never read it.
    server = balancer.servers[0]  # type: ignore[union-attr]
    assert loop_thread.run(probe(server, balancer.health_check, balancer.transport)) is None  # type: ignore[union-attr]
    time.sleep(0.3)
    assert balancer.server_status() == {f"127.0.0.1:{backend}": "UP"}  # type: ignore[union-attr]


def test_a_tls_backend_that_finishes_leaves_no_asyncio_warning(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    backend = tls_whoami(backends, ca, "localhost")
    port = backend_tls_router(loop_thread, tmp_path, f"localhost:{backend}",
                              "{insecureSkipVerify: true}")
    with caplog.at_level(logging.WARNING, logger="asyncio"), connect(port) as conn:
        assert greeting_name(conn) == "tls-backend"
        conn.shutdown(socket.SHUT_WR)  # the backend answers the half-close by closing
        assert read_until_closed(conn) == b""
    assert not [r for r in caplog.records if "eof_received" in r.getMessage()]
