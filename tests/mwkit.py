"""Test wiring for HTTP middlewares: an echo backend, Switchyard with one dynamic file, a client.

``EchoBackend`` answers every request with JSON describing what it received (method, raw
target, header fields in order, body), so a test sees exactly what a middleware forwarded.
``serve(tmp_path, loop, dynamic)`` starts Switchyard on one plain entry point ``web`` (and
``websecure`` with TLS when asked) and yields the ports.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness import LoopThread, start_router, stop_router


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are two writes: without this, Nagle and delayed ACKs cost 40 ms a request.
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = int(self.headers.get("X-Echo-Status") or 200)
        payload = json.dumps({
            "method": self.command, "target": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body": body.decode("latin-1"),
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.headers.get("X-Echo-Type") or "application/json")
        for extra in self.headers.get_all("X-Echo-Header") or []:
            name, _, value = extra.partition(":")
            self.send_header(name.strip(), value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def echo_backend() -> Iterator[int]:
    """A threaded HTTP/1.1 backend on 127.0.0.1 answering JSON about each request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def echoed(body: bytes) -> dict[str, Any]:
    """The echo backend's JSON; header names are lower-cased into ``fields`` (name -> [values])."""
    data: dict[str, Any] = json.loads(body)
    fields: dict[str, list[str]] = {}
    for name, value in data["headers"]:
        fields.setdefault(name.lower(), []).append(value)
    data["fields"] = fields
    return data


@contextlib.contextmanager
def serve(loop: LoopThread, tmp_path: Path, dynamic: str, *,
          entrypoints: dict[str, str] | None = None, **static: Any) -> Iterator[dict[str, int]]:
    """Switchyard with ``dynamic`` as its file provider; yields entry point name -> port.

    With ``api={"insecure": True}`` an entry point ``traefik`` is added and ``"api"`` is the
    port the API answers on.
    """
    eps = dict(entrypoints or {"web": "127.0.0.1:0"})
    if "api" in static:
        eps.setdefault("traefik", "127.0.0.1:0")
    app = start_router(loop, tmp_path, dynamic, entrypoints=eps, **static)
    try:
        ports = {name: ep.port for name, ep in app.entrypoints.items()}
        if app.internal_servers:
            ports["api"] = int(app.internal_servers[0].port)
        yield ports
    finally:
        stop_router(loop, app)


def raw_request(port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` as-is on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
