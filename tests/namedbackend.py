"""A tiny HTTP/1.1 backend for service tests: answers its own name, with a status it is told."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from switchyard.http.balancer import BalancedServer
from switchyard.http.proxy import ReverseProxy, parse_server_url
from tests.harness import LoopThread


class NamedBackend:
    """Answers every request with ``status`` and its ``name`` as the body; counts requests.

    ``paths`` keeps the request targets, ``heads`` the request heads as received.
    """

    def __init__(self, loop: LoopThread, name: str, status: int = 200) -> None:
        self.loop = loop
        self.name = name
        self.status = status
        self.paths: list[str] = []
        self.heads: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.headers: list[tuple[str, str]] = []  # extra response header fields
        self.delay = 0.0  # seconds before each response head

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self.server: asyncio.Server | None = loop.run(start())
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def hits(self) -> int:
        return len(self.paths)

    def balanced(self, weight: int = 1) -> BalancedServer:
        return BalancedServer(ReverseProxy(parse_server_url(self.url)), weight)

    def stop(self) -> None:
        """Stop listening and drop open connections (the backend "dies")."""
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in self.writers:
                writer.transport.abort()
            self.writers.clear()

        self.loop.run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.paths.append(head.split(b" ", 2)[1].decode())
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if self.delay:
                    await asyncio.sleep(self.delay)
                body = self.name.encode()
                if self.status in (204, 304) or head.startswith(b"HEAD "):
                    body = b""
                extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in self.headers)
                writer.write(b"HTTP/1.1 %d X\r\n%bContent-Length: %d\r\n\r\n%b"
                             % (self.status, extra, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def get(url: str, headers: dict[str, str] | None = None,
        timeout: float = 5) -> tuple[int, Any, str]:
    """(status, header message, body) of a GET, error statuses included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()
