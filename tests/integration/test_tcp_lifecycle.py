"""Router idleTimeout and maxDuration on real sockets: traffic either way keeps a relay open."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.observability.stats import STATS
from tests.harness import LoopThread, connect, start_router, stop_router


@pytest.fixture
def ticker(loop_thread: LoopThread) -> Iterator[int]:
    """A backend that echoes, and sends b"t" every 0.1 s once the client says b"tick"."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(100):
                if data == b"tick":
                    while True:
                        writer.write(b"t")
                        await writer.drain()
                        await asyncio.sleep(0.1)
                writer.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = loop_thread.run(start())
    yield int(server.sockets[0].getsockname()[1])

    async def stop() -> None:
        server.close()

    loop_thread.run(stop())


def router(backend: int, **lifecycle: str) -> str:
    return json.dumps({"tcp": {
        "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"],
                          **lifecycle}},
        "services": {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{backend}"}]}}}}})


def open_for(sock: socket.socket, seconds: float) -> float:
    """Seconds until the peer closes (reads and discards), at most `seconds`."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if not sock.recv(100):
                break
        except TimeoutError:
            continue
        except ConnectionError:
            break
    return time.monotonic() - started


def test_client_traffic_keeps_a_relay_then_quiet_closes_it(
        loop_thread: LoopThread, ticker: int, tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, router(ticker, idleTimeout="300ms"))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            for _ in range(8):  # 0.8 s, far past the timeout, each gap below it
                time.sleep(0.1)
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"
            closed_after = open_for(sock, 2)
            assert 0.25 < closed_after < 0.6
        assert STATS.closes[("ep", "idle_timeout")] >= 1
    finally:
        stop_router(loop_thread, app)


def test_backend_traffic_alone_keeps_a_relay_open(loop_thread: LoopThread, ticker: int,
                                                  tmp_path: Path) -> None:
    app = start_router(loop_thread, tmp_path, router(ticker, idleTimeout="300ms"))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            sock.sendall(b"tick")
            assert open_for(sock, 1.0) >= 1.0  # the ticks flow, the client says nothing
    finally:
        stop_router(loop_thread, app)


def test_max_duration_closes_even_a_busy_connection(loop_thread: LoopThread, ticker: int,
                                                    tmp_path: Path) -> None:
    before = STATS.closes[("ep", "max_duration")]
    app = start_router(loop_thread, tmp_path, router(ticker, maxDuration="500ms",
                                                     idleTimeout="10s"))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            sock.sendall(b"tick")
            assert 0.4 < open_for(sock, 3) < 0.9
        # Counted once the loop's thread finishes the connection, just after the sockets close.
        deadline = time.monotonic() + 5
        while STATS.closes[("ep", "max_duration")] != before + 1:
            assert time.monotonic() < deadline, STATS.closes[("ep", "max_duration")] - before
            time.sleep(0.01)
    finally:
        stop_router(loop_thread, app)
