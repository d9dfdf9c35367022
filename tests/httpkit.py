"""Test wiring for the HTTP engine: a stand-in for the TCP data plane's handover, and backends."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from switchyard.http.handler import ConnectionInfo, Handler
from switchyard.http.server import HTTPServerConnection, ServerSettings
from tests.harness import LoopThread

BLOCK = hashlib.sha256(b"switchyard").digest() * (1 << 15)  # 1 MiB of fixed bytes


def block_digest(size: int) -> str:
    """The sha256 of ``size`` bytes of the download pattern (BLOCK repeated)."""
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(BLOCK))
    for _ in range(whole):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


class Layer(asyncio.Protocol):
    """A transport-like object of our own over the real transport, as the TLS terminator is.

    It offers only the methods the HTTP engine may rely on and passes the protocol callbacks
    through, so the engine is shown to work over something that is not a loop transport.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._protocol: asyncio.Protocol | None = None
        transport.set_protocol(self)

    # transport side, for the HTTP engine
    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    # protocol side, from the real transport
    def data_received(self, data: bytes) -> None:
        assert self._protocol is not None
        self._protocol.data_received(data)

    def eof_received(self) -> bool | None:
        assert self._protocol is not None
        self._protocol.eof_received()
        return False  # no half-close through this layer, as through TLS

    def connection_lost(self, exc: Exception | None) -> None:
        if self._protocol is not None:
            self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._protocol is not None:
            self._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self._protocol is not None:
            self._protocol.resume_writing()


class Handover(asyncio.Protocol):
    """Reads like the TCP data plane does before it decides: ``peek`` bytes, then hands over.

    ``peek`` 0 hands over at the first line end (or after 4 bytes without one); ``layered``
    puts a Layer between the socket and the engine.
    """

    def __init__(self, handler: Handler, settings: ServerSettings, peek: int,
                 conns: list[HTTPServerConnection], layered: bool = False) -> None:
        self._handler = handler
        self._settings = settings
        self._peek = peek
        self._conns = conns
        self._layered = layered
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        enough = (len(self._buffer) >= self._peek if self._peek
                  else b"\n" in self._buffer or len(self._buffer) >= 4)
        if not enough:
            return
        transport = self._transport
        assert transport is not None
        client = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        info = ConnectionInfo("web", client[0], client[1], local[0], local[1])
        conn = HTTPServerConnection(self._handler, info, self._settings)
        self._conns.append(conn)
        carrier: Any = Layer(transport) if self._layered else transport
        carrier.set_protocol(conn)
        conn.connection_made(carrier)
        conn.data_received(self._buffer)


class Engine:
    """The engine served on 127.0.0.1 by a plain asyncio server that hands connections over."""

    def __init__(self, loop: LoopThread, handler: Handler,
                 settings: ServerSettings | None = None, peek: int = 0,
                 layered: bool = False) -> None:
        self.loop = loop
        self.conns: list[HTTPServerConnection] = []

        async def start() -> asyncio.Server:
            running = asyncio.get_running_loop()
            return await running.create_server(
                lambda: Handover(handler, settings or ServerSettings(), peek, self.conns,
                                 layered),
                "127.0.0.1", 0)

        self.server = loop.run(start())
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        self.loop.run(stop())


Route = Callable[["H11Backend", h11.Request, "BackendExchange"], Any]


class BackendExchange:
    """What a backend route gets: the request, its body reader and the writer."""

    def __init__(self, conn: h11.Connection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer

    async def events(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
                data = await self.reader.read(65536)
                self.conn.receive_data(data)
                continue
            return event

    async def body(self) -> bytes:
        parts = []
        while True:
            event = await self.events()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            else:
                return b"".join(parts)

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()


class H11Backend:
    """A backend written with h11: routes by path; counts connections and keeps requests."""

    def __init__(self, loop: LoopThread, *, close_after_response: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.loop = loop
        self.connections = 0
        self.requests: list[h11.Request] = []
        self.close_after_response = close_after_response
        self.writers: list[asyncio.StreamWriter] = []

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)

        self.server = loop.run(start())
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for writer in self.writers:
                writer.close()

        self.loop.run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        conn = h11.Connection(h11.SERVER)
        exchange = BackendExchange(conn, reader, writer)
        try:
            while True:
                event = await exchange.events()
                if not isinstance(event, h11.Request):
                    break
                self.requests.append(event)
                path = urlsplit(event.target.decode()).path.rstrip("/").rpartition("/")[2] or "echo"
                await getattr(self, "route_" + path)(event, exchange)
                if self.close_after_response:
                    # Close silently after each response, as a server with a short idle timeout.
                    break
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                while conn.their_state is not h11.DONE:
                    if isinstance(await exchange.events(), h11.ConnectionClosed):
                        return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()

    @staticmethod
    def query(request: h11.Request) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(request.target.decode()).query).items()}

    async def route_echo(self, request: h11.Request, exchange: BackendExchange) -> None:
        body = await exchange.body()
        payload = json.dumps({
            "method": request.method.decode(), "target": request.target.decode(),
            "headers": [[n.decode(), v.decode()] for n, v in request.headers.raw_items()],
            "body": len(body),
        }).encode()
        extra = [(k.encode(), v.encode()) for k, v in self.query(request).items()
                 if k.startswith("h-")]
        await exchange.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            *((k[2:], v) for k, v in extra)]))
        await exchange.send(h11.Data(data=payload))
        await exchange.send(h11.EndOfMessage())

    async def route_slow(self, request: h11.Request, exchange: BackendExchange) -> None:
        await asyncio.sleep(float(self.query(request).get("delay", "0.1")))
        await self.route_echo(request, exchange)

    async def route_upload(self, request: h11.Request, exchange: BackendExchange) -> None:
        digest = hashlib.sha256()
        size = 0
        while True:
            event = await exchange.events()
            if not isinstance(event, h11.Data):
                break
            digest.update(event.data)
            size += len(event.data)
        payload = f"{size} {digest.hexdigest()}".encode()
        await exchange.send(h11.Response(status_code=200,
                                         headers=[("Content-Length", str(len(payload)))]))
        await exchange.send(h11.Data(data=payload))
        await exchange.send(h11.EndOfMessage())

    async def route_download(self, request: h11.Request, exchange: BackendExchange) -> None:
        await exchange.body()
        query = self.query(request)
        size = int(query["size"])
        headers = [] if query.get("chunked") else [("Content-Length", str(size))]
        await exchange.send(h11.Response(status_code=200, headers=headers))
        sent = 0 if request.method != b"HEAD" else size
        step = 256 * 1024
        view = memoryview(BLOCK)
        while sent < size:
            offset = sent % len(BLOCK)
            piece = view[offset:offset + min(step, size - sent, len(BLOCK) - offset)]
            await exchange.send(h11.Data(data=bytes(piece)))
            sent += len(piece)
        await exchange.send(h11.EndOfMessage())

    async def route_hang(self, request: h11.Request, exchange: BackendExchange) -> None:
        await asyncio.sleep(3600)

    async def route_die(self, request: h11.Request, exchange: BackendExchange) -> None:
        """Starts a response, sends part of the body, then the process "dies" (RST)."""
        await exchange.body()
        chunked = self.query(request).get("chunked")
        headers = [] if chunked else [("Content-Length", "100000")]
        await exchange.send(h11.Response(status_code=200, headers=headers))
        await exchange.send(h11.Data(data=b"x" * 1000))
        await asyncio.sleep(0.05)
        sock = exchange.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        exchange.writer.transport.abort()
        raise ConnectionResetError

    async def route_reject(self, request: h11.Request, exchange: BackendExchange) -> None:
        """Answers 413 at once, without reading the body (nor sending 100 Continue)."""
        await exchange.send(h11.Response(status_code=413, headers=[("Content-Length", "0"),
                                                                   ("Connection", "close")]))
        await exchange.send(h11.EndOfMessage())

    async def route_hop(self, request: h11.Request, exchange: BackendExchange) -> None:
        await exchange.body()
        await exchange.send(h11.Response(status_code=200, headers=[
            ("Content-Length", "2"), ("Connection", "keep-alive, X-Private"),
            ("X-Private", "secret"), ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"),
            ("X-Public", "yes")]))
        await exchange.send(h11.Data(data=b"ok"))
        await exchange.send(h11.EndOfMessage())
