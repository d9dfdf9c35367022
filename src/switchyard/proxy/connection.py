"""One proxied connection: [PROXY header], peek, classify, route, admit, dial, relay."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from switchyard.observability.stats import STATS
from switchyard.proxy.proxyproto import ProxyKind, build_v1, build_v2, read_proxy_header
from switchyard.rules import ConnMeta
from switchyard.tls.clienthello import HelloKind, read_client_hello

if TYPE_CHECKING:
    from switchyard.proxy.entrypoint import EntryPoint
    from switchyard.routing.table import Route, RoutingTable
    from switchyard.services import Server, ServersTransport

log = logging.getLogger("switchyard.proxy")

# Connection states, in the order a connection normally passes through them.
PROXY_HEADER, PEEKING = "proxy-header", "peeking"
DIALING, RELAYING, CLOSED = "dialing", "relaying", "closed"

# Why a connection ended: the access log's and the metrics' `reason`.
NORMAL = "normal"  # both sides finished
CLIENT_CLOSED = "client_closed"  # client went away (before or during relay)
BACKEND_CLOSED = "backend_closed"  # backend closed or reset
NO_ROUTE = "no_route"
REJECTED = "rejected"  # a middleware refused it
NO_SERVER = "no_server"  # the service had no server UP
DIAL_FAILED = "dial_failed"
PEEK_TIMEOUT = "peek_timeout"
IDLE_TIMEOUT = "idle_timeout"
TERMINATION_DELAY = "termination_delay"  # the other side did not finish after a half-close
MALFORMED = "malformed"  # bad ClientHello or PROXY header
SHUTDOWN = "shutdown"

_KEEPALIVE_SECONDS = 180  # Traefik's keep-alive period on accepted sockets


def client_host(peer: object) -> tuple[str, int]:
    """The address as Go prints it: IPv4-mapped IPv6 shown as plain IPv4."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "", 0
    host = str(peer[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(peer[1])


def _set_keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPALIVE_SECONDS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _KEEPALIVE_SECONDS)
    except OSError:
        pass


class ClientConnection(asyncio.Protocol):
    """The client side of a proxied connection; owns the whole connection's life."""

    def __init__(self, entrypoint: EntryPoint) -> None:
        self.entrypoint = entrypoint
        self.table: RoutingTable = entrypoint.table
        self.state = PEEKING
        self.transport: asyncio.Transport | None = None
        self.backend: BackendConnection | None = None
        self.client_ip = ""
        self.client_port = 0
        self.local: tuple[str, int] = ("", 0)
        self.started_at = time.time()
        self.started = time.monotonic()
        self.last_activity = self.started
        self.route: Route | None = None
        self.server: Server | None = None
        self.service_name = ""
        self.sni: str | None = None
        self.alpn: tuple[str, ...] = ()
        self.tls_versions: tuple[int, ...] = ()
        self.is_tls = False
        self.bytes_in = 0  # client -> backend
        self.bytes_out = 0  # backend -> client
        self.close_kind = ""
        self.close_detail = ""
        self.closed_by = ""
        self._proxy_trusted = False
        self._buffer = bytearray()
        self._client_eof = False
        self._backend_eof = False
        self._termination_delay = 0.1
        self._timer: asyncio.TimerHandle | None = None
        self._on_close: list[Callable[[], None]] = []

    # -- asyncio.Protocol (client side) ----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.client_ip, self.client_port = client_host(transport.get_extra_info("peername"))
        self.local = client_host(transport.get_extra_info("sockname"))
        _set_keepalive(transport)
        entrypoint = self.entrypoint
        entrypoint.connections.add(self)
        STATS.accepted(entrypoint.name)
        if entrypoint.proxy_protocol is not None:
            self._proxy_trusted = entrypoint.proxy_protocol.trusts(self.client_ip)
            self.state = PROXY_HEADER
            self._arm_read_timer()
            return
        self._route_or_peek()

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is RELAYING:
            self.bytes_in += len(data)
            self.last_activity = time.monotonic()
            assert self.backend is not None and self.backend.transport is not None
            self.backend.transport.write(data)
        elif state is PEEKING:
            self._buffer += data
            self._classify()
        elif state is PROXY_HEADER:
            self._buffer += data
            self._read_proxy_header()
        elif state is DIALING:
            self._buffer += data

    def eof_received(self) -> bool:
        self._client_eof = True
        if self.state is PEEKING or self.state is PROXY_HEADER:
            self.close(CLIENT_CLOSED, "client closed before it could be routed", by="client")
            return False
        if self.state is RELAYING:
            self._half_closed(self.backend.transport if self.backend else None, by="client")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not CLOSED:
            self.close(CLIENT_CLOSED, f"client connection lost: {exc}" if exc else "",
                       by="client")
        self._finish()

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend.
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        backend = self.backend.transport if self.backend is not None else None
        if backend is not None and not backend.is_closing():
            backend.resume_reading()

    # -- middlewares see this -------------------------------------------

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    # -- before routing ---------------------------------------------------

    def _route_or_peek(self) -> None:
        table = self.table
        if table.early_path:
            # Server-first protocols (SMTP, MySQL, SSH banners) need the backend
            # before the client has said anything (spec 4.2).
            route = table.plain.match(ConnMeta(None, (), self.client_ip, False))
            if route is not None:
                self._cancel_timer()
                self._dispatch(route)
                return
        self.state = PEEKING
        self._arm_read_timer()
        if self._buffer:
            self._classify()

    def _arm_read_timer(self) -> None:
        if self._timer is None and self.table.read_timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self.table.read_timeout, self._read_timed_out)

    def _read_timed_out(self) -> None:
        self._timer = None
        if self.state is PROXY_HEADER:
            # No header in time counts as no header (go-proxyproto); only an
            # early-path route can still take a client that has sent nothing.
            self._route_or_peek()
            if self.state is not PEEKING:
                return
            self._cancel_timer()
        self.close(PEEK_TIMEOUT, "timed out waiting for the client's first bytes", by="switchyard")

    def _read_proxy_header(self) -> None:
        result = read_proxy_header(self._buffer)
        kind = result.kind
        if kind is ProxyKind.NEED_MORE:
            return
        if kind is ProxyKind.MALFORMED:
            self.close(MALFORMED, f"malformed PROXY protocol header: {result.reason}",
                       by="switchyard")
            return
        if kind is ProxyKind.HEADER:
            header = result.header
            assert header is not None
            del self._buffer[:header.length]
            # An untrusted peer's header is consumed but not believed (spec 9.2).
            if self._proxy_trusted and header.source is not None:
                self.client_ip, self.client_port = client_host(header.source)
                if header.destination is not None:
                    self.local = client_host(header.destination)
        self._route_or_peek()

    def _classify(self) -> None:
        result = read_client_hello(self._buffer)
        kind = result.kind
        if kind is HelloKind.NEED_MORE:
            return
        if kind is HelloKind.MALFORMED:
            self.close(MALFORMED, f"malformed TLS ClientHello: {result.reason}", by="switchyard")
            return
        self._cancel_timer()
        if kind is HelloKind.HELLO:
            hello = result.hello
            assert hello is not None
            self.is_tls = True
            self.sni, self.alpn, self.tls_versions = hello.sni, hello.alpn, hello.versions
            route = self.table.tls.match(ConnMeta(hello.sni, hello.alpn, self.client_ip, True))
        else:
            route = self.table.plain.match(ConnMeta(None, (), self.client_ip, False))
        if route is None:
            what = f"TLS (SNI {self.sni!r})" if self.is_tls else "plain TCP"
            self.close(NO_ROUTE, f"no router matches this {what} connection", by="switchyard")
            return
        self._dispatch(route)

    # -- routed ---------------------------------------------------------

    def _dispatch(self, route: Route) -> None:
        self.route = route
        self.service_name = route.service_name
        for middleware in route.middlewares:
            refusal = middleware.admit(self)
            if refusal is not None:
                STATS.rejected(self.entrypoint.name, route.name, middleware.name)
                self.close(REJECTED, refusal, by="switchyard")
                return
        picked = route.service.pick()
        if picked is None:
            self.close(NO_SERVER, f'service "{route.service_name}" has no server available',
                       by="switchyard")
            return
        self.state = DIALING
        assert self.transport is not None
        self.transport.pause_reading()
        server, transport = picked
        self.server = server
        server.open_connections += 1
        server.total_connections += 1
        STATS.routed(route.name, route.service_name, server.address)
        asyncio.get_running_loop().create_task(self._dial(server, transport))

    async def _dial(self, server: Server, transport: ServersTransport) -> None:
        loop = asyncio.get_running_loop()
        backend = BackendConnection(self)
        try:
            if transport.dial_timeout > 0:
                async with asyncio.timeout(transport.dial_timeout):
                    await loop.create_connection(lambda: backend, server.host, server.port)
            else:
                await loop.create_connection(lambda: backend, server.host, server.port)
        except (OSError, TimeoutError) as exc:
            reason = f"timed out after {transport.dial_timeout:g}s" if isinstance(
                exc, TimeoutError) else (str(exc) or type(exc).__name__)
            log.warning('router "%s": cannot reach server %s: %s',
                        self.route.name if self.route else "?", server.address, reason)
            self.close(DIAL_FAILED, f"dial {server.address}: {reason}", by="switchyard")
            return
        if self.state is CLOSED:
            if backend.transport is not None:
                backend.transport.close()
            return
        self.backend = backend
        self._termination_delay = transport.termination_delay
        assert backend.transport is not None and self.transport is not None
        if transport.proxy_protocol_version:
            build = build_v1 if transport.proxy_protocol_version == 1 else build_v2
            backend.transport.write(build((self.client_ip, self.client_port), self.local))
        if self._buffer:
            # Everything read while deciding goes first: nothing peeked is lost.
            self.bytes_in += len(self._buffer)
            backend.transport.write(bytes(self._buffer))
            self._buffer = bytearray()
        self.state = RELAYING
        self.last_activity = time.monotonic()
        if self._client_eof:
            self._half_closed(backend.transport, by="client")
        else:
            self.transport.resume_reading()

    def _half_closed(self, toward: asyncio.WriteTransport | None, by: str) -> None:
        """One side sent FIN: pass it on; the other side then has the termination delay."""
        if not self.closed_by:
            self.closed_by = by
        if toward is not None and not toward.is_closing() and toward.can_write_eof():
            toward.write_eof()
        if self._client_eof and self._backend_eof:
            self.close(NORMAL, "", by=self.closed_by)
            return
        if self._termination_delay >= 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._termination_delay, self.close, TERMINATION_DELAY,
                f"the other side did not finish within {self._termination_delay:g}s "
                "of a half-close", "switchyard")

    def backend_eof(self) -> None:
        self._backend_eof = True
        self._half_closed(self.transport, by="backend")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self, kind: str, detail: str = "", by: str = "") -> None:
        """End the connection on both sides; pending writes are flushed first."""
        if self.state is CLOSED:
            return
        self.close_kind, self.close_detail = kind, detail
        if by and not self.closed_by:
            self.closed_by = by
        if detail and kind not in (NORMAL, CLIENT_CLOSED):
            log.debug("%s:%d %s: %s", self.client_ip, self.client_port, kind, detail)
        self.state = CLOSED
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.close()

    def _finish(self) -> None:
        """The client socket is gone: release middleware slots, count, log."""
        entrypoint = self.entrypoint
        entrypoint.connections.discard(self)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
        duration = time.monotonic() - self.started
        STATS.entrypoints[entrypoint.name].finished(duration, self.bytes_in, self.bytes_out)
        STATS.closes[(entrypoint.name, self.close_kind)] += 1
        server = self.server
        if server is not None and self.route is not None:
            server.open_connections -= 1
            server.bytes_in += self.bytes_in
            server.bytes_out += self.bytes_out
            STATS.routers[self.route.name].finished(duration, self.bytes_in, self.bytes_out)
            STATS.services[self.service_name].finished(duration, self.bytes_in, self.bytes_out)
            STATS.servers[(self.service_name, server.address)].finished(
                duration, self.bytes_in, self.bytes_out)
        if entrypoint.access_log is not None:
            entrypoint.access_log.record(self, duration)


class BackendConnection(asyncio.Protocol):
    """The backend side of a proxied connection; reports everything to its client side."""

    __slots__ = ("client", "transport")

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.bytes_out += len(data)
        client.last_activity = time.monotonic()
        assert client.transport is not None
        client.transport.write(data)

    def eof_received(self) -> bool:
        self.client.backend_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if client.state is RELAYING:
            client.close(BACKEND_CLOSED, f"backend connection lost: {exc}" if exc else "",
                         by="backend")

    def pause_writing(self) -> None:
        # The backend reads slower than the client sends: stop reading the client.
        transport = self.client.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self.client.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
