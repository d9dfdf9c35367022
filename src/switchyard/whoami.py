"""Small backends for demos and tests: a TCP one that says who it is and who called, then
echoes, and an HTTP one that answers with the same and the request head it received."""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from switchyard.addresses import host_port


class WhoamiProtocol(asyncio.Protocol):
    """Greets each connection with its name and the client address it sees, then echoes."""

    def __init__(self, name: str, banner: bool = True) -> None:
        self.name = name
        self.banner = banner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.banner:
            peer = transport.get_extra_info("peername")
            self.transport.write(greeting(self.name, peer))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Returning False closes the transport once our writes are flushed: the peer gets every
        # echoed byte, then our FIN. (Writing EOF from inside eof_received instead corrupted
        # uvloop 0.23's heap within a few thousand proxied connections: "double free".)
        return False


def greeting(name: str, peer: object) -> bytes:
    host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("?", 0)
    address = host_port(str(host), port)
    return f"Hostname: {name}\nRemoteAddr: {address}\n".encode()


def server_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


async def start_whoami(name: str, host: str = "127.0.0.1", port: int = 0, *,
                       tls: ssl.SSLContext | None = None, banner: bool = True) -> asyncio.Server:
    """Start a whoami server on the running loop; `port=0` picks a free port."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: WhoamiProtocol(name, banner), host, port, ssl=tls)


async def serve_whoami(name: str, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    server = await start_whoami(name, host, port, tls=tls)
    bound = server.sockets[0].getsockname()
    print(f"whoami {name} listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


class HTTPWhoamiProtocol(asyncio.Protocol):
    """The HTTP/1.1 form, for the demo's HTTP routers: answers every request with its name, the
    client address it sees and the request head as it arrived (Host, X-Forwarded-*, what the
    middlewares added), as a plain-text body. Keep-alive, bodies (read and dropped), pipelining.
    """

    def __init__(self, name: str) -> None:
        import httptools

        self.name = name
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        import httptools

        assert self.transport is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._fields = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_message_complete(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        parser = self._parser
        method = parser.get_method().decode("latin-1")
        version = parser.get_http_version()
        lines = [greeting(self.name, peer).decode(),
                 f"{method} {self._url.decode('latin-1')} HTTP/{version}\n"]
        lines += [f"{name.decode('latin-1')}: {value.decode('latin-1')}\n"
                  for name, value in self._fields]
        body = "".join(lines).encode()
        keep = parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + b"Content-Length: %d\r\n" % len(body)
            + (b"" if keep else b"Connection: close\r\n") + b"\r\n"
            + (b"" if method == "HEAD" else body))
        if not keep:
            self.transport.close()


async def start_http_whoami(name: str, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start an HTTP whoami on the running loop; `port=0` picks a free port."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HTTPWhoamiProtocol(name), host, port)
