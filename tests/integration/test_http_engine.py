"""The HTTP/1.1 engine over real sockets: handover, proxying, errors, upgrades, pipelining."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.forwarded import ForwardedHeaders
from switchyard.http.handler import RequestRecord
from switchyard.http.proxy import ReverseProxy, parse_server_url
from switchyard.http.responder import NOT_FOUND
from switchyard.http.server import ServerSettings
from switchyard.http.upstream import UpstreamSettings
from tests.harness import LoopThread
from tests.httpkit import Engine, H11Backend

GET = b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n"


@pytest.fixture
def backend(loop_thread: LoopThread) -> Iterator[H11Backend]:
    server = H11Backend(loop_thread)
    yield server
    server.close()


def balancer(*urls: str, settings: UpstreamSettings | None = None, **options: Any) -> LoadBalancer:
    servers = [BalancedServer(ReverseProxy(parse_server_url(url), settings=settings, **options))
               for url in urls]
    return LoadBalancer("app@file", servers)


@pytest.fixture
def engine_for(loop_thread: LoopThread) -> Iterator[Any]:
    started: list[Engine] = []

    def start(handler: Any, settings: ServerSettings | None = None, peek: int = 0,
              layered: bool = False) -> Engine:
        engine = Engine(loop_thread, handler, settings, peek, layered)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.close()


def exchange_raw(port: int, data: bytes, *, until_close: bool = True,
                 timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if not until_close:
            return sock.recv(65536)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` complete Content-Length responses from ``sock``."""
    buffer = b""
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} responses"
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += sock.recv(65536)
        responses.append(head + b"\r\n\r\n" + rest[:length])
        buffer = rest[length:]
    return responses


def echo_of(response: bytes) -> dict[str, Any]:
    return json.loads(response.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


def headers_of(echo: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-s", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 5, check=False)


# -- handover --------------------------------------------------------------------------------


def test_whole_first_request_in_the_peeked_bytes_is_served(engine_for: Any,
                                                           backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url), peek=len(GET))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(GET)
        first, = read_responses(sock, 1)
        sock.sendall(GET)
        second, = read_responses(sock, 1)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and second.startswith(b"HTTP/1.1 200 OK\r\n")
    assert echo_of(first)["target"] == "/echo"


def test_request_split_between_peek_and_later_reads_is_served(engine_for: Any,
                                                              backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url), peek=7)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        for piece in (GET[:7], GET[7:20], GET[20:]):
            sock.sendall(piece)
            time.sleep(0.05)
        response, = read_responses(sock, 1)
    assert echo_of(response)["target"] == "/echo"


# -- Go's answers without a backend -----------------------------------------------------------


def test_unrouted_request_gets_go_not_found_exactly(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(GET)
        response, = read_responses(sock, 1)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 404 Not Found"
    assert b"Content-Type: text/plain; charset=utf-8" in lines
    assert b"X-Content-Type-Options: nosniff" in lines
    assert b"Content-Length: 19" in lines
    assert any(line.startswith(b"Date: ") for line in lines)
    assert body == b"404 page not found\n"


def test_garbage_gets_go_bad_request_bytes_and_close(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND)
    assert exchange_raw(engine.port, b"HELLO THERE\r\n\r\n") == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n400 Bad Request")


def test_missing_host_gets_go_bad_request_with_reason(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND)
    assert exchange_raw(engine.port, b"GET / HTTP/1.1\r\n\r\n") == (
        b"HTTP/1.1 400 Bad Request: missing required Host header\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        b"400 Bad Request: missing required Host header")


def test_bytes_without_line_end_wait_for_the_read_timeout(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND, ServerSettings(read_timeout=0.5))
    started = time.monotonic()
    assert exchange_raw(engine.port, b"GET / HTT") == b""
    assert 0.4 < time.monotonic() - started < 3


def test_idle_keep_alive_connection_closes_after_idle_timeout(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND, ServerSettings(idle_timeout=0.3))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(GET)
        read_responses(sock, 1)
        started = time.monotonic()
        assert sock.recv(100) == b""
    assert 0.2 < time.monotonic() - started < 3


# -- proxying -------------------------------------------------------------------------------


def test_keep_alive_requests_reuse_one_backend_connection(engine_for: Any,
                                                          backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    urls = [f"{engine.url}/echo?n={n}" for n in range(5)]
    result = curl(*urls)
    assert result.returncode == 0
    assert result.stdout.count(b'"method": "GET"') == 5
    # Two more curls, new client connections: the idle backend connection serves them too.
    assert curl(urls[0]).returncode == 0 and curl(urls[1]).returncode == 0
    assert backend.connections == 1


def test_backend_closing_idle_connections_is_retried_transparently(
        loop_thread: LoopThread, engine_for: Any) -> None:
    closing = H11Backend(loop_thread, close_after_response=True)
    try:
        engine = engine_for(balancer(closing.url))
        with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(GET)
                response, = read_responses(sock, 1)
                assert response.startswith(b"HTTP/1.1 200 OK")
                time.sleep(0.05)  # the backend's FIN arrives while the connection is idle
    finally:
        closing.close()


def test_pipelined_requests_are_answered_in_order(engine_for: Any, backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    requests = b"".join(
        b"GET /slow?delay=%s&n=%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % (delay, n)
        for n, delay in enumerate((b"0.2", b"0", b"0.1", b"0")))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(requests)
        responses = read_responses(sock, 4)
    assert [echo_of(r)["target"].rpartition("=")[2] for r in responses] == ["0", "1", "2", "3"]


def test_pipelined_requests_to_not_found_are_all_answered(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(GET * 200)
        responses = read_responses(sock, 200)
    assert all(r.startswith(b"HTTP/1.1 404 ") for r in responses)


def test_refused_backend_gives_bad_gateway(engine_for: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for(balancer(f"http://127.0.0.1:{port}"))
    result = curl("-i", engine.url + "/")
    assert result.stdout.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert result.stdout.endswith(b"\r\n\r\nBad Gateway")


def test_silent_backend_gives_gateway_timeout_after_response_header_timeout(
        engine_for: Any, backend: H11Backend) -> None:
    settings = UpstreamSettings(response_header_timeout=0.3)
    engine = engine_for(balancer(backend.url, settings=settings))
    started = time.monotonic()
    result = curl("-i", engine.url + "/hang")
    assert result.stdout.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert result.stdout.endswith(b"\r\n\r\nGateway Timeout")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("chunked", ["", "1"])
def test_backend_killed_mid_response_leaves_the_response_incomplete(
        engine_for: Any, backend: H11Backend, chunked: str) -> None:
    engine = engine_for(balancer(backend.url))
    result = curl(f"{engine.url}/die?chunked={chunked}")
    # 18: partial file (Content-Length), 56: failure receiving (chunked framing not ended).
    assert result.returncode in (18, 56), result
    assert len(result.stdout) == 1000


def test_head_request_keeps_the_connections_usable(engine_for: Any,
                                                   backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    result = curl("-I", f"{engine.url}/download?size=5000", "--next",
                  f"{engine.url}/echo")
    assert result.returncode == 0
    assert b"Content-Length: 5000" in result.stdout
    assert result.stdout.endswith(b"}")
    assert backend.connections == 1


def test_pass_host_header_false_sends_the_server_host(engine_for: Any,
                                                      backend: H11Backend) -> None:
    passing = engine_for(balancer(backend.url))
    own = engine_for(balancer(backend.url, pass_host_header=False))
    with socket.create_connection(("127.0.0.1", passing.port), timeout=5) as sock:
        sock.sendall(GET)
        kept = headers_of(echo_of(read_responses(sock, 1)[0]))
    with socket.create_connection(("127.0.0.1", own.port), timeout=5) as sock:
        sock.sendall(GET)
        replaced = headers_of(echo_of(read_responses(sock, 1)[0]))
    assert kept["host"] == ["app.test"]
    assert replaced["host"] == [f"127.0.0.1:{backend.port}"]
    assert replaced["x-forwarded-host"] == ["app.test"]


def test_server_url_path_is_joined_only_with_preserve_path(engine_for: Any,
                                                           backend: H11Backend) -> None:
    ignored = engine_for(balancer(backend.url + "/base/"))
    joined = engine_for(balancer(backend.url + "/base/", preserve_path=True))
    for engine, expected in ((ignored, "/echo?a=1&b=2"), (joined, "/base/echo?a=1&b=2")):
        with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
            sock.sendall(b"GET /echo?a=1;b=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert echo_of(read_responses(sock, 1)[0])["target"] == expected


# -- headers --------------------------------------------------------------------------------


def forwarded_echo(engine: Engine, extra: bytes) -> dict[str, list[str]]:
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: app.test:8080\r\n" + extra + b"\r\n")
        return headers_of(echo_of(read_responses(sock, 1)[0]))


SPOOFED = (b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
           b"X-Forwarded-Host: evil.test\r\nX-Real-Ip: 203.0.113.7\r\nX_Forwarded_Port: 1\r\n")


def test_untrusted_peer_forwarded_headers_are_replaced(engine_for: Any,
                                                       backend: H11Backend) -> None:
    settings = ServerSettings(forwarded=ForwardedHeaders(trusted_ips=("10.0.0.0/8",),
                                                         hostname="edge-1"))
    seen = forwarded_echo(engine_for(balancer(backend.url), settings), SPOOFED)
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["app.test:8080"]
    assert seen["x-forwarded-port"] == ["8080"]
    assert seen["x-forwarded-server"] == ["edge-1"]
    assert seen["x-real-ip"] == ["127.0.0.1"]
    assert "x_forwarded_port" not in seen


def test_trusted_peer_forwarded_headers_are_kept_and_appended(engine_for: Any,
                                                              backend: H11Backend) -> None:
    settings = ServerSettings(forwarded=ForwardedHeaders(trusted_ips=("127.0.0.1",)))
    seen = forwarded_echo(engine_for(balancer(backend.url), settings), SPOOFED)
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["evil.test"]
    assert seen["x-real-ip"] == ["203.0.113.7"]
    insecure = ServerSettings(forwarded=ForwardedHeaders(insecure=True))
    seen = forwarded_echo(engine_for(balancer(backend.url), insecure), SPOOFED)
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]


def test_hop_by_hop_headers_are_removed_both_ways(engine_for: Any, backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    seen = forwarded_echo(engine, b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                                  b"Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\n"
                                  b"TE: trailers, deflate\r\nProxy-Authorization: Basic x\r\n"
                                  b"Upgrade: h2c\r\nX-Kept: yes\r\n")
    for name in ("connection", "x-secret", "keep-alive", "proxy-connection", "upgrade",
                 "proxy-authorization"):
        assert name not in seen
    assert seen["te"] == ["trailers"]
    assert seen["x-kept"] == ["yes"]
    result = curl("-i", engine.url + "/hop")
    head = result.stdout.partition(b"\r\n\r\n")[0].lower()
    assert b"x-public: yes" in head
    for name in (b"x-private", b"keep-alive", b"proxy-authenticate", b"connection"):
        assert name not in head


# -- request bodies, 100-continue, observation -------------------------------------------------


def test_chunked_upload_arrives_whole(engine_for: Any, backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"abc", b"x" * 70000, b"z")) + \
        b"0\r\n\r\n"
    request = (b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(request)
        response, = read_responses(sock, 1)
    assert response.endswith(b"\r\n\r\n70004 " + _sha(b"abc" + b"x" * 70000 + b"z").encode())


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_expect_continue_is_relayed_from_the_backend(engine_for: Any,
                                                     backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response, = read_responses(sock, 1)
    assert response.endswith(b"5 " + _sha(b"hello").encode())


def test_early_final_answer_to_expect_continue_closes_the_client_connection(
        engine_for: Any, backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    received = exchange_raw(engine.port, b"POST /reject HTTP/1.1\r\nHost: a\r\n"
                                         b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")


def test_observer_gets_one_record_per_request(loop_thread: LoopThread, engine_for: Any,
                                              backend: H11Backend) -> None:
    records: list[RequestRecord] = []
    engine = engine_for(balancer(backend.url), ServerSettings(observer=records.append))
    assert curl(engine.url + "/echo", "--next", "-X", "POST", "-d", "abc",
                engine.url + "/upload").returncode == 0
    deadline = time.monotonic() + 2
    while len(records) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    first, second = records
    assert (first.method, first.path, first.status, first.service) == ("GET", "/echo", 200,
                                                                        "app@file")
    assert first.server == backend.url and first.entry_point == "web"
    assert first.protocol == "HTTP/1.1" and not first.tls and first.closed_by == ""
    assert first.response_bytes > 0 and 0 < first.duration < 2
    assert (second.method, second.request_bytes) == ("POST", 3)


# -- upgrades -------------------------------------------------------------------------------


def test_websocket_upgrade_is_relayed(loop_thread: LoopThread, engine_for: Any) -> None:
    _websocket_round_trip(loop_thread, engine_for, layered=False)


def _websocket_round_trip(loop_thread: LoopThread, engine_for: Any, *, layered: bool) -> None:
    import asyncio

    from websockets.asyncio.server import serve
    from websockets.sync.client import connect

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send("echo:" + message)

    async def start() -> Any:
        return await serve(echo, "127.0.0.1", 0)

    server = loop_thread.run(start())
    try:
        port = next(iter(server.sockets)).getsockname()[1]
        engine = engine_for(balancer(f"http://127.0.0.1:{port}"), layered=layered)
        with connect(f"ws://127.0.0.1:{engine.port}/chat") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo:hello"
            ws.send("x" * 200000)
            assert ws.recv(timeout=5) == "echo:" + "x" * 200000
    finally:
        async def stop() -> None:
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)

        loop_thread.run(stop())


def test_engine_runs_over_a_transport_like_layer(loop_thread: LoopThread, engine_for: Any,
                                                 backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url), peek=len(GET) + 5, layered=True)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(GET + GET[:5])
        time.sleep(0.05)
        sock.sendall(GET[5:])
        responses = read_responses(sock, 2)
    assert [echo_of(r)["target"] for r in responses] == ["/echo", "/echo"]
    assert curl(f"{engine.url}/download?size=3000000", "-o", "/dev/null",
                "-w", "%{size_download}").stdout == b"3000000"


def test_websocket_upgrade_is_relayed_over_a_layer(loop_thread: LoopThread,
                                                   engine_for: Any) -> None:
    _websocket_round_trip(loop_thread, engine_for, layered=True)


# -- more errors and timeouts ----------------------------------------------------------------


def test_no_server_up_gives_go_service_unavailable(engine_for: Any,
                                                   backend: H11Backend) -> None:
    service = balancer(backend.url)
    for server in service.servers:
        server.up = False
    result = curl("-i", engine_for(service).url + "/")
    assert result.stdout.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert result.stdout.endswith(b"\r\n\r\nno available server\n")


def test_write_timeout_closes_a_response_that_takes_too_long(engine_for: Any,
                                                             backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url), ServerSettings(write_timeout=0.3))
    started = time.monotonic()
    assert exchange_raw(engine.port, b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n") == b""
    assert time.monotonic() - started < 3


def test_https_backend_is_verified_with_root_cas(loop_thread: LoopThread, engine_for: Any,
                                                 ca: Any, tmp_path: Any) -> None:
    import ssl

    from switchyard.config.dynamic import TransportTLS

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    secure = H11Backend(loop_thread, tls=server_context)
    try:
        roots = tmp_path / "ca.pem"
        roots.write_bytes(ca.cert_pem.bytes())
        trusted = UpstreamSettings(tls=TransportTLS(root_cas=[str(roots)]))
        engine = engine_for(balancer(secure.url, settings=trusted))
        assert curl(engine.url + "/echo").stdout.startswith(b'{"method": "GET"')
        untrusted = engine_for(balancer(secure.url, settings=UpstreamSettings()))
        assert curl("-i", untrusted.url + "/echo").stdout.startswith(b"HTTP/1.1 502 ")
        skipping = UpstreamSettings(tls=TransportTLS(insecure_skip_verify=True))
        assert curl(engine_for(balancer(secure.url, settings=skipping)).url + "/echo"
                    ).stdout.startswith(b'{"method": "GET"')
    finally:
        secure.close()


def test_refused_upgrade_answer_closes_the_connection(engine_for: Any) -> None:
    engine = engine_for(NOT_FOUND)
    received = exchange_raw(engine.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                         b"Upgrade: websocket\r\n\r\n", timeout=3)
    assert received.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_large_body_to_a_dead_backend_is_not_read_to_its_end(engine_for: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for(balancer(f"http://127.0.0.1:{port}"))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
        with pytest.raises(OSError):
            for _ in range(200):
                sock.sendall(b"x" * 65536)


def test_http_1_0_client_gets_a_close_delimited_body(engine_for: Any,
                                                     backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    received = exchange_raw(engine.port, b"GET /download?size=1000&chunked=1 HTTP/1.0\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert len(body) == 1000


def test_http_1_0_keep_alive_client_keeps_its_connection(engine_for: Any,
                                                         backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url))
    request = b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(request)
        first, = read_responses(sock, 1)
        sock.sendall(request)
        read_responses(sock, 1)
    assert b"\r\nConnection: keep-alive\r\n" in first


def test_partial_request_behind_a_pipelined_one_still_times_out(engine_for: Any,
                                                                backend: H11Backend) -> None:
    engine = engine_for(balancer(backend.url), ServerSettings(read_timeout=0.5))
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as sock:
        sock.sendall(b"GET /slow?delay=0.1 HTTP/1.1\r\nHost: a\r\n\r\nGET / HT")
        read_responses(sock, 1)
        started = time.monotonic()
        assert sock.recv(100) == b""
    assert time.monotonic() - started < 3


# -- the Handler interface as middlewares will use it -------------------------------------------


class Shouting:
    """A writer wrapper: edits the response head and transforms the body as it streams."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def start(self, head: Any) -> None:
        head.headers.remove(b"content-length")  # the body length may change
        head.headers.append((b"X-Shouted", b"yes"))
        self.inner.start(head)

    def write(self, chunk: bytes) -> None:
        self.inner.write(chunk.upper())

    def end(self) -> None:
        self.inner.end()

    def abort(self) -> None:
        self.inner.abort()


class Middleware:
    """Answers 401 without a token, else rewrites the request and wraps the writer."""

    def __init__(self, next_handler: Any) -> None:
        self.next = next_handler

    def handle(self, exchange: Any) -> None:
        if exchange.request.headers.get(b"x-token") != b"ok":
            exchange.respond(401, None, b"no")
            return
        exchange.request.target = b"/echo?via=middleware"
        exchange.router = "web@file"
        exchange.writer = Shouting(exchange.writer)
        self.next.handle(exchange)


def test_middlewares_wrap_handlers_and_writers(engine_for: Any, backend: H11Backend) -> None:
    records: list[RequestRecord] = []
    engine = engine_for(Middleware(balancer(backend.url)), ServerSettings(observer=records.append))
    refused = curl("-i", engine.url + "/")
    assert refused.stdout.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert refused.stdout.endswith(b"\r\n\r\nno")
    passed = curl("-i", "-H", "X-Token: ok", engine.url + "/anything")
    head, _, body = passed.stdout.partition(b"\r\n\r\n")
    assert b"X-Shouted: yes" in head and b"Transfer-Encoding: chunked" in head
    assert b'"TARGET": "/ECHO?VIA=MIDDLEWARE"' in body
    time.sleep(0.1)
    assert [record.router for record in records] == ["", "web@file"]
