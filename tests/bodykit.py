"""A backend for body-shaping middleware tests: sized, streamed and status-chosen answers.

``GET /body?size=N`` answers N bytes of text with a Content-Length; ``&chunks=K&delay=S``
streams K chunks of N bytes (chunked framing) with S seconds between them; ``&noise=1`` sends incompressible
bytes instead; ``&type=T`` sets the
Content-Type (``none``: no Content-Type); ``&status=C`` the status; ``&h=Name:value`` adds a
header field (repeatable). ``/echo`` answers JSON about the request (method, target, headers,
body length). Every request is counted by path in ``Backend.seen``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Backend", "body_backend", "noise", "text"]


def noise(size: int) -> bytes:
    """The body for ``noise=1``: the same bytes every time, but hardly compressible."""
    return random.Random(size).randbytes(size)


def text(size: int) -> bytes:
    """The body the backend sends for ``size``: compressible, and not all one byte."""
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    return (line * (size // len(line) + 1))[:size]


@dataclass
class Backend:
    port: int
    seen: list[str] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend: Backend

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values for key, values in parse_qs(parts.query).items()}
        self.backend.seen.append(parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            received = self._read_chunked()
        status = int(query.get("status", ["200"])[0])
        if parts.path.startswith("/echo") or parts.path.startswith("/page"):
            body = json.dumps({
                "method": self.command, "target": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
                "body_length": len(received),
            }).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Served-By", "page" if parts.path.startswith("/page") else "echo")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        size = int(query.get("size", ["0"])[0])
        chunks = int(query.get("chunks", ["0"])[0])
        delay = float(query.get("delay", ["0"])[0])
        kind = query.get("type", ["text/plain"])[0]
        self.send_response(status)
        if kind != "none":
            self.send_header("Content-Type", kind)
        for extra in query.get("h", []):
            name, _, value = extra.partition(":")
            self.send_header(name.strip(), value.strip())
        body = noise(size) if query.get("noise") else text(size)
        if chunks:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(chunks):
                if index and delay:
                    time.sleep(delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _read_chunked(self) -> bytes:
        out = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(out)
            out.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def body_backend() -> Iterator[Backend]:
    """The backend on 127.0.0.1 (a thread per connection); yields its Backend record."""
    backend = Backend(0)
    handler = type("Handler", (_Handler,), {"backend": backend})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    backend.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
