"""HTTP routers on the entry points TCP routers use: TCP first, then HTTP, with real clients."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.harness import (
    Backends,
    LoopThread,
    connect,
    ensure_command,
    greeting_name,
    http_server,
    read_until_closed,
    start_router,
    stop_router,
)


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (f"page {self.path} for {self.headers.get('Host')} "
                f"xff={self.headers.get('X-Forwarded-For')} "
                f"proto={self.headers.get('X-Forwarded-Proto')}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web_backend() -> Iterator[int]:
    with http_server(_Page) as port:
        yield port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


DYNAMIC = """
tcp:
  routers:
    db:
      rule: "HostSNI(`db.test`)"
      service: db
      entryPoints: [secure]
      tls: {{passthrough: true}}
    office:
      rule: "ClientIP(`10.0.0.0/8`)"
      service: whoami
      entryPoints: [plain]
  services:
    db: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{tls_whoami}"}}]}}}}
    whoami: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{whoami}"}}]}}}}
http:
  routers:
    web:
      rule: "Host(`web.test`)"
      service: site
      entryPoints: [secure]
      tls: {{}}
    site:
      rule: "Host(`site.test`) && PathPrefix(`/docs`)"
      service: site
      entryPoints: [plain]
  services:
    site:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{web}"}}]
tls:
  certificates:
    - {{certFile: "{cert}", keyFile: "{key}"}}
"""


@pytest.fixture
def shared(loop_thread: LoopThread, backends: Backends, web_backend: int, tmp_path: Path,
           ca: trustme.CA) -> Iterator[dict[str, int]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("db.test").configure_cert(context)
    tls_whoami = backends.whoami("db-backend", tls=context)
    issued = ca.issue_cert("web.test")
    cert, key = tmp_path / "web.crt", tmp_path / "web.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    app = start_router(loop_thread, tmp_path, DYNAMIC.format(
        tls_whoami=tls_whoami, whoami=backends.whoami("office"), web=web_backend,
        cert=cert, key=key), entrypoints={"secure": "127.0.0.1:0", "plain": "127.0.0.1:0"})
    try:
        yield {name: ep.port for name, ep in app.entrypoints.items()}
    finally:
        stop_router(loop_thread, app)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([ensure_command("curl", "curl"), "-sS", "--http1.1", *args],
                          capture_output=True, timeout=20, check=False)


def test_one_tls_port_serves_an_https_router_and_a_passthrough_tcp_router(
        shared: dict[str, int], ca: trustme.CA, tmp_path: Path) -> None:
    port = shared["secure"]
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    web = curl("--cacert", str(ca_file), "--resolve", f"web.test:{port}:127.0.0.1",
               f"https://web.test:{port}/docs/a")
    assert web.stdout == b"page /docs/a for web.test:%d xff=127.0.0.1 proto=https\n" % port, \
        web.stderr
    context = ssl.create_default_context(cafile=str(ca_file))
    with context.wrap_socket(connect(port), server_hostname="db.test") as db:
        assert greeting_name(db) == "db-backend"  # the backend's own certificate: passed through


def test_a_tls_hello_no_router_takes_gets_the_default_https_handler(
        shared: dict[str, int]) -> None:
    port = shared["secure"]
    answer = curl("-k", "--resolve", f"nobody.test:{port}:127.0.0.1",
                  f"https://nobody.test:{port}/")
    assert answer.stdout == b"404 page not found\n", answer.stderr


def test_plain_port_http_fallback_behind_a_tcp_client_ip_router(shared: dict[str, int]) -> None:
    port = shared["plain"]
    found = curl("-H", "Host: site.test", f"http://127.0.0.1:{port}/docs/x?y=1")
    assert found.stdout == b"page /docs/x?y=1 for site.test xff=127.0.0.1 proto=http\n"
    missing = curl("-i", "-H", "Host: site.test", f"http://127.0.0.1:{port}/other")
    assert missing.stdout.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert missing.stdout.endswith(b"\r\n\r\n404 page not found\n")


def test_a_line_that_is_not_http_gets_400_and_only_that_connection_closes(
        shared: dict[str, int]) -> None:
    port = shared["plain"]
    with connect(port) as conn:
        conn.sendall(b"HELLO THERE\r\n\r\n")
        reply = read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    ok = curl("-H", "Host: site.test", f"http://127.0.0.1:{port}/docs/")
    assert ok.stdout.startswith(b"page /docs/")


def test_keep_alive_serves_several_requests_on_one_connection(shared: dict[str, int]) -> None:
    port = shared["plain"]
    with connect(port) as conn:
        for index in range(3):
            conn.sendall(b"GET /docs/%d HTTP/1.1\r\nHost: site.test\r\n\r\n" % index)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            assert head.startswith(b"HTTP/1.1 200 OK")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += conn.recv(4096)
            assert body.startswith(b"page /docs/%d" % index)
        conn.shutdown(socket.SHUT_WR)


SERVICES = """
http:
  routers:
    split:
      rule: "PathPrefix(`/`)"
      service: split
  services:
    split:
      weighted:
        services: [{{name: healthy, weight: 1}}, {{name: also, weight: 1}}]
    healthy:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{live}"}}, {{url: "http://127.0.0.1:{dead}"}}]
        healthCheck: {{path: /docs/health, interval: 100ms, timeout: 1s}}
    also:
      loadBalancer:
        servers: [{{url: "http://127.0.0.1:{live}/"}}]
        passHostHeader: false
"""


def test_weighted_and_health_checked_services_from_the_configuration(
        loop_thread: LoopThread, web_backend: int, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = unused.getsockname()[1]  # nothing listens there once this closes
    app = start_router(loop_thread, tmp_path, SERVICES.format(live=web_backend, dead=dead))
    try:
        port = app.entrypoints["ep"].port
        loop_thread.run(_sleep(0.5))  # a few health-check rounds: the dead server goes DOWN
        hosts = [curl("-H", "Host: split.test", f"http://127.0.0.1:{port}/docs/x").stdout
                 for _ in range(8)]
        assert all(h.startswith(b"page /docs/x for ") for h in hosts), hosts
        # Both children answer: one passes the client's Host, the other its server's.
        assert {h.split(b" ")[3] for h in hosts} == {b"split.test", b"127.0.0.1:%d" % web_backend}
    finally:
        stop_router(loop_thread, app)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_each_request_has_traefiks_access_log_line_and_metrics(
        loop_thread: LoopThread, web_backend: int, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = start_router(loop_thread, tmp_path, f"""
http:
  routers:
    site: {{rule: "PathPrefix(`/`)", service: site}}
  services:
    site: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{web_backend}"}}]}}}}
""", entrypoints={"ep": "127.0.0.1:0", "traefik": "127.0.0.1:0"},
        api={"insecure": True}, metrics={"prometheus": {"addRoutersLabels": True}},
        accessLog={"filePath": str(log), "format": "json"})
    try:
        port = app.entrypoints["ep"].port
        assert curl(f"http://127.0.0.1:{port}/docs/a").stdout.startswith(b"page /docs/a")
        assert curl("-o", "/dev/null", "-w", "%{http_code}",
                    f"http://127.0.0.1:{port}/%zz").stdout == b"400"
        api = f"http://127.0.0.1:{app.internal_servers[0].port}"
        metrics = curl(f"{api}/metrics").stdout.decode()
        [router] = [r for r in json.loads(curl(f"{api}/api/http/routers").stdout)
                    if r["provider"] != "internal"]
        assert (router["name"], router["status"], router["entryPoints"], router["provider"]) == (
            "site@file", "enabled", ["ep"], "file")
        assert router["priorityStr"] == str(len("PathPrefix(`/`)"))
        service = json.loads(curl(f"{api}/api/http/services/site@file").stdout)
        assert service["type"] == "loadbalancer" and service["usedBy"] == ["site@file"]
        assert service["serverStatus"] == {f"http://127.0.0.1:{web_backend}": "UP"}
        missing = curl("-o", "/dev/null", "-w", "%{http_code}", f"{api}/api/http/routers/nope")
        assert missing.stdout == b"404"

        async def flush() -> None:
            assert app.http_access_log is not None
            app.http_access_log.flush()
        loop_thread.run(flush())
    finally:
        stop_router(loop_thread, app)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    served = [line for line in lines if line.get("RouterName") == "site@file"]
    assert served and served[0]["DownstreamStatus"] == 200
    assert served[0]["RequestPath"] == "/docs/a" and served[0]["entryPointName"] == "ep"
    assert ('traefik_entrypoint_requests_total{code="200",entrypoint="ep",method="GET",'
            'protocol="http"} 1.0') in metrics
    assert 'traefik_router_requests_total{code="200",method="GET",protocol="http",' \
           'router="site@file",service="site@file"} 1.0' in metrics


def test_an_entry_point_with_tcp_routers_only_still_has_traefiks_http_server(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    db: {{rule: "HostSNI(`db.test`)", service: db, tls: {{passthrough: true}}}}
    office: {{rule: "ClientIP(`10.0.0.0/8`)", service: db}}
  services:
    db: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backends.whoami("db")}"}}]}}}}
""")
    try:
        port = app.entrypoints["ep"].port
        tls = curl("-k", "--resolve", f"other.test:{port}:127.0.0.1", f"https://other.test:{port}/")
        assert tls.stdout == b"404 page not found\n", tls.stderr
        with connect(port) as conn:
            conn.sendall(b"HELLO\r\n\r\n")
            assert read_until_closed(conn).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    finally:
        stop_router(loop_thread, app)
