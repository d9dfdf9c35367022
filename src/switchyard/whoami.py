"""A small TCP backend for demos and tests: says who it is and who called, then echoes."""

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
