"""The fast and the portable engine agree: random exchanges through one router on each, both
ends driven by the test on real sockets, observe the same bytes, the same half-closes and
resets, and the same access log line (reason, who closed, byte counts)."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.proxy import fastpath
from switchyard.proxy.connection import ClientConnection
from switchyard.server import Switchyard
from tests.harness import LoopThread, connect, start_router, stop_router

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="no fast engine here")

DYNAMIC = """
tcp:
  routers:
    all: {{rule: "HostSNI(`*`)", service: app}}
  services:
    app:
      loadBalancer:
        servers: [{{address: "127.0.0.1:{port}"}}]
"""

# What the test sends: (who, how many bytes); then how the exchange ends, and how many bytes
# the other side still sends after a half-close.
exchanges = st.lists(st.tuples(st.sampled_from(["client", "backend"]),
                               st.sampled_from([1, 7, 1400, 70_000, 300_000])), max_size=5)
endings = st.sampled_from(["client_fin", "backend_fin", "client_reset", "backend_reset",
                           "both_close"])


class Pair:
    """Two Switchyards on one loop, one per engine, routing to a listener the test owns."""

    def __init__(self, root: Path) -> None:
        self.loop = LoopThread()
        self.backend = socket.socket()
        self.backend.bind(("127.0.0.1", 0))
        self.backend.listen(16)
        self.backend.settimeout(5)
        self.apps: dict[str, tuple[Switchyard, Path]] = {}
        dynamic = DYNAMIC.format(port=self.backend.getsockname()[1])
        for engine in ("fast", "portable"):
            home = root / engine
            home.mkdir()
            saved, fastpath.ENGINE = fastpath.ENGINE, engine
            try:
                app = start_router(self.loop, home, dynamic,
                                   accessLog={"filePath": str(home / "access.log"),
                                              "format": "json"})
            finally:
                fastpath.ENGINE = saved
            self.apps[engine] = (app, home / "access.log")

    def port(self, engine: str) -> int:
        return self.apps[engine][0].entrypoints["ep"].port

    def last_line(self, engine: str, count: int) -> dict[str, Any]:
        app, path = self.apps[engine]
        deadline = time.monotonic() + 10
        while True:
            async def flush() -> None:
                assert app.access_log is not None
                app.access_log.flush()
            self.loop.run(flush())
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                assert len(lines) == count, lines
                return dict(json.loads(lines[-1]))
            time.sleep(0.01)

    def close(self) -> None:
        for app, _ in self.apps.values():
            stop_router(self.loop, app)
        self.backend.close()
        self.loop.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    both = Pair(tmp_path_factory.mktemp("engines"))
    yield both
    both.close()


def _exactly(sock: socket.socket, count: int) -> bytes:
    got = bytearray()
    while len(got) < count:
        chunk = sock.recv(min(count - len(got), 1 << 16))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _until_end(sock: socket.socket) -> tuple[int, str]:
    """Bytes until the peer's FIN or reset, and which of the two it was."""
    count = 0
    try:
        while chunk := sock.recv(1 << 16):
            count += len(chunk)
    except ConnectionResetError:
        return count, "reset"
    return count, "eof"


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _observe(pair: Pair, engine: str, steps: list[tuple[str, int]], ending: str, tail: int,
             payload: bytes) -> dict[str, Any]:
    client = connect(pair.port(engine))
    backend, _ = pair.backend.accept()
    backend.settimeout(5)
    seen: list[Any] = []
    for who, size in steps:
        sender, receiver = (client, backend) if who == "client" else (backend, client)
        sender.sendall(payload[:size])
        seen.append(_exactly(receiver, size) == payload[:size])
    if ending in ("client_fin", "backend_fin"):
        first, other = (client, backend) if ending == "client_fin" else (backend, client)
        first.shutdown(socket.SHUT_WR)
        seen.append(_exactly(other, 1))  # b"": the FIN came through, half-closed
        other.sendall(payload[:tail])  # the half-open direction still carries bytes
        seen.append(_exactly(first, tail) == payload[:tail])
        other.close()
        seen.append(_until_end(first))
        first.close()
    elif ending == "both_close":
        client.shutdown(socket.SHUT_WR)
        backend.shutdown(socket.SHUT_WR)
        seen.extend([_until_end(client), _until_end(backend)])
        client.close()
        backend.close()
    else:
        gone, other = (client, backend) if ending == "client_reset" else (backend, client)
        _reset(gone)
        seen.append(_until_end(other)[1] in ("eof", "reset"))
        other.close()
    return {"seen": seen}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=exchanges, ending=endings, tail=st.sampled_from([0, 5, 100_000]))
def test_both_engines_relay_and_log_an_exchange_alike(
        pair: Pair, steps: list[tuple[str, int]], ending: str, tail: int) -> None:
    payload = os.urandom(300_000)
    observed = {}
    for engine in ("fast", "portable"):
        count = len(pair.apps[engine][1].read_text().splitlines()) if pair.apps[engine][
            1].exists() else 0
        seen = _observe(pair, engine, steps, ending, tail, payload)
        line = pair.last_line(engine, count + 1)
        seen["log"] = {key: line[key] for key in ("reason", "closed_by", "router", "server")}
        if ending == "both_close":  # both FINs at once: which one Switchyard sees last is a race
            del seen["log"]["closed_by"]
        if "reset" not in ending:  # a reset may cut bytes in flight at either point
            seen["log"].update(bytes_in=line["bytes_in"], bytes_out=line["bytes_out"])
        observed[engine] = seen
    assert observed["fast"] == observed["portable"]
    assert all(observed["fast"]["seen"][:len(steps)])  # every byte got through, in order


def test_the_default_engine_is_the_fast_one_and_the_portable_one_can_be_chosen(
        pair: Pair) -> None:
    kinds = {}
    for engine in ("fast", "portable"):
        client = connect(pair.port(engine))
        backend, _ = pair.backend.accept()
        app = pair.apps[engine][0]

        async def live(app: Switchyard) -> set[type]:
            return {type(conn) for conn in app.entrypoints["ep"].connections}
        kinds[engine] = pair.loop.run(live(app))
        client.close()
        backend.close()
    assert kinds["fast"] == {fastpath.FastConnection}
    assert kinds["portable"] == {ClientConnection}
