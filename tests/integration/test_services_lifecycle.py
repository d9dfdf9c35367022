"""Backends going away, weighted splits, PROXY protocol with HAProxy, timeouts."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.whoami import start_whoami
from tests.harness import (
    Backends,
    LoopThread,
    connect,
    dead_port,
    ensure_command,
    free_port,
    greeting_name,
    read_until_closed,
    start_router,
    wait_for_port,
)


def wait_until(predicate, timeout: float = 10, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- health checks -----------------------------------------------------------

HEALTH_CONFIG = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{a}"}}, {{address: "127.0.0.1:{b}"}}]
        healthCheck: {{interval: 100ms, timeout: 200ms{extra}}}
"""


def server_up(app, address: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(app.runtime.service_objects["svc@file"].server_status()[address] == "UP")


def test_dead_backend_leaves_rotation_and_returns_after_restart(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    a = backends.whoami("a")
    b = free_port()
    b_live = loop_thread.run(start_whoami("b", "127.0.0.1", b))
    app = start_router(loop_thread, tmp_path, HEALTH_CONFIG.format(a=a, b=b, extra=""))
    port = app.entrypoints["ep"].port
    assert {greeting_name(connect(port)) for _ in range(4)} == {"a", "b"}

    async def kill() -> None:
        b_live.close()

    loop_thread.run(kill())
    wait_until(lambda: not server_up(app, f"127.0.0.1:{b}"), what="b marked DOWN")
    assert {greeting_name(connect(port)) for _ in range(6)} == {"a"}

    b_again = loop_thread.run(start_whoami("b", "127.0.0.1", b))
    backends.servers.append(b_again)
    wait_until(lambda: server_up(app, f"127.0.0.1:{b}"), what="b marked UP again")
    assert {greeting_name(connect(port)) for _ in range(4)} == {"a", "b"}


def test_backend_that_accepts_but_never_answers_expect_is_marked_down(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (kernel backlog), never speaks
    good = backends.whoami("good")
    mute = silent.getsockname()[1]
    app = start_router(loop_thread, tmp_path, HEALTH_CONFIG.format(
        a=good, b=mute, extra=', send: "ping", expect: "Hostname"'))
    try:
        wait_until(lambda: not server_up(app, f"127.0.0.1:{mute}"), what="mute marked DOWN")
        assert server_up(app, f"127.0.0.1:{good}")
    finally:
        silent.close()


def test_no_healthy_server_closes_the_connection_at_once(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    dead_a, dead_b = dead_port(), dead_port()
    app = start_router(loop_thread, tmp_path, HEALTH_CONFIG.format(a=dead_a, b=dead_b, extra=""))
    wait_until(lambda: not server_up(app, f"127.0.0.1:{dead_a}")
               and not server_up(app, f"127.0.0.1:{dead_b}"), what="both DOWN")
    started = time.monotonic()
    with connect(app.entrypoints["ep"].port) as conn:
        assert read_until_closed(conn) == b""
    assert time.monotonic() - started < 1


# -- weighted ----------------------------------------------------------------

def test_weighted_services_split_a_thousand_connections_by_weight(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    heavy, light, nested = backends.whoami("heavy"), backends.whoami("light"), backends.whoami("n")
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: split}}
  services:
    split:
      weighted:
        services: [{{name: heavy, weight: 3}}, {{name: inner, weight: 1}}]
    inner:
      weighted:
        services: [{{name: light, weight: 1}}, {{name: nested, weight: 1}}]
    heavy: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{heavy}"}}]}}}}
    light: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{light}"}}]}}}}
    nested: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{nested}"}}]}}}}
""")
    port = app.entrypoints["ep"].port
    counts: Counter[str] = Counter()
    for _ in range(1000):
        with connect(port) as conn:
            counts[greeting_name(conn)] += 1
    # WRR is deterministic: 750 / 125 / 125 exactly; allow 1% for the start offset.
    assert abs(counts["heavy"] - 750) <= 10
    assert abs(counts["light"] - 125) <= 10
    assert abs(counts["n"] - 125) <= 10


# -- PROXY protocol with HAProxy as the real peer ----------------------------

@pytest.fixture(scope="module")
def haproxy_bin() -> str:
    return ensure_command("haproxy", "haproxy")


@pytest.fixture
def haproxy(haproxy_bin: str, tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: str, port: int) -> None:
        path = tmp_path / f"haproxy-{port}.cfg"
        path.write_text("global\n  maxconn 256\ndefaults\n  timeout connect 5s\n"
                        "  timeout client 30s\n  timeout server 30s\n" + config)
        procs.append(subprocess.Popen([haproxy_bin, "-db", "-f", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        wait_for_port(port)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def connect_from(source: str, port: int) -> socket.socket:
    """A client bound to another loopback address, so addresses can be told apart."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def client_ip_router(loop_thread: LoopThread, backends: Backends, tmp_path: Path,
                     special_ip: str, trusted: list[str]) -> Any:
    """PROXY protocol in from `trusted`; `special_ip` goes to "from-<ip>", others elsewhere."""
    special, other = backends.whoami(f"from-{special_ip}"), backends.whoami("anyone-else")
    return start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    special: {{rule: "ClientIP(`{special_ip}`)", service: special}}
    rest: {{rule: "HostSNI(`*`)", service: other}}
  services:
    special: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{special}"}}]}}}}
    other: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{other}"}}]}}}}
""", entrypoint_options={"ep": {"proxyProtocol": {"trustedIPs": trusted}}})


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_client_address_from_haproxy_header_drives_client_ip_rules(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, haproxy,  # type: ignore[no-untyped-def]
        send_proxy: str) -> None:
    app = client_ip_router(loop_thread, backends, tmp_path, "127.0.0.2", ["127.0.0.1"])
    front = free_port()
    haproxy(f"listen front\n  mode tcp\n  bind 127.0.0.1:{front}\n"
            f"  server sy 127.0.0.1:{app.entrypoints['ep'].port} {send_proxy}\n", front)
    with connect_from("127.0.0.2", front) as conn:
        assert greeting_name(conn) == "from-127.0.0.2"
    with connect_from("127.0.0.3", front) as conn:
        assert greeting_name(conn) == "anyone-else"


def test_header_from_an_untrusted_peer_is_consumed_but_not_believed(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    app = client_ip_router(loop_thread, backends, tmp_path, "10.9.9.9", ["192.0.2.1"])
    with connect(app.entrypoints["ep"].port) as conn:
        conn.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.1 5555 80\r\nhi")
        assert greeting_name(conn) == "anyone-else"
        assert conn.recv(2) == b"hi"  # the header itself never reaches the backend


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 10.0.0.1 10.0.0.2 99999 80\r\n",  # port out of range
    b"PROXY TCP4 not-an-ip 10.0.0.2 1 80\r\n",
    b"PROXY " + b"x" * 120,  # no CRLF within 107 bytes
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x03abc",  # v2 with a length too short for TCP4
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12,  # v2 with version 3
])
def test_malformed_proxy_header_closes_only_that_connection(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path, header: bytes) -> None:
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backends.whoami('b')}"}}]}}}}
""", entrypoint_options={"ep": {"proxyProtocol": {"insecure": True}}})
    port = app.entrypoints["ep"].port
    with connect(port) as good:
        good.sendall(b"PROXY TCP4 10.1.1.1 127.0.0.1 4000 80\r\n")
        assert greeting_name(good) == "b"
        with connect(port) as bad:
            bad.sendall(header)
            assert read_until_closed(bad) == b""
        good.sendall(b"ok")
        assert good.recv(2) == b"ok"


@pytest.mark.parametrize("version", [1, 2])
def test_haproxy_behind_switchyard_accepts_our_header_with_the_real_client_address(
        loop_thread: LoopThread, tmp_path: Path, haproxy, version: int) -> None:  # type: ignore[no-untyped-def]
    back = free_port()
    haproxy(f"frontend back\n  mode http\n  bind 127.0.0.1:{back} accept-proxy\n"
            '  http-request return status 200 content-type text/plain '
            'lf-string "%[src]:%[src_port]\\n"\n', back)
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{back}"}}]
        serversTransport: with-proxy
  serversTransports:
    with-proxy:
      proxyProtocol: {{version: {version}}}
""")
    with connect_from("127.0.0.5", app.entrypoints["ep"].port) as conn:
        client_port = conn.getsockname()[1]
        conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        reply = read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.")
    assert reply.endswith(f"127.0.0.5:{client_port}\n".encode())


# -- timeouts ----------------------------------------------------------------

def test_dial_timeout_closes_the_client(loop_thread: LoopThread, tmp_path: Path) -> None:
    # A listener whose accept queue is full drops further SYNs: the dial hangs.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(stuck.getsockname())
        fillers.append(filler)
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{stuck.getsockname()[1]}"}}]
        serversTransport: quick
  serversTransports:
    quick: {{dialTimeout: 300ms}}
""")
    started = time.monotonic()
    try:
        with connect(app.entrypoints["ep"].port) as conn:
            assert read_until_closed(conn) == b""
        assert 0.25 < time.monotonic() - started < 3
    finally:
        for filler in fillers:
            filler.close()
        stuck.close()


def test_default_termination_delay_is_the_documented_100ms(
        loop_thread: LoopThread, tmp_path: Path) -> None:
    # The backend never closes; after the client's FIN it gets 100 ms, not forever, not 0.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{listener.getsockname()[1]}"}}]}}}}
""")
    with connect(app.entrypoints["ep"].port) as conn:
        wait_until(lambda: bool(accepted), what="backend connection")
        started = time.monotonic()
        conn.shutdown(socket.SHUT_WR)
        assert read_until_closed(conn) == b""
        elapsed = time.monotonic() - started
    listener.close()
    for sock in accepted:
        sock.close()
    assert 0.08 < elapsed < 1.5


def test_tcp_idle_timeout_closes_silent_relays(loop_thread: LoopThread, backends: Backends,
                                              tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: svc}}
  services:
    svc: {{loadBalancer: {{servers: [{{address: "127.0.0.1:{backends.whoami('b')}"}}]}}}}
""", entrypoint_options={"ep": {"transport": {"respondingTimeouts": {"tcpIdleTimeout": "400ms"}}}})
    with connect(app.entrypoints["ep"].port) as conn:
        assert greeting_name(conn) == "b"
        for _ in range(4):  # traffic keeps it alive past the timeout
            time.sleep(0.2)
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
        started = time.monotonic()
        assert read_until_closed(conn) == b""
        assert time.monotonic() - started < 1.5


def test_killed_backend_process_mid_stream_is_marked_down_and_back_up_after_restart(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    """A real backend process (switchyard whoami) killed while a stream is open."""
    import signal
    import sys

    def spawn(port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "switchyard", "whoami", "--name", "proc",
                                 "--port", str(port)], stdout=subprocess.DEVNULL)
        wait_for_port(port)
        return proc

    stable = backends.whoami("stable")
    port = free_port()
    proc = spawn(port)
    try:
        app = start_router(loop_thread, tmp_path, HEALTH_CONFIG.format(a=stable, b=port, extra=""))
        entry = app.entrypoints["ep"].port
        streams = [connect(entry) for _ in range(2)]
        names = [greeting_name(s) for s in streams]
        assert sorted(names) == ["proc", "stable"]
        doomed = streams[names.index("proc")]
        doomed.sendall(b"alive")
        assert doomed.recv(5) == b"alive"
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert read_until_closed(doomed) == b""  # the stream ends with its backend
        wait_until(lambda: not server_up(app, f"127.0.0.1:{port}"), what="killed backend DOWN")
        assert {greeting_name(connect(entry)) for _ in range(4)} == {"stable"}
        proc = spawn(port)
        wait_until(lambda: server_up(app, f"127.0.0.1:{port}"), what="restarted backend UP")
        assert {greeting_name(connect(entry)) for _ in range(4)} == {"proc", "stable"}
        for stream in streams:
            stream.close()
    finally:
        proc.kill()
        proc.wait(5)


def test_weighted_parent_with_health_check_skips_a_dead_child(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    alive = backends.whoami("alive")
    dead = free_port()
    app = start_router(loop_thread, tmp_path, f"""
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: split}}
  services:
    split:
      weighted:
        services: [{{name: good, weight: 1}}, {{name: bad, weight: 5}}]
        healthCheck: {{}}
    good:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{alive}"}}]
        healthCheck: {{interval: 100ms, timeout: 200ms}}
    bad:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{dead}"}}]
        healthCheck: {{interval: 100ms, timeout: 200ms}}
""")
    wait_until(lambda: app.runtime.service_objects["bad@file"].server_status()
               == {f"127.0.0.1:{dead}": "DOWN"}, what="dead child DOWN")
    port = app.entrypoints["ep"].port
    assert {greeting_name(connect(port)) for _ in range(6)} == {"alive"}
