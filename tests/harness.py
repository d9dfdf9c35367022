"""Test harness: an event loop in a thread running real servers, driven by blocking clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from switchyard.config.loader import static_from_dict
from switchyard.server import Switchyard
from switchyard.whoami import start_whoami

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("SWITCHYARD_LOOP", "uvloop") != "asyncio":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = new_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        # Routers started on this loop and not stopped yet: `stop` stops them first, so that
        # their connections end and leave the process-wide statistics as they found them.
        self.routers: list[Switchyard] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            for app in list(self.routers):
                stop_router(self, app)
            self.run(cancel_all(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


class Backends:
    """whoami servers on 127.0.0.1 (or ::1) with free ports, started on a LoopThread."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.servers: list[asyncio.Server] = []

    def whoami(self, name: str, host: str = "127.0.0.1", **kwargs: Any) -> int:
        server = self.loop.run(start_whoami(name, host, 0, **kwargs))
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def close_all() -> None:
            for server in self.servers:
                server.close()

        self.loop.run(close_all())


def start_router(loop: LoopThread, tmp_path: Path, dynamic: str,
                 entrypoints: dict[str, str] | None = None, **static: Any) -> Switchyard:
    """Switchyard with `dynamic` as its file provider and entry points bound to port 0."""
    config = tmp_path / "dynamic.yml"
    config.write_text(dynamic)
    eps = entrypoints or {"ep": "127.0.0.1:0"}
    raw: dict[str, Any] = {
        "entryPoints": {name: {"address": address} for name, address in eps.items()},
        "providers": {"file": {"filename": str(config)}},
    }
    for name, extra in static.pop("entrypoint_options", {}).items():
        raw["entryPoints"][name].update(extra)
    raw.update(static)
    settings, issues = static_from_dict(raw, "test")
    assert not [i for i in issues if i.severity == "error"], issues
    app = Switchyard(settings)
    loop.run(app.start())
    loop.routers.append(app)
    return app


def stop_router(loop: LoopThread, app: Switchyard) -> None:
    if app in loop.routers:
        loop.routers.remove(app)

    async def stop() -> None:
        for entrypoint in app.entrypoints.values():
            entrypoint.stop_accepting()
            entrypoint.close_all()
        await app.close_internal()

    loop.run(stop())


def connect(port: int, host: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (or an error such as a reset)."""
    chunks = []
    total = 0
    try:
        while total < limit:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def read_lines(sock: socket.socket, count: int) -> list[str]:
    """The first `count` lines the peer sends (whoami greets with two), nothing after them."""
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"\n") < count and time.monotonic() < deadline:
        chunk = sock.recv(1)  # byte by byte, so what follows the lines stays unread
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()[:count]


def greeting_name(sock: socket.socket) -> str:
    """The backend's name from a whoami greeting."""
    lines = read_lines(sock, 2)
    assert lines and lines[0].startswith("Hostname: "), lines
    return lines[0].removeprefix("Hostname: ")


_apt_updated = False


def ensure_command(command: str, package: str) -> str:
    """The path of `command`, installing Debian `package` first if it is missing."""
    import shutil
    import subprocess

    global _apt_updated
    found = shutil.which(command)
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        _apt_updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                   capture_output=True)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"installing {package} did not provide {command}")
    return found


_DEAD: list[socket.socket] = []


def dead_port(host: str = "127.0.0.1") -> int:
    """A port that refuses connections for the rest of the run: bound and never listening,
    so that no listener started later (an entry point on port 0, another process) can be
    given it, as one could a `free_port`, and answer in its place."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    _DEAD.append(sock)
    return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for processes that cannot report theirs)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded stdlib HTTP backend on 127.0.0.1 serving `handler`; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
