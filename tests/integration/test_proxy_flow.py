"""Scenario tests with real sockets: routing, middlewares, relay, failures."""

from __future__ import annotations

import hashlib
import itertools
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from switchyard.observability.stats import STATS
from switchyard.proxy import relay as connection
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    greeting_name,
    read_until_closed,
    start_router,
    stop_router,
)


def tls_backend_context(ca: Any, *names: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1", "imap"])
    return context


def tls_client(ca: Any, port: int, sni: str | None, alpn: list[str] | None = None,
               host: str = "127.0.0.1") -> ssl.SSLSocket:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if sni is None:
        context.check_hostname = False
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection((host, port), timeout=5)
    return context.wrap_socket(raw, server_hostname=sni)


SNI_CONFIG = """
tcp:
  routers:
    alpha:
      rule: "HostSNI(`alpha.test`)"
      service: alpha
      tls: {{passthrough: true}}
    wild:
      rule: "HostSNI(`*.wild.test`)"
      service: wild
      tls: {{passthrough: true}}
    by-alpn:
      rule: "HostSNI(`alpn.test`) && ALPN(`imap`)"
      service: wild
      tls: {{passthrough: true}}
    plain:
      rule: "HostSNI(`*`)"
      service: plain
  services:
    alpha:
      loadBalancer: {{servers: [{{address: "127.0.0.1:{alpha}"}}]}}
    wild:
      loadBalancer: {{servers: [{{address: "127.0.0.1:{wild}"}}]}}
    plain:
      loadBalancer: {{servers: [{{address: "127.0.0.1:{plain}"}}]}}
"""


@pytest.fixture
def sni_router(loop_thread: LoopThread, backends: Backends, tmp_path: Path, ca: Any):  # type: ignore[no-untyped-def]
    tls = tls_backend_context(ca, "alpha.test", "*.wild.test", "alpn.test")
    ports = {
        "alpha": backends.whoami("alpha", tls=tls),
        "wild": backends.whoami("wild", tls=tls),
        "plain": backends.whoami("plain"),
    }
    app = start_router(loop_thread, tmp_path, SNI_CONFIG.format(**ports))
    yield app.entrypoints["ep"].port
    stop_router(loop_thread, app)


def test_tls_passthrough_routes_by_sni_to_the_matching_backend(sni_router: int, ca: Any) -> None:
    with tls_client(ca, sni_router, "alpha.test", alpn=["h2"]) as conn:
        assert greeting_name(conn) == "alpha"
        # The backend negotiated ALPN itself: passthrough means its handshake, not ours.
        assert conn.selected_alpn_protocol() == "h2"
        conn.sendall(b"ping")
        assert conn.recv(4) == b"ping"


def test_wildcard_router_takes_one_extra_label_only(sni_router: int, ca: Any) -> None:
    with tls_client(ca, sni_router, "a.wild.test") as conn:
        assert greeting_name(conn) == "wild"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        # Two extra labels: no router, so the connection is closed mid-handshake.
        tls_client(ca, sni_router, "a.b.wild.test").close()


def test_alpn_rule_needs_the_offered_protocol(sni_router: int, ca: Any) -> None:
    with tls_client(ca, sni_router, "alpn.test", alpn=["imap"]) as conn:
        assert greeting_name(conn) == "wild"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_client(ca, sni_router, "alpn.test", alpn=["h2"]).close()


def test_plain_tcp_goes_to_the_catch_all_on_the_same_entry_point(sni_router: int) -> None:
    with connect(sni_router) as conn:
        conn.sendall(b"hello")  # a client-first protocol: routing waits for these bytes
        assert greeting_name(conn) == "plain"
        assert conn.recv(5) == b"hello"


def test_openssl_s_client_is_routed_by_servername(sni_router: int, ca: Any, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{sni_router}", "-servername",
         "x.wild.test", "-CAfile", str(ca_file), "-verify_return_error", "-quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"from-openssl\n")
        proc.stdin.flush()
        lines = [proc.stdout.readline() for _ in range(3)]  # greeting (2 lines), then the echo
    finally:
        proc.kill()
        proc.wait()
    assert lines == [b"Hostname: wild\n", lines[1], b"from-openssl\n"]
    assert lines[1].startswith(b"RemoteAddr: 127.0.0.1:")


def test_broken_client_hello_closes_only_that_connection(sni_router: int, ca: Any) -> None:
    with connect(sni_router) as good:
        good.sendall(b"x")
        assert greeting_name(good) == "plain"
        assert good.recv(1) == b"x"
        with connect(sni_router) as bad:
            bad.sendall(bytes.fromhex("1603030005") + b"\x02\x00\x00\x01\x00")  # not a ClientHello
            assert read_until_closed(bad) == b""
        good.sendall(b"still here")
        assert good.recv(10) == b"still here"
    with tls_client(ca, sni_router, "alpha.test") as conn:
        assert greeting_name(conn) == "alpha"


def test_oversized_tls_record_is_refused(sni_router: int) -> None:
    with connect(sni_router) as conn:
        conn.sendall(bytes.fromhex("160303ffff"))
        assert read_until_closed(conn) == b""


# -- plain TCP ---------------------------------------------------------------

PLAIN_CONFIG = """
tcp:
  routers:
    all:
      rule: "HostSNI(`*`)"
      service: svc
      middlewares: [{middlewares}]
  middlewares:
    local:
      ipAllowList: {{sourceRange: ["127.0.0.1/32"]}}
    elsewhere:
      ipAllowList: {{sourceRange: ["192.0.2.0/24", "2001:db8::/32"]}}
    one:
      inFlightConn: {{amount: 1}}
  services:
    svc:
      loadBalancer: {{servers: [{servers}]}}
"""


def plain_router(loop_thread: LoopThread, tmp_path: Path, ports: list[int],
                 middlewares: str = "", **static: Any) -> int:
    servers = ", ".join(f'{{address: "127.0.0.1:{p}"}}' for p in ports)
    app = start_router(loop_thread, tmp_path,
                       PLAIN_CONFIG.format(servers=servers, middlewares=middlewares), **static)
    return app.entrypoints["ep"].port


def test_server_first_protocol_gets_its_banner_before_the_client_speaks(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("smtp-like")])
    with connect(port) as conn:
        # The client has sent nothing: the banner can only come if routing did not wait.
        assert greeting_name(conn) == "smtp-like"


def test_round_robin_alternates_between_servers(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("a"), backends.whoami("b")])
    names = []
    for _ in range(6):
        with connect(port) as conn:
            names.append(greeting_name(conn))
    assert sorted(names) == ["a", "a", "a", "b", "b", "b"]
    assert all(x != y for x, y in itertools.pairwise(names))


def test_allow_list_admits_listed_client(loop_thread: LoopThread, backends: Backends,
                                         tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("b")], middlewares="local")
    with connect(port) as conn:
        assert greeting_name(conn) == "b"


def test_allow_list_rejection_closes_without_writing(loop_thread: LoopThread, backends: Backends,
                                                     tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("b")], middlewares="elsewhere")
    with connect(port) as conn:
        assert read_until_closed(conn) == b""


def test_in_flight_limit_refuses_the_second_connection_until_the_first_ends(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("b")], middlewares="local, one")
    first = connect(port)
    assert greeting_name(first) == "b"
    with connect(port) as second:
        assert read_until_closed(second) == b""
    first.close()
    deadline = time.monotonic() + 5
    while True:
        with connect(port) as third:
            third.settimeout(1)
            try:
                if greeting_name(third) == "b":
                    break
            except AssertionError:
                pass
        assert time.monotonic() < deadline, "the in-flight slot was never released"
        time.sleep(0.05)


def test_half_close_still_delivers_the_reply(loop_thread: LoopThread, backends: Backends,
                                             tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("b")])
    with connect(port) as conn:
        conn.sendall(b"last words")
        conn.shutdown(socket.SHUT_WR)
        reply = read_until_closed(conn)
    assert reply.endswith(b"last words")
    assert reply.startswith(b"Hostname: b\n")


def test_backend_half_close_reaches_the_client_which_can_still_send(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    # A backend that answers, shuts down its write side, then keeps reading.
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.sendall(b"bye")
            peer.shutdown(socket.SHUT_WR)
            received.append(read_until_closed(peer))

    thread = threading.Thread(target=serve)
    thread.start()
    port = plain_router(loop_thread, tmp_path, [listener.getsockname()[1]],
                        tcpServersTransport={"terminationDelay": "5s"})
    with connect(port) as conn:
        assert read_until_closed(conn) == b"bye"  # EOF arrived after the data
        conn.sendall(b"after your FIN")
        conn.shutdown(socket.SHUT_WR)
        thread.join(5)
    listener.close()
    assert received == [b"after your FIN"]


def test_100_megabytes_arrive_intact(loop_thread: LoopThread, backends: Backends,
                                     tmp_path: Path) -> None:
    port = plain_router(loop_thread, tmp_path, [backends.whoami("echo", banner=False)])
    spliced_before = STATS.spliced
    size = 100 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB, not all one byte
    sent = hashlib.sha256()
    got = hashlib.sha256()
    received = 0
    with connect(port, timeout=30) as conn:
        def reader() -> None:
            nonlocal received
            while received < size:
                data = conn.recv(1 << 20)
                if not data:
                    break
                got.update(data)
                received += len(data)

        thread = threading.Thread(target=reader)
        thread.start()
        for _ in range(size // len(block)):
            conn.sendall(block)
            sent.update(block)
        thread.join(60)
    assert received == size
    assert got.hexdigest() == sent.hexdigest()
    # A bulk stream moves to zero-copy splice unless the portable path is forced.
    assert (STATS.spliced > spliced_before) == (connection.SPLICE_AFTER > 0
                                                 or connection.SPLICE_ALWAYS)


def test_accepted_sockets_get_traefiks_keepalive(loop_thread: LoopThread, backends: Backends,
                                                 tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, PLAIN_CONFIG.format(
        servers=f'{{address: "127.0.0.1:{backends.whoami("b", banner=False)}"}}', middlewares=""))
    with connect(app.entrypoints["ep"].port) as conn:
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        (live,) = app.entrypoints["ep"].connections
        sock = live.socket()  # with SWITCHYARD_SPLICE=always the splice relay owns it
        assert sock is not None
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 180


def test_refused_dial_closes_the_client_connection(loop_thread: LoopThread, tmp_path: Path) -> None:
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    dead_port = unused.getsockname()[1]
    unused.close()  # nothing listens there now
    port = plain_router(loop_thread, tmp_path, [dead_port])
    with connect(port) as conn:
        assert read_until_closed(conn) == b""


def test_silent_client_is_closed_after_the_read_timeout(loop_thread: LoopThread,
                                                        backends: Backends, tmp_path: Path,
                                                        ca: Any) -> None:
    tls = tls_backend_context(ca, "alpha.test")
    ports = {"alpha": backends.whoami("alpha", tls=tls), "wild": 1, "plain": backends.whoami("p")}
    app = start_router(loop_thread, tmp_path, SNI_CONFIG.format(**ports),
                       entrypoint_options={"ep": {"transport": {
                           "respondingTimeouts": {"readTimeout": "300ms"}}}})
    started = time.monotonic()
    with connect(app.entrypoints["ep"].port) as conn:
        assert read_until_closed(conn) == b""
    assert 0.2 < time.monotonic() - started < 3


def test_ipv6_entry_point_and_backend(loop_thread: LoopThread, backends: Backends,
                                      tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    backend = backends.whoami("v6", host="::1")
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    v6only:
      rule: "ClientIP(`::1`)"
      service: svc
  services:
    svc:
      loadBalancer: {{servers: [{{address: "[::1]:{backend}"}}]}}
""", entrypoints={"ep": "[::1]:0"})
    with connect(app.entrypoints["ep"].port, host="::1") as conn:
        lines = conn.recv(1024).decode()
    assert "Hostname: v6" in lines
    assert "RemoteAddr: [::1]:" in lines


def reframe_in_tiny_records(hello_records: bytes, size: int) -> bytes:
    """The same handshake bytes carried in TLS records of `size` bytes each."""
    payload, pos = b"", 0
    while pos < len(hello_records):  # strip the original record headers
        length = int.from_bytes(hello_records[pos + 3:pos + 5], "big")
        payload += hello_records[pos + 5:pos + 5 + length]
        pos += 5 + length
    return b"".join(b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk
                    for chunk in (payload[i:i + size] for i in range(0, len(payload), size)))


def test_hello_in_one_byte_records_trickled_in_small_segments_is_routed(
        sni_router: int, ca: Any) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="alpha.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = reframe_in_tiny_records(outgoing.read(), 1)
    with connect(sni_router) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(hello), 7):  # many small segments
            conn.sendall(hello[i:i + 7])
        while True:  # finish the handshake with the backend, through the router
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                data = conn.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        conn.sendall(outgoing.read())
        greeting = b""
        while b"\n" not in greeting:
            try:
                greeting += tls.read(1024)
            except ssl.SSLWantReadError:
                incoming.write(conn.recv(65536))
    assert greeting.startswith(b"Hostname: alpha")


def backend_that_says_bye(message: bytes) -> tuple[socket.socket, threading.Thread]:
    """A backend that writes `message` and closes at once, before the client speaks."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(2):
            peer, _ = listener.accept()
            with peer:
                peer.sendall(message)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_backend_that_answers_and_closes_at_once_still_delivers_its_answer(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    listener, _ = backend_that_says_bye(b"421 too busy, bye\r\n")
    port = plain_router(loop_thread, tmp_path, [listener.getsockname()[1]])
    try:
        for _ in range(2):
            with connect(port) as conn:
                assert read_until_closed(conn) == b"421 too busy, bye\r\n"
    finally:
        listener.close()


def test_terminated_client_gets_what_a_quick_backend_said_before_closing(
        loop_thread: LoopThread, tmp_path: Path, ca: Any) -> None:
    listener, _ = backend_that_says_bye(b"hello and goodbye\n")
    cert = ca.issue_cert("quick.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "q.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "q.key"))
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    quick: {{rule: "HostSNI(`quick.test`)", service: svc, tls: {{}}}}
  services:
    svc: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{listener.getsockname()[1]}"}}]}}}}
tls:
  certificates:
    - {{certFile: "{tmp_path / 'q.crt'}", keyFile: "{tmp_path / 'q.key'}"}}
""")
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with tls_client(ca, app.entrypoints["ep"].port, "quick.test") as conn:
            data = b""
            while True:
                try:
                    chunk = conn.recv(100)
                except (ssl.SSLEOFError, ConnectionError):
                    break
                if not chunk:
                    break
                data += chunk
        assert data == b"hello and goodbye\n"
    finally:
        listener.close()
