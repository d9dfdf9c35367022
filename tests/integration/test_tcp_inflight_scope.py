"""inFlightConn scopes on real sockets: per client IP (Traefik's), per router, global, across reloads."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import Backends, LoopThread, connect, read_lines, start_router, stop_router


def wait(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def config(backend: int, scope: str, extra_router: bool = False) -> str:
    routers = {"a": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["a", "b"],
                     "middlewares": ["cap"]},
               "c": {"rule": "HostSNI(`*`)", "service": "s", "entryPoints": ["c"],
                     "middlewares": ["cap"]}}
    services = {"s": {"loadBalancer": {"servers": [{"address": f"127.0.0.1:{backend}"}]}}}
    if extra_router:
        services["spare"] = {"loadBalancer": {"servers": [{"address": "127.0.0.1:9"}]}}
    return json.dumps({"tcp": {
        "routers": routers, "services": services,
        "middlewares": {"cap": {"inFlightConn": {"amount": 2, "scope": scope}}}}})


def admitted(port: int) -> tuple[bool, socket.socket]:
    sock = connect(port)
    ok = bool(read_lines(sock, 1))
    return ok, sock


def run(loop_thread: LoopThread, backends: Backends, tmp_path: Path, scope: str,
        order: list[str]) -> list[bool]:
    app = start_router(loop_thread, tmp_path, config(backends.whoami("b"), scope),
                       entrypoints={"a": "127.0.0.1:0", "b": "127.0.0.1:0", "c": "127.0.0.1:0"})
    held = []
    try:
        got = []
        for ep in order:
            ok, sock = admitted(app.entrypoints[ep].port)
            got.append(ok)
            held.append(sock)
        return got
    finally:
        for sock in held:
            sock.close()
        stop_router(loop_thread, app)


def test_client_ip_scope_counts_per_router_instance_as_traefik(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    # Traefik: one counter per router and entry point, keyed by client IP.
    assert run(loop_thread, backends, tmp_path, "clientIP",
               ["a", "a", "a", "b", "b", "c"]) == [True, True, False, True, True, True]


def test_router_scope_counts_the_routers_connections_on_every_entry_point(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    assert run(loop_thread, backends, tmp_path, "router",
               ["a", "b", "b", "c", "c", "c"]) == [True, True, False, True, True, False]


def test_global_scope_counts_every_router_using_the_middleware(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    assert run(loop_thread, backends, tmp_path, "global",
               ["a", "c", "b", "c"]) == [True, True, False, False]


def test_global_counts_survive_a_reload_and_free_up_when_connections_end(
        loop_thread: LoopThread, backends: Backends, tmp_path: Path) -> None:
    backend = backends.whoami("b")
    app = start_router(loop_thread, tmp_path, config(backend, "global"),
                       entrypoints={"a": "127.0.0.1:0", "b": "127.0.0.1:0", "c": "127.0.0.1:0"},
                       providers={"providersThrottleDuration": "10ms",
                                  "file": {"filename": str(tmp_path / "dynamic.yml")}})
    port = app.entrypoints["a"].port
    try:
        first, one = admitted(port)
        second, two = admitted(port)
        assert first and second
        old = app.runtime
        (tmp_path / "dynamic.yml").write_text(config(backend, "global", extra_router=True))
        wait(lambda: app.runtime is not old, "the reload")
        assert not admitted(app.entrypoints["c"].port)[0]  # the two are still counted
        one.close()
        wait(lambda: len(app.entrypoints["a"].connections) == 1, "the close to be seen")
        ok, three = admitted(app.entrypoints["c"].port)
        assert ok
        for sock in (two, three):
            sock.close()
    finally:
        stop_router(loop_thread, app)
