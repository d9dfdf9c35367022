"""onChange on real sockets: what a reload does to live connections of a changed route."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchyard.server import Switchyard
from tests.harness import Backends, LoopThread, connect, greeting_name, start_router, stop_router


def wait(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def config(servers: list[int], on_change: dict[str, Any] | None, router: bool = True) -> str:
    routers = {}
    if router:
        routers["r"] = {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["ep"],
                        **({"onChange": on_change} if on_change else {})}
    return json.dumps({"tcp": {"routers": routers, "services": {"s": {"loadBalancer": {
        "servers": [{"address": f"127.0.0.1:{port}"} for port in servers]}}}}})


def reload(app: Switchyard, path: Path, text: str) -> None:
    old = app.runtime
    path.write_text(text)
    wait(lambda: app.runtime is not old, "the reload")


def alive(sock: socket.socket) -> bool:
    try:
        sock.sendall(b"ping")
        return sock.recv(4) == b"ping"
    except OSError:
        return False


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the peer closes, reading away what comes (fails if it does not)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(100):
        pass
    return time.monotonic() - started


def start(loop_thread: LoopThread, tmp_path: Path, text: str) -> Switchyard:
    return start_router(loop_thread, tmp_path, text,
                        providers={"providersThrottleDuration": "10ms",
                                   "file": {"filename": str(tmp_path / "dynamic.yml")}})


def test_drain_lets_a_removed_routers_connection_run_then_closes_it_on_time(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    backend = backends.whoami("b")
    policy = {"policy": "drain", "drainTimeout": "400ms"}
    app = start(loop_thread, tmp_path, config([backend], policy))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            greeting_name(sock)
            reload(app, tmp_path / "dynamic.yml", config([backend], policy, router=False))
            assert alive(sock)  # still relayed while it drains
            assert 0.2 < closed_within(sock, 3) < 0.8
        # The client sees the close as the sockets close, a moment before the loop's thread
        # finishes the connection.
        wait(lambda: not app.entrypoints["ep"].connections, "the connection to be finished")
    finally:
        stop_router(loop_thread, app)


def test_close_ends_connections_to_a_removed_server_but_not_when_one_is_added(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    policy = {"policy": "close"}
    app = start(loop_thread, tmp_path, config([first], policy))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            assert greeting_name(sock) == "first"
            reload(app, tmp_path / "dynamic.yml", config([first, second], policy))
            assert alive(sock)  # a server added: nothing of its route changed
            reload(app, tmp_path / "dynamic.yml", config([second], policy))
            assert closed_within(sock, 2) < 0.5
    finally:
        stop_router(loop_thread, app)


def test_keep_is_traefiks_behaviour(loop_thread: LoopThread, backends: Backends,
                                    tmp_path: Path) -> None:
    first, second = backends.whoami("first"), backends.whoami("second")
    app = start(loop_thread, tmp_path, config([first], None))
    try:
        with connect(app.entrypoints["ep"].port) as sock:
            greeting_name(sock)
            reload(app, tmp_path / "dynamic.yml", config([second], None, router=False))
            time.sleep(0.1)
            assert alive(sock)
    finally:
        stop_router(loop_thread, app)
