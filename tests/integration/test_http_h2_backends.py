"""HTTP/2 to backends: h2c:// servers, https:// servers that choose h2 by ALPN (unless the
servers transport disables it), one multiplexed connection, bodies both ways, failures."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.grpckit import h2_backend, h2_request
from tests.harness import LoopThread, free_port
from tests.mwkit import raw_request, serve


def _echo(head: list[tuple[bytes, bytes]], body: bytes
          ) -> tuple[list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]:
    """JSON of the request as the backend got it; ``/big/N`` answers N bytes instead."""
    path = dict(head)[b":path"]
    if path.startswith(b"/big/"):
        size = int(path[5:])
        return [(b":status", b"200")], [b"x" * size], []
    if path == b"/slow":
        time.sleep(1)
    payload = json.dumps({"fields": [[n.decode(), v.decode()] for n, v in head],
                          "body": len(body)}).encode()
    return ([(b":status", b"200"), (b"content-type", b"application/json")], [payload],
            [(b"x-checksum", str(sum(body) % 1000).encode())])


def _dynamic(url: str) -> str:
    return f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s}}
  services:
    s: {{loadBalancer: {{servers: [{{url: "{url}"}}]}}}}
"""


def _get(port: int, path: str = "/", extra: bytes = b"") -> tuple[bytes, bytes]:
    answer = raw_request(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: example.test\r\n"
                         + extra + b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def _dechunk(body: bytes) -> tuple[bytes, bytes]:
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return data, body
        data, body = data + body[:size], body[size + 2:]


def test_h2c_server_gets_http2_with_authority_scheme_and_forwarded_fields(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        head, body = _get(ports["web"], "/p?q=1", b"TE: trailers\r\nKeep-Alive: 5\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    payload, trailers = _dechunk(body)
    fields = json.loads(payload)["fields"]
    assert fields[:4] == [[":method", "GET"], [":scheme", "http"],
                          [":authority", "example.test"], [":path", "/p?q=1"]]
    names = [name for name, _ in fields]
    assert "te" in names and "keep-alive" not in names and "connection" not in names
    assert dict(fields)["x-forwarded-for"] == "127.0.0.1"
    assert b"Content-Type: application/json" in head  # Go's spelling for an HTTP/1.1 client
    assert trailers == b"X-Checksum: 0\r\n\r\n"


def test_concurrent_requests_share_one_connection_to_an_h2c_server(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            heads = list(pool.map(lambda _: _get(ports["web"])[0], range(24)))
        assert all(head.startswith(b"HTTP/1.1 200") for head in heads)
        assert backend.connections == 1


def test_request_and_response_bodies_stream_through_h2c_both_ways(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    upload = bytes(range(256)) * 4096  # 1 MiB: beyond every initial window
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        answer = raw_request(ports["web"], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             + str(len(upload)).encode() + b"\r\nConnection: close\r\n\r\n"
                             + upload)
        _, body = answer.partition(b"\r\n\r\n")[::2]
        payload, trailers = _dechunk(body)
        assert json.loads(payload)["body"] == len(upload)
        assert trailers == f"X-Checksum: {sum(upload) % 1000}\r\n\r\n".encode()
        big = h2_request(ports["web"], [(b":method", b"GET"), (b":path", b"/big/5000000"),
                                        (b":scheme", b"http"), (b":authority", b"x")],
                         timeout=20)
    assert big.status == 200 and len(big.body) == 5_000_000


def test_a_slow_client_holds_back_its_own_stream_only(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        slow = socket.create_connection(("127.0.0.1", ports["web"]))
        slow.sendall(b"GET /big/20000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # its response fills the windows and waits
        started = time.monotonic()
        head, _body = _get(ports["web"])
        assert head.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 2
        received = 0
        slow.settimeout(10)
        while received < 20_000_000:
            chunk = slow.recv(1 << 20)
            assert chunk
            received += len(chunk)
        slow.close()


@pytest.fixture
def tls_backend_context(ca: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _tls_dynamic(port: int, ca_path: Path, disable: bool) -> str:
    return f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s}}
  services:
    s:
      loadBalancer:
        servers: [{{url: "https://127.0.0.1:{port}"}}]
        serversTransport: t
  serversTransports:
    t:
      rootCAs: ["{ca_path}"]
      disableHTTP2: {str(disable).lower()}
"""


@pytest.mark.parametrize(("disable", "protocol"), [(False, "h2"), (True, "http/1.1")])
def test_https_server_is_spoken_to_in_h2_when_alpn_allows_unless_disabled(
        loop_thread: LoopThread, tmp_path: Path, ca: Any, tls_backend_context: ssl.SSLContext,
        disable: bool, protocol: str) -> None:
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    with (h2_backend(_echo, tls_backend_context) as backend,
          serve(loop_thread, tmp_path, _tls_dynamic(backend.port, ca_path, disable)) as ports):
        first, _ = _get(ports["web"])
        second, _ = _get(ports["web"])
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert backend.protocols == [protocol]


def test_https_server_that_chooses_http1_is_served_over_http1(
        loop_thread: LoopThread, tmp_path: Path, ca: Any) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    with (h2_backend(_echo, context) as backend,
          serve(loop_thread, tmp_path, _tls_dynamic(backend.port, ca_path, False)) as ports):
        answers = [_get(ports["web"]) for _ in range(3)]
    assert all(body == b"http/1.1" for _, body in answers)
    assert backend.protocols == ["http/1.1"]  # kept alive, and not offered h2 again


def test_h2c_server_that_is_down_gives_502(loop_thread: LoopThread, tmp_path: Path) -> None:
    with serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{free_port()}")) as ports:
        head, _ = _get(ports["web"])
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway")


def test_h2c_response_header_timeout_gives_504_and_the_connection_goes_on(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    dynamic = """
http:
  routers:
    r: {rule: "PathPrefix(`/`)", service: s}
  services:
    s:
      loadBalancer:
        servers: [{url: "h2c://127.0.0.1:{port}"}]
        serversTransport: t
  serversTransports:
    t:
      forwardingTimeouts: {responseHeaderTimeout: 300ms}
"""
    with h2_backend(_echo) as backend:
        with serve(loop_thread, tmp_path, dynamic.replace("{port}", str(backend.port))) as ports:
            slow, _ = _get(ports["web"], "/slow")
            time.sleep(1)  # the test backend answers one stream at a time
            fast, _ = _get(ports["web"])
        assert slow.startswith(b"HTTP/1.1 504 Gateway Timeout")
        assert fast.startswith(b"HTTP/1.1 200")
        assert backend.connections == 1


def test_websocket_to_an_h2c_server_goes_over_http1_as_in_traefik(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    import threading

    from websockets.sync.client import connect
    from websockets.sync.server import serve as ws_serve

    port = free_port()
    server = ws_serve(lambda ws: ws.send(ws.recv()), "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with (serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{port}")) as ports,
              connect(f"ws://127.0.0.1:{ports['web']}/chat") as client):
            client.send("ping")
            assert client.recv(timeout=5) == "ping"
    finally:
        server.shutdown()


def test_a_server_allowing_two_streams_gets_more_connections_not_refused_requests(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    def slow(head: list[tuple[bytes, bytes]], body: bytes
             ) -> tuple[list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]:
        time.sleep(0.2)
        return [(b":status", b"200")], [b"done"], []

    with (h2_backend(slow, max_streams=2) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        _get(ports["web"])  # the first connection learns the limit
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: _get(ports["web"]), range(6)))
    assert [(head.split(b"\r\n")[0], body) for head, body in answers] == [
        (b"HTTP/1.1 200 OK", b"4\r\ndone\r\n0\r\n\r\n")] * 6
    assert backend.connections >= 3


def _pinging(port: int, ping_timeout: str) -> str:
    return f"""
http:
  routers:
    r: {{rule: "PathPrefix(`/`)", service: s}}
  services:
    s:
      loadBalancer:
        servers: [{{url: "h2c://127.0.0.1:{port}"}}]
        serversTransport: t
  serversTransports:
    t:
      forwardingTimeouts: {{readIdleTimeout: 200ms, pingTimeout: {ping_timeout}}}
"""


def test_a_quiet_connection_that_answers_pings_is_kept(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _pinging(backend.port, "2s")) as ports):
        first, _ = _get(ports["web"])
        time.sleep(1.0)  # several read-idle periods, each answered
        second, _ = _get(ports["web"])
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert backend.connections == 1


def test_a_server_that_stops_answering_pings_is_given_up(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    with (h2_backend(_echo) as backend,
          serve(loop_thread, tmp_path, _pinging(backend.port, "200ms")) as ports):
        started = time.monotonic()
        head, _ = _get(ports["web"], "/slow")  # the test server reads nothing while it sleeps
        took = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 500") and took < 0.9  # Traefik: 500 at 0.4 s too


def test_a_server_that_drops_the_connection_before_answering_gives_500_as_in_traefik(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    def die(head: list[tuple[bytes, bytes]], body: bytes
            ) -> tuple[list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]:
        raise OSError("the test server goes away")

    with (h2_backend(die) as backend,
          serve(loop_thread, tmp_path, _dynamic(f"h2c://127.0.0.1:{backend.port}")) as ports):
        head, body = _get(ports["web"])
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error") and body == (
        b"Internal Server Error")


def test_a_server_that_closes_every_connection_at_once_gets_an_error_not_a_dial_loop(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def refuse() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=refuse, daemon=True).start()
    try:
        url = f"h2c://127.0.0.1:{listener.getsockname()[1]}"
        with serve(loop_thread, tmp_path, _dynamic(url)) as ports:
            head, _ = _get(ports["web"])
    finally:
        listener.close()
    assert head.split(b" ")[1] in (b"500", b"502")
    assert len(accepted) <= 3
