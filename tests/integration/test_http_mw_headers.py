"""headers, contentType and passTLSClientCert over real sockets, with curl and http.client.

A CORS preflight is curl's ``-X OPTIONS`` with Origin and Access-Control-Request-Method; the
client certificate is a trustme one curl presents with ``--cert``. The echo backend tells what
reached it; a second backend answers bodies without a Content-Type for the sniffing cases.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.harness import LoopThread, ensure_command
from tests.mwkit import echo_backend, echoed, serve

DYNAMIC = r"""
http:
  routers:
    cors: {rule: "PathPrefix(`/cors`)", service: echo, middlewares: [cors]}
    secure: {rule: "PathPrefix(`/secure`)", service: echo, middlewares: [secure], entryPoints: [web]}
    secure-tls:
      rule: "PathPrefix(`/secure`)"
      service: echo
      middlewares: [secure]
      entryPoints: [websecure]
      tls: {}
    custom: {rule: "PathPrefix(`/custom`)", service: echo, middlewares: [custom]}
    hosts: {rule: "PathPrefix(`/hosts`)", service: echo, middlewares: [hosts]}
    no-xff: {rule: "PathPrefix(`/noxff`)", service: echo, middlewares: [no-xff]}
    sniff: {rule: "PathPrefix(`/sniff`)", service: raw, middlewares: [sniff]}
    plain: {rule: "PathPrefix(`/plain`)", service: raw}
    certs:
      rule: "PathPrefix(`/certs`)"
      service: echo
      middlewares: [certs]
      entryPoints: [websecure]
      tls: {}
    unset: {rule: "PathPrefix(`/unset`)", service: echo, middlewares: [unset]}
    bad-regex: {rule: "PathPrefix(`/badregex`)", service: echo, middlewares: [bad-regex]}
    bad-name: {rule: "PathPrefix(`/badname`)", service: echo, middlewares: [bad-name]}
    bad-type: {rule: "PathPrefix(`/badtype`)", service: echo, middlewares: [bad-type]}
  middlewares:
    cors:
      headers:
        accessControlAllowMethods: [GET, PUT]
        accessControlAllowHeaders: [X-Token]
        accessControlAllowOriginList: ["https://app.test"]
        accessControlMaxAge: 600
        addVaryHeader: true
    secure:
      headers:
        stsSeconds: 31536000
        stsIncludeSubdomains: true
        frameDeny: true
        contentTypeNosniff: true
        browserXssFilter: true
        referrerPolicy: no-referrer
        permissionsPolicy: "camera=()"
        contentSecurityPolicy: "script-src $NONCE"
    custom:
      headers:
        customRequestHeaders: {X-Added: "in", X-Gone: ""}
        customResponseHeaders: {X-Out: "out", X-Backend-Secret: ""}
    hosts: {headers: {allowedHosts: [good.test]}}
    no-xff: {headers: {customRequestHeaders: {X-Forwarded-For: ""}}}
    sniff: {contentType: {}}
    certs:
      passTLSClientCert:
        pem: true
        info:
          notBefore: true
          notAfter: true
          sans: true
          serialNumber: true
          subject: {commonName: true, organization: true, organizationalUnit: true}
          issuer: {commonName: true, organization: true}
    unset: {headers: {frameDeny: false}}
    bad-regex: {headers: {accessControlAllowOriginListRegex: ["("]}}
    bad-name: {headers: {customResponseHeaders: {"X Bad": "v"}}}
    bad-type: {contentType: {autoDetect: maybe}}
  services:
    echo: {loadBalancer: {servers: [{url: "http://127.0.0.1:ECHO"}]}}
    raw: {loadBalancer: {servers: [{url: "http://127.0.0.1:RAW"}]}}
tls:
  certificates:
    - {certFile: "CERT", keyFile: "KEY"}
  options:
    default:
      clientAuth:
        caFiles: ["CLIENT_CA"]
        clientAuthType: VerifyClientCertIfGiven
"""


class _Untyped(http.server.BaseHTTPRequestHandler):
    """Answers ``<html>`` or binary bytes with a Content-Length and no Content-Type."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"\x00\x01binary" if self.path.endswith("bin") else b"<html><p>hello</p></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def untyped_backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Untyped)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA(organization_name="Clients Inc")
    issued = server_ca.issue_cert("h.test")
    issued.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    issued.private_key_pem.write_to_path(str(directory / "server.key"))
    server_ca.cert_pem.write_to_path(str(directory / "server-ca.pem"))
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    client = client_ca.issue_cert("client.test", "10.1.2.3", common_name="Client One",
                                  organization_name="Org A", organization_unit_name="Unit B")
    client.cert_chain_pems[0].write_to_path(str(directory / "client.crt"))
    client.private_key_pem.write_to_path(str(directory / "client.key"))
    return {"dir": directory, "client": client, "client_ca": client_ca}


@pytest.fixture(scope="module")
def ports(files: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, int]]:
    loop = LoopThread()
    directory = files["dir"]
    try:
        with echo_backend() as echo, untyped_backend() as raw:
            dynamic = (DYNAMIC.replace("ECHO", str(echo)).replace("RAW", str(raw))
                       .replace("CLIENT_CA", str(directory / "client-ca.pem"))
                       .replace("CERT", str(directory / "server.crt"))
                       .replace("KEY", str(directory / "server.key")))
            with serve(loop, tmp_path_factory.mktemp("sy"), dynamic, api={"insecure": True},
                       entrypoints={"web": "127.0.0.1:0", "websecure": "127.0.0.1:0"}) as found:
                yield found
    finally:
        loop.stop()


def curl(*args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, header fields (lower-case names) and body of one curl request."""
    done = subprocess.run([ensure_command("curl", "curl"), "-sS", "--http1.1", "-i", *args],
                          capture_output=True, timeout=20, check=True)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.lower(), []).append(value.strip())
    return int(lines[0].split()[1]), fields, body


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


# -- CORS -----------------------------------------------------------------------------------------


def test_a_curl_preflight_is_answered_by_the_middleware_itself(ports: dict[str, int]) -> None:
    status, fields, body = curl(
        "-X", "OPTIONS", "-H", "Origin: https://app.test",
        "-H", "Access-Control-Request-Method: PUT",
        "-H", "Access-Control-Request-Headers: X-Token",
        f"http://127.0.0.1:{ports['web']}/cors/items")
    assert status == 200
    assert body == b""
    assert fields["access-control-allow-origin"] == ["https://app.test"]
    assert fields["access-control-allow-methods"] == ["GET,PUT"]
    assert fields["access-control-allow-headers"] == ["X-Token"]
    assert fields["access-control-max-age"] == ["600"]
    assert fields["content-length"] == ["0"]
    # The backend never saw it: no Server or Content-Type of the echo backend, no Vary.
    assert "server" not in fields and "content-type" not in fields and "vary" not in fields


def test_a_preflight_from_an_origin_not_listed_gets_no_allow_origin(
        ports: dict[str, int]) -> None:
    status, fields, _ = curl("-X", "OPTIONS", "-H", "Origin: https://evil.test",
                             "-H", "Access-Control-Request-Method: PUT",
                             f"http://127.0.0.1:{ports['web']}/cors")
    assert status == 200
    assert "access-control-allow-origin" not in fields
    assert fields["access-control-allow-methods"] == ["GET,PUT"]


def test_options_without_request_method_is_no_preflight_and_reaches_the_backend(
        ports: dict[str, int]) -> None:
    status, fields, body = curl("-X", "OPTIONS", "-H", "Origin: https://app.test",
                                f"http://127.0.0.1:{ports['web']}/cors")
    assert status == 200
    assert echoed(body)["method"] == "OPTIONS"
    assert fields["access-control-allow-origin"] == ["https://app.test"]
    assert fields["vary"] == ["Origin"]
    assert "access-control-allow-methods" not in fields


def test_an_ordinary_response_gets_allow_origin_and_vary(ports: dict[str, int]) -> None:
    status, headers, _ = get(ports["web"], "/cors", {"Origin": "https://app.test",
                                                     "X-Echo-Header": "Vary: Accept"})
    assert status == 200
    assert headers.get_all("Access-Control-Allow-Origin") == ["https://app.test"]
    assert headers.get_all("Vary") == ["Accept,Origin"]


# -- security fields ------------------------------------------------------------------------------


def test_security_fields_replace_the_backends_and_sts_waits_for_https(
        ports: dict[str, int]) -> None:
    status, headers, _ = get(ports["web"], "/secure", {"X-Echo-Header": "X-Frame-Options: ALLOW"})
    assert status == 200
    assert headers.get_all("X-Frame-Options") == ["DENY"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Xss-Protection"] == "1; mode=block"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Permissions-Policy"] == "camera=()"
    assert "Strict-Transport-Security" not in headers  # plain HTTP, not forced


def test_sts_is_sent_over_https_and_each_response_gets_its_own_nonce(
        ports: dict[str, int], files: dict[str, Any]) -> None:
    seen = []
    for _ in range(2):
        status, fields, _ = curl(
            "--cacert", str(files["dir"] / "server-ca.pem"),
            "--resolve", f"h.test:{ports['websecure']}:127.0.0.1",
            f"https://h.test:{ports['websecure']}/secure")
        assert status == 200
        assert fields["strict-transport-security"] == ["max-age=31536000; includeSubDomains"]
        seen.append(fields["content-security-policy"][0])
    assert seen[0] != seen[1]
    assert all(value.startswith("script-src 'nonce-") and len(value) == 41 for value in seen)


def test_a_host_not_allowed_is_refused_with_bad_host(ports: dict[str, int]) -> None:
    status, headers, body = get(ports["web"], "/hosts", {"Host": "evil.test"})
    assert (status, body) == (500, b"Bad Host\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert get(ports["web"], "/hosts", {"Host": "GOOD.test"})[0] == 200


# -- custom fields --------------------------------------------------------------------------------


def test_custom_fields_are_set_and_an_empty_value_removes_one(ports: dict[str, int]) -> None:
    status, headers, body = get(ports["web"], "/custom", {
        "X-Gone": "secret", "X-Added": "client",
        "X-Echo-Header": "X-Backend-Secret: 42"})
    assert status == 200
    received = echoed(body)["fields"]
    assert received["x-added"] == ["in"]
    assert "x-gone" not in received
    assert headers["X-Out"] == "out"
    assert "X-Backend-Secret" not in headers


def test_an_empty_x_forwarded_for_sends_none_at_all(ports: dict[str, int]) -> None:
    # Go's nil header: neither the client's value nor the client address reach the backend.
    received = echoed(get(ports["web"], "/noxff", {"X-Forwarded-For": "10.9.9.9"})[2])["fields"]
    assert "x-forwarded-for" not in received
    assert "x-forwarded-for" in echoed(get(ports["web"], "/custom")[2])["fields"]


# -- contentType ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("/sniff/page", "text/html; charset=utf-8"),
    ("/sniff/bin", "application/octet-stream"),
    ("/plain/page", None),
])
def test_content_type_is_sniffed_only_behind_the_middleware(
        ports: dict[str, int], path: str, expected: str | None) -> None:
    status, headers, body = get(ports["web"], path)
    assert status == 200 and body
    assert headers.get("Content-Type") == expected


# -- passTLSClientCert ----------------------------------------------------------------------------


def _tls_curl(ports: dict[str, int], files: dict[str, Any], *extra: str
              ) -> tuple[int, dict[str, list[str]], bytes]:
    return curl("--cacert", str(files["dir"] / "server-ca.pem"),
                "--resolve", f"h.test:{ports['websecure']}:127.0.0.1",
                "-H", "X-Forwarded-Tls-Client-Cert: forged", *extra,
                f"https://h.test:{ports['websecure']}/certs")


def test_curl_client_certificate_reaches_the_backend_as_pem_and_info(
        ports: dict[str, int], files: dict[str, Any]) -> None:
    directory = files["dir"]
    status, _, body = _tls_curl(ports, files, "--cert", str(directory / "client.crt"),
                                "--key", str(directory / "client.key"))
    assert status == 200
    received = echoed(body)["fields"]
    certificate = x509.load_pem_x509_certificate(files["client"].cert_chain_pems[0].bytes())
    der = certificate.public_bytes(Encoding.DER)
    assert received["x-forwarded-tls-client-cert"] == [base64.b64encode(der).decode()]
    info = unquote_plus(received["x-forwarded-tls-client-cert-info"][0])
    ca_cert = x509.load_pem_x509_certificate(files["client_ca"].cert_pem.bytes())
    assert not ca_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert info == (
        'Subject="O=Org A,OU=Unit B,CN=Client One";'
        'Issuer="O=Clients Inc";'
        f'SerialNumber="{certificate.serial_number}";'
        f'NB="{int(certificate.not_valid_before_utc.timestamp())}";'
        f'NA="{int(certificate.not_valid_after_utc.timestamp())}";'
        'SAN="client.test,10.1.2.3"')


def test_without_a_client_certificate_nothing_is_passed_and_forged_fields_are_dropped(
        ports: dict[str, int], files: dict[str, Any]) -> None:
    status, _, body = _tls_curl(ports, files)
    assert status == 200
    received = echoed(body)["fields"]
    assert "x-forwarded-tls-client-cert" not in received
    assert "x-forwarded-tls-client-cert-info" not in received


def test_a_client_certificate_from_another_ca_is_refused(
        ports: dict[str, int], files: dict[str, Any], tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("stranger.test")
    pem = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context(cafile=str(files["dir"] / "server-ca.pem"))
    context.load_cert_chain(str(pem))
    # TLS 1.3 reports the refused certificate on the first read after the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError)), context.wrap_socket(
            socket.create_connection(("127.0.0.1", ports["websecure"]), timeout=5),
            server_hostname="h.test") as conn:
        conn.sendall(b"GET /certs HTTP/1.1\r\nHost: h.test\r\n\r\n")
        if not conn.recv(1):
            raise ConnectionError("closed")


# -- configuration errors -------------------------------------------------------------------------


def test_configuration_errors_disable_the_router_and_say_what_is_wrong(
        ports: dict[str, int]) -> None:
    status, _, body = get(ports["api"], "/api/http/routers")
    assert status == 200
    routers = {router["name"]: router.get("error", []) for router in json.loads(body)}
    status, _, body = get(ports["api"], "/api/http/middlewares")
    errors = {item["name"]: item.get("error", []) for item in json.loads(body)}
    assert errors["unset@file"] == ["headers configuration not valid"]
    assert routers["unset@file"] == ['headers configuration not valid']
    assert errors["bad-regex@file"][0].startswith("error occurred during origin parsing: ")
    assert errors["bad-name@file"] == [
        ('customResponseHeaders: "X Bad" is not a valid header field name '
         "(letters, digits and !#$%&'*+-.^_`|~ only)")]
    assert errors["bad-type@file"][0].startswith("autoDetect: ")
    for path in ("/unset", "/badregex", "/badname", "/badtype"):
        assert get(ports["web"], path)[0] == 404
