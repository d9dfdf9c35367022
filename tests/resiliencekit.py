"""Backends for retry and circuit breaker tests: they count what reached them and misbehave on cue.

``ScriptedBackend(statuses)`` answers its n-th request with ``statuses[n]`` (the last one
forever after) and records every request (time, method, path, body). ``mode`` makes it
``"cut"`` a 200 response short after its head (a response that has started), or ``"close"``
the connection after reading a request without answering; ``delay`` makes each answer late. ``refused_port()`` is a loopback
port nothing listens on.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.harness import free_port

__all__ = ["ScriptedBackend", "Seen", "refused_port", "scripted_backend"]


@dataclass(frozen=True)
class Seen:
    at: float
    method: str
    path: str
    body: bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        backend = self.server.backend
        status = backend.next_status(Seen(time.monotonic(), self.command, self.path, body))
        if backend.delay:
            time.sleep(backend.delay)
        if backend.mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if backend.mode == "cut":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            time.sleep(0.25)  # long enough for Traefik to flush the head (every 100 ms)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = f"status {status} for {self.command} {self.path} body {len(body)}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    backend: ScriptedBackend


class ScriptedBackend:
    def __init__(self, statuses: Sequence[int] = (200,), mode: str = "answer",
                 delay: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.mode = mode
        self.delay = delay
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = self
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def next_status(self, seen: Seen) -> int:
        with self._lock:
            index = min(len(self.seen), len(self.statuses) - 1)
            self.seen.append(seen)
            return self.statuses[index]

    def reset(self, statuses: Sequence[int] | None = None) -> None:
        with self._lock:
            self.seen = []
            if statuses is not None:
                self.statuses = list(statuses)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def scripted_backend(statuses: Sequence[int] = (200,), mode: str = "answer",
                     delay: float = 0.0) -> Iterator[ScriptedBackend]:
    backend = ScriptedBackend(statuses, mode, delay)
    try:
        yield backend
    finally:
        backend.close()


def refused_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound by nobody right now)."""
    return free_port()
