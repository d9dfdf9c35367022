"""A busy relay on the fast engine moves to uvloop's transports (`MOVE_AFTER`): every byte,
FIN and count survives the move, and a connection closed while its sockets are between the
two transports is finished once, with no socket left open."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.observability.record import CloseReason, Side
from switchyard.observability.stats import STATS
from switchyard.proxy import fastpath, relay
from switchyard.server import Switchyard
from tests.harness import LoopThread, connect, start_router

pytestmark = [
    pytest.mark.skipif(not fastpath.available(), reason="no fast engine here"),
    pytest.mark.skipif(os.environ.get("SWITCHYARD_LOOP") == "asyncio",
                       reason="relays move only to uvloop's transports"),
]

DYNAMIC = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
"""


class Setup:
    def __init__(self, loop: LoopThread, tmp_path: Path) -> None:
        self.loop = loop
        self.backend = socket.socket()
        self.backend.bind(("127.0.0.1", 0))
        self.backend.listen(4)
        self.backend.settimeout(5)
        self.log = tmp_path / "access.log"
        self.app: Switchyard = start_router(
            loop, tmp_path, DYNAMIC.format(port=self.backend.getsockname()[1]),
            accessLog={"filePath": str(self.log), "format": "json"})

    def pair(self) -> tuple[socket.socket, socket.socket]:
        client = connect(self.app.entrypoints["ep"].port)
        backend, _ = self.backend.accept()
        backend.settimeout(5)
        return client, backend

    def transports(self) -> set[str]:
        async def kinds() -> set[str]:
            return {type(conn.transport).__name__
                    for conn in self.app.entrypoints["ep"].connections}
        return self.loop.run(kinds())

    def lines(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            async def flush() -> None:
                assert self.app.access_log is not None
                self.app.access_log.flush()
            self.loop.run(flush())
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                assert len(lines) == count, lines
                return [json.loads(line) for line in lines]
            time.sleep(0.01)

    def open_connections(self) -> int:
        return STATS.entrypoints["ep"].open


# Splicing from the first byte takes a plain relay's sockets before it could move.
plain_relays_move = pytest.mark.skipif(relay.SPLICE_ALWAYS,
                                       reason="SWITCHYARD_SPLICE=always: plain relays splice")


@pytest.fixture
def setup(loop_thread: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Setup]:
    monkeypatch.setattr(fastpath, "MOVE_AFTER", 3)
    found = Setup(loop_thread, tmp_path)
    yield found
    found.backend.close()


def _exactly(sock: socket.socket, count: int) -> bytes:
    got = bytearray()
    while len(got) < count:
        chunk = sock.recv(min(count - len(got), 1 << 16))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _fds() -> list[str]:
    """The sockets this process has open, by inode (other descriptors come and go with
    the loops of earlier tests)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, gone already
        if target.startswith("socket:"):
            found.append(target)
    return sorted(found)


@plain_relays_move
def test_a_busy_relay_moves_and_keeps_every_byte_fin_and_count(setup: Setup) -> None:
    client, backend = setup.pair()
    sent_in = sent_out = 0
    with client, backend:
        for turn in range(40):
            request = os.urandom(1 + turn * 37)
            client.sendall(request)
            assert _exactly(backend, len(request)) == request
            # The backend speaks twice per turn: bytes that come while the client's new
            # transport is being made are held, then passed on in order.
            answer = os.urandom(1 + turn * 53)
            backend.sendall(answer[:5])
            backend.sendall(answer[5:])
            assert _exactly(client, len(answer)) == answer
            sent_in, sent_out = sent_in + len(request), sent_out + len(answer)
            if turn == 1:
                assert setup.transports() == {"FastTransport"}
        assert "FastTransport" not in setup.transports()  # moved after 3 client reads
        client.shutdown(socket.SHUT_WR)
        assert _exactly(backend, 1) == b""  # the client's FIN reached the backend
        backend.sendall(b"tail")
        assert _exactly(client, 4) == b"tail"  # half-open: the other way still carries bytes
        backend.close()
        assert _exactly(client, 1) == b""
    line = setup.lines(1)[0]
    assert (line["reason"], line["closed_by"]) == ("normal", "client")
    assert (line["bytes_in"], line["bytes_out"]) == (sent_in, sent_out + 4)


@plain_relays_move
def test_a_backend_reset_after_the_move_ends_the_connection_as_backend_closed(
        setup: Setup) -> None:
    client, backend = setup.pair()
    with client:
        for _ in range(5):
            client.sendall(b"ping")
            assert _exactly(backend, 4) == b"ping"
            backend.sendall(b"pong")
            assert _exactly(client, 4) == b"pong"
        backend.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        backend.close()
        try:
            assert client.recv(10) == b""
        except ConnectionResetError:
            pass
    line = setup.lines(1)[0]
    assert (line["reason"], line["closed_by"]) == ("backend_closed", "backend")


@plain_relays_move
@pytest.mark.parametrize("when", ["before both transports", "between the two transports"])
def test_a_connection_closed_while_moving_is_finished_once_with_nothing_left_open(
        setup: Setup, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    # One move first: the loop opens a descriptor of its own the first time it adopts a
    # socket, which the count below must not take for a leak.
    client, backend = setup.pair()
    with client, backend:
        for _ in range(4):
            client.sendall(b"ping")
            assert _exactly(backend, 4) == b"ping"
        assert "FastTransport" not in setup.transports()
    setup.lines(1)
    closing: Callable[[fastpath.FastConnection], None] = lambda conn: conn.close(
        CloseReason.ADMIN_CLOSE, "closed by the test", Side.SWITCHYARD)
    if when == "before both transports":
        move = fastpath.FastConnection._move

        def move_then_close(self: fastpath.FastConnection) -> None:
            move(self)
            closing(self)
        monkeypatch.setattr(fastpath.FastConnection, "_move", move_then_close)
    else:
        made = fastpath._MovedClient.__init__

        def close_first(self: Any, connection: fastpath.FastConnection, relay: Any) -> None:
            made(self, connection, relay)
            closing(connection)
        monkeypatch.setattr(fastpath._MovedClient, "__init__", close_first)
    open_before, fds_before = setup.open_connections(), _fds()
    client, backend = setup.pair()
    with client, backend:
        for _ in range(3):
            client.sendall(b"ping")
            assert _exactly(backend, 4) == b"ping"
        assert _exactly(client, 1) == b""  # closed: a FIN, not a hang
        assert _exactly(backend, 1) == b""
    lines = setup.lines(2)
    assert (lines[1]["reason"], lines[1]["closed_by"]) == ("admin_close", "switchyard")
    deadline = time.monotonic() + 5
    while (setup.open_connections(), _fds()) != (open_before, fds_before):
        now = _fds()
        assert time.monotonic() < deadline, (
            setup.open_connections(), sorted((Counter(now) - Counter(fds_before)).elements()),
            sorted((Counter(fds_before) - Counter(now)).elements()))
        time.sleep(0.01)
    assert setup.transports() == set()


TERMINATING = """
tcp:
  routers:
    secure: {{rule: "HostSNI(`*`)", service: app, tls: {{}}}}
  services:
    app:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
tls:
  certificates:
    - {{certFile: "{cert}", keyFile: "{key}"}}
"""


def test_a_terminated_relay_moves_under_its_tls_layer(
        loop_thread: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: Any
        ) -> None:
    monkeypatch.setattr(fastpath, "MOVE_AFTER", 3)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    issued = ca.issue_cert("move.test")
    cert, key = tmp_path / "move.crt", tmp_path / "move.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    log = tmp_path / "access.log"
    app = start_router(loop_thread, tmp_path, TERMINATING.format(
        port=listener.getsockname()[1], cert=cert, key=key),
        accessLog={"filePath": str(log), "format": "json"})
    setup = Setup.__new__(Setup)
    setup.loop, setup.app, setup.log, setup.backend = loop_thread, app, log, listener
    context = ssl.create_default_context()
    ca.configure_trust(context)
    sent_in = sent_out = 0
    with listener, context.wrap_socket(connect(app.entrypoints["ep"].port),
                                       server_hostname="move.test") as client:
        backend, _ = listener.accept()
        backend.settimeout(5)
        with backend:
            for turn in range(20):
                request = os.urandom(1 + turn * 41)
                client.sendall(request)
                assert _exactly(backend, len(request)) == request
                answer = os.urandom(1 + turn * 59)
                backend.sendall(answer[:3])
                backend.sendall(answer[3:])
                assert _exactly(client, len(answer)) == answer
                sent_in, sent_out = sent_in + len(request), sent_out + len(answer)
            assert "FastTransport" not in setup.transports()
            assert client.version() is not None  # the same TLS session all along
            backend.sendall(b"bye")
            assert _exactly(client, 3) == b"bye"
            backend.close()  # the backend's FIN: Switchyard's close_notify, then the close
            assert _exactly(client, 1) == b""
    line = setup.lines(1)[0]
    assert (line["reason"], line["closed_by"]) == ("normal", "backend")
    assert (line["bytes_in"], line["bytes_out"]) == (sent_in, sent_out + 3)
