"""One proxied connection: [PROXY header], peek, classify, route, admit, dial, relay."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from switchyard.observability.stats import STATS
from switchyard.proxy.proxyproto import ProxyKind, build_v1, build_v2, read_proxy_header
from switchyard.proxy.splice import SpliceRelay, detach_socket, splice_available
from switchyard.rules import ConnMeta
from switchyard.tls.backend import build_backend_context, peer_cert_sans, verify_peer_sans
from switchyard.tls.clienthello import HelloKind, read_client_hello
from switchyard.tls.options import refuses_alpn
from switchyard.tls.postgres import SSL_REQUEST, detect_ssl_request
from switchyard.tls.terminator import TLSTerminator

if TYPE_CHECKING:
    from switchyard.proxy.entrypoint import EntryPoint
    from switchyard.routing.table import Route, RoutingTable
    from switchyard.services import Server, ServersTransport

log = logging.getLogger("switchyard.proxy")

# Connection states, in the order a connection normally passes through them.
PROXY_HEADER, PEEKING = "proxy-header", "peeking"
DIALING, RELAYING, CLOSED = "dialing", "relaying", "closed"
UPGRADING = "upgrading"  # waiting for the transports to drain before splicing
ACME_CHALLENGE = "acme-challenge"  # answering a TLS-ALPN-01 validation ourselves

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
TLS_ERROR = "tls_error"  # TLS termination failed (handshake, client certificate, ...)
TLS_CONFIG = "tls_config"  # the router's TLS options are broken
SHUTDOWN = "shutdown"


# Zero-copy relaying of plaintext streams. A connection starts on the event
# loop's transports (cheapest to set up) and moves to os.splice once it has
# carried SWITCHYARD_SPLICE_AFTER bytes in large reads, so bulk streams are
# zero-copy while short or chatty ones pay nothing extra. SWITCHYARD_SPLICE=0 never splices (the
# portable path); =always splices from the first byte.
_SPLICE_MODE = os.environ.get("SWITCHYARD_SPLICE", "1") if splice_available() else "0"
SPLICE_ALWAYS = _SPLICE_MODE == "always"
SPLICE_AFTER = 0 if _SPLICE_MODE == "0" else int(
    os.environ.get("SWITCHYARD_SPLICE_AFTER", str(1 << 20)))
# A read this large means the sender is ahead of us: a bulk stream, not a
# request/response exchange (those move to splice never).
_BULK_READ = 16 * 1024


def client_host(peer: object) -> tuple[str, int]:
    """The address as Go prints it: IPv4-mapped IPv6 shown as plain IPv4."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "", 0
    host = str(peer[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(peer[1])


class ClientConnection(asyncio.Protocol):
    """The client side of a proxied connection; owns the whole connection's life."""

    # Thousands live at once: slots keep each one small (no per-instance dict).
    __slots__ = (
        "_await_pg_reply",
        "_backend_eof",
        "_buffer",
        "_client_eof",
        "_dial_task",
        "_hs_gathered",
        "_hs_head",
        "_hs_needed",
        "_local",
        "_on_close",
        "_proxy_trusted",
        "_record_end",
        "_relay",
        "_splice_at",
        "_termination_delay",
        "_timer",
        "_to_client",
        "alpn",
        "alpn_negotiated",
        "backend",
        "bytes_in",
        "bytes_out",
        "client_ip",
        "client_port",
        "close_detail",
        "close_kind",
        "closed_by",
        "entrypoint",
        "is_tls",
        "last_activity",
        "postgres",
        "route",
        "server",
        "service_name",
        "sni",
        "started",
        "started_at",
        "state",
        "table",
        "tls",
        "tls_version",
        "tls_versions",
        "transport",
    )

    def __init__(self, entrypoint: EntryPoint) -> None:
        self.entrypoint = entrypoint
        self.table: RoutingTable = entrypoint.table
        self.state = PEEKING
        self.transport: asyncio.Transport | None = None
        self.backend: BackendConnection | None = None
        self.client_ip = ""
        self.client_port = 0
        self._local: tuple[str, int] | None = None  # looked up only when a PROXY header needs it
        self.started_at = time.time()
        self.started = time.monotonic()
        self.last_activity = self.started
        self.route: Route | None = None
        self.server: Server | None = None
        self.service_name = ""
        self.sni: str | None = None
        self.alpn: tuple[str, ...] = ()
        self.tls_versions: tuple[int, ...] = ()
        self.tls_version = ""  # negotiated, when we terminate
        self.alpn_negotiated: str | None = None
        self.is_tls = False
        self.bytes_in = 0  # client -> backend
        self.bytes_out = 0  # backend -> client
        self.close_kind = ""
        self.close_detail = ""
        self.closed_by = ""
        self.postgres = False
        self.tls: TLSTerminator | None = None
        self._proxy_trusted = False
        self._await_pg_reply = False
        self._to_client = bytearray()  # backend bytes held until the client side is ready
        self._relay: SpliceRelay | None = None
        self._dial_task: asyncio.Task[None] | None = None
        self._record_end = 0  # where the next unread TLS record header starts
        self._hs_head = bytearray()  # the handshake message header, once records carry it
        self._hs_gathered = 0  # handshake bytes in complete records
        self._hs_needed = -1  # bytes the ClientHello message takes (-1: not looked yet)
        # Bytes still to pass in large reads before moving to splice (0: never). Only
        # reads of a bulk stream count: small request/response exchanges relay
        # cheaper on the transports than through two splice calls per message.
        self._splice_at = 0
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
            self.last_activity = time.monotonic()
            if self.tls is not None:
                self._decrypt(data)
                return
            self.bytes_in += len(data)
            assert self.backend is not None and self.backend.transport is not None
            self.backend.transport.write(data)
            if self._splice_at and len(data) >= _BULK_READ:
                self._count_bulk(len(data))
        elif state is PEEKING:
            self._buffer += data
            self._classify()
        elif state is PROXY_HEADER:
            self._buffer += data
            self._read_proxy_header()
        elif state is DIALING:
            self._buffer += data
        elif state is ACME_CHALLENGE:
            self._acme_handshake(data)

    def eof_received(self) -> bool:
        self._client_eof = True
        if self.state is PEEKING or self.state is PROXY_HEADER:
            self.close(CLIENT_CLOSED, "client closed before it could be routed", by="client")
            return False
        if self.state is RELAYING:
            if self.tls is not None and not self.tls.handshake_done:
                self.close(TLS_ERROR, "client closed during the TLS handshake", by="client")
                return False
            self._half_closed(self.backend.transport if self.backend else None, by="client")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._relay is not None:
            return  # the transport let go of a socket the splice relay now owns
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

    @property
    def local(self) -> tuple[str, int]:
        """The address the client connected to (PROXY-adjusted)."""
        if self._local is None:
            sockname = self.transport.get_extra_info("sockname") if self.transport else None
            self._local = client_host(sockname)
        return self._local

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    # -- before routing ---------------------------------------------------

    def _hello_record_completed(self) -> bool:
        """Whether reading the hello again can tell anything new.

        The reader re-reads from the start, so calling it on every segment
        costs quadratic time for a client that trickles its hello. Complete
        records are tallied here as they arrive, and the reader runs only to
        vet the first header, to vet the handshake header, and once the
        records carry the whole message: a few calls per connection.
        """
        buf = self._buffer
        if self._hs_needed < 0:  # first look: let the reader vet the record header now
            self._hs_needed = 0
            return True
        pos, head_was = self._record_end, len(self._hs_head)
        while pos + 5 <= len(buf):
            end = pos + 5 + (buf[pos + 3] << 8 | buf[pos + 4])
            if end > len(buf):
                break
            if len(self._hs_head) < 4:
                self._hs_head += buf[pos + 5 : min(end, pos + 5 + 4 - len(self._hs_head))]
            self._hs_gathered += end - pos - 5
            pos = end
        self._record_end = pos
        if len(self._hs_head) < 4:
            return False
        if head_was < 4:
            self._hs_needed = 4 + int.from_bytes(self._hs_head[1:4], "big")
            return True  # the handshake header is known: vet type and length
        return self._hs_gathered >= self._hs_needed

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
                    self._local = client_host(header.destination)
        self._route_or_peek()

    def _classify(self) -> None:
        if not self.postgres:
            starttls = detect_ssl_request(self._buffer)
            if starttls is None:
                return  # a prefix of the SSLRequest: wait, as Traefik does (spec 4.3)
            if starttls:
                # Postgres STARTTLS: agree at once (Traefik does, whatever the route: [S]),
                # then the TLS ClientHello follows.
                self.postgres = True
                del self._buffer[:len(SSL_REQUEST)]
                assert self.transport is not None
                self.transport.write(b"S")
                if not self._buffer:
                    return
        if self._buffer[0] == 0x16 and not self._hello_record_completed():
            return  # the reader cannot progress until a TLS record is complete
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
            if "acme-tls/1" in hello.alpn and self.entrypoint.acme_resolvers and not self.postgres:
                self._answer_acme_challenge(hello.sni or "")
                return
            self.is_tls = True
            self.sni, self.alpn, self.tls_versions = hello.sni, hello.alpn, hello.versions
            route = self.table.tls.match(ConnMeta(hello.sni, hello.alpn, self.client_ip, True))
        elif self.postgres:
            self.close(MALFORMED, "Postgres SSLRequest not followed by a TLS ClientHello",
                       by="switchyard")
            return
        else:
            route = self.table.plain.match(ConnMeta(None, (), self.client_ip, False))
        if route is None:
            what = f"TLS (SNI {self.sni!r})" if self.is_tls else "plain TCP"
            self.close(NO_ROUTE, f"no router matches this {what} connection", by="switchyard")
            return
        self._dispatch(route)

    # -- routed ---------------------------------------------------------

    def _answer_acme_challenge(self, server_name: str) -> None:
        """TLS-ALPN-01: one handshake with the challenge certificate, then close (spec 4.4)."""
        context = next((c for r in self.entrypoint.acme_resolvers
                        if (c := r.challenge_context(server_name)) is not None), None)
        if context is None:
            self.close(NO_ROUTE, f"acme-tls/1 hello for {server_name!r} with no pending "
                       "challenge", by="switchyard")
            return
        self.state = ACME_CHALLENGE
        self.sni = server_name
        self.tls = TLSTerminator(context)
        self._timer = asyncio.get_running_loop().call_later(
            2.0, self.close, TLS_ERROR, "ACME challenge handshake timed out", "switchyard")
        pending, self._buffer = bytes(self._buffer), bytearray()
        self._acme_handshake(pending)

    def _acme_handshake(self, data: bytes) -> None:
        assert self.tls is not None and self.transport is not None
        try:
            _, reply = self.tls.receive(data)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self.close(TLS_ERROR, f"ACME challenge handshake failed: {exc}", by="switchyard")
            return
        if reply:
            self.transport.write(reply)
        if self.tls.handshake_done:
            self.close(NORMAL, "answered an ACME TLS-ALPN-01 challenge", by="switchyard")

    def _dispatch(self, route: Route) -> None:
        self.route = route
        self.service_name = route.service_name
        if route.tls_error:
            self.close(TLS_CONFIG, route.tls_error, by="switchyard")
            return
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
        # Held on the connection (which the entry point holds): the loop keeps
        # only weak references to tasks.
        self._dial_task = asyncio.get_running_loop().create_task(self._dial(server, transport))

    def _proxy_header(self, transport: ServersTransport) -> bytes:
        """The PROXY header announcing the client to the backend, if the transport wants one."""
        if not transport.proxy_protocol_version:
            return b""
        build = build_v1 if transport.proxy_protocol_version == 1 else build_v2
        return build((self.client_ip, self.client_port), self.local)

    async def _dial(self, server: Server, transport: ServersTransport) -> None:
        route = self.route
        plaintext = (route is not None and route.tls_context is None and not self.postgres
                     and not server.tls)
        if SPLICE_ALWAYS and plaintext:
            await self._dial_spliced(server, transport)
            return
        if plaintext and SPLICE_AFTER:
            self._splice_at = SPLICE_AFTER
        loop = asyncio.get_running_loop()
        backend = BackendConnection(self)
        header = self._proxy_header(transport)
        # A plain timer rather than asyncio.timeout(): the same effect for a
        # fraction of the per-connection cost.
        expiry = _Expiry()
        deadline = (loop.call_later(transport.dial_timeout, expiry.fire)
                    if transport.dial_timeout > 0 else None)
        try:
            try:
                if server.tls:
                    await self._dial_tls(loop, backend, server, transport, header)
                    header = b""
                else:
                    await loop.create_connection(lambda: backend, server.host, server.port)
            except asyncio.CancelledError:
                if not expiry.fired:
                    raise  # cancelled from outside (shutdown), not by our deadline
                expiry.task.uncancel()
                raise TimeoutError from None
            finally:
                if deadline is not None:
                    deadline.cancel()
        except (OSError, TimeoutError, ValueError) as exc:
            if backend.transport is not None:
                backend.transport.abort()
            self._dial_failed(server, transport, exc)
            return
        if self.state is CLOSED:
            if backend.transport is not None:
                backend.transport.close()
            return
        self.backend = backend
        self._termination_delay = transport.termination_delay
        assert backend.transport is not None and self.transport is not None
        if header:
            backend.transport.write(header)
        route = self.route
        assert route is not None
        self.state = RELAYING
        self.last_activity = time.monotonic()
        if route.tls_context is not None and self.alpn and refuses_alpn(route.tls_alpn,
                                                                         self.alpn):
            self.close(TLS_ERROR, "no ALPN protocol in common with the client "
                       f"(client offers {', '.join(self.alpn)})", by="switchyard")
            return
        if route.tls_context is not None:
            # Termination: the handshake starts only now, after middlewares and
            # the dial (Traefik's order, spec 4.5); the peeked hello goes in first.
            self.tls = TLSTerminator(route.tls_context)
            self._arm_handshake_timer()
            pending, self._buffer = bytes(self._buffer), bytearray()
            self._decrypt(pending)
            if self.state is CLOSED:
                return
        else:
            if self._to_client:
                held, self._to_client = bytes(self._to_client), bytearray()
                self.to_client(held)
            if self.postgres:
                # Passthrough STARTTLS: the backend must see the SSLRequest and
                # answer it itself; its "S" is swallowed (we already sent ours).
                # The hello waits for that "S": PostgreSQL refuses bytes that
                # arrive together with the SSLRequest.
                backend.transport.write(SSL_REQUEST)
                self._await_pg_reply = True
                return
            if self._buffer:
                # Everything read while deciding goes first: nothing peeked is lost.
                self.bytes_in += len(self._buffer)
                backend.transport.write(bytes(self._buffer))
                self._buffer = bytearray()
        self._release_client()

    def _release_client(self) -> None:
        """Let the client's bytes flow again (or pass on the FIN it already sent)."""
        assert self.transport is not None and self.backend is not None
        if self._client_eof:
            self._half_closed(self.backend.transport, by="client")
        else:
            self.transport.resume_reading()
        if (self._backend_eof and not self._to_client and self.state is RELAYING
                and (self.tls is None or self.tls.handshake_done)):
            self._pass_backend_eof()  # the backend finished before the relay was set up

    def postgres_accepted(self) -> None:
        """The backend said "S" to the replayed SSLRequest: now the ClientHello."""
        self._await_pg_reply = False
        assert self.backend is not None and self.backend.transport is not None
        if self._buffer:
            self.bytes_in += len(self._buffer)
            self.backend.transport.write(bytes(self._buffer))
            self._buffer = bytearray()
        self._release_client()

    def _dial_failed(self, server: Server, transport: ServersTransport,
                     exc: BaseException) -> None:
        """The backend could not be reached: log it, close the client (nothing written)."""
        reason = f"timed out after {transport.dial_timeout:g}s" if isinstance(
            exc, TimeoutError) else (str(exc) or type(exc).__name__)
        log.warning('router "%s": cannot reach server %s: %s',
                    self.route.name if self.route else "?", server.address, reason)
        self.close(DIAL_FAILED, f"dial {server.address}: {reason}", by="switchyard")

    async def _dial_tls(self, loop: asyncio.AbstractEventLoop, backend: BackendConnection,
                        server: Server, transport: ServersTransport, header: bytes) -> None:
        """TLS to the backend (`servers[].tls`); a PROXY header goes first, in clear."""
        context, server_name = build_backend_context(transport.tls, server.host)
        sock = await _connect(loop, server.host, server.port)
        try:
            if header:
                await loop.sock_sendall(sock, header)
            await loop.create_connection(lambda: backend, sock=sock, ssl=context,
                                         server_hostname=server_name)
        except BaseException:
            sock.close()
            raise
        sans = peer_cert_sans(transport.tls)
        if sans:
            assert backend.transport is not None
            tls_object = backend.transport.get_extra_info("ssl_object")
            der = tls_object.getpeercert(True) if tls_object is not None else None
            problem = verify_peer_sans(der or b"", sans)
            if problem:
                raise ValueError(f"backend certificate refused: {problem}")

    async def _dial_spliced(self, server: Server, transport: ServersTransport) -> None:
        """Plaintext path: connect a raw socket, flush the peeked bytes, then splice."""
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(transport.dial_timeout if transport.dial_timeout > 0
                                       else None):
                sock = await _connect(loop, server.host, server.port)
                if transport.proxy_protocol_version:
                    build = build_v1 if transport.proxy_protocol_version == 1 else build_v2
                    await loop.sock_sendall(sock, build((self.client_ip, self.client_port),
                                                        self.local))
                if self._buffer:
                    # Everything read while deciding goes first: nothing peeked is lost.
                    await loop.sock_sendall(sock, bytes(self._buffer))
                    self.bytes_in += len(self._buffer)
                    self._buffer = bytearray()
        except (OSError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            self._dial_failed(server, transport, exc)
            return
        assert sock is not None
        client = detach_socket(self.transport) if self.transport is not None else None
        if self.state is CLOSED or client is None:
            sock.close()
            if client is not None:
                client.close()
            self.close(CLIENT_CLOSED, "client left while the backend was dialled", by="client")
            return
        self._termination_delay = transport.termination_delay
        self._relay = SpliceRelay(client, sock, self._spliced_bytes, self._spliced_eof,
                                  self._spliced_error)
        assert self.transport is not None
        self.transport.abort()  # closes only its copy of the descriptor
        self.state = RELAYING
        self.last_activity = time.monotonic()
        STATS.spliced += 1
        self._relay.start()

    def _count_bulk(self, size: int) -> None:
        self._splice_at -= size
        if self._splice_at <= 0:
            self._begin_splice()

    def _begin_splice(self) -> None:
        """Move a busy plaintext relay from the transports to os.splice."""
        self._splice_at = 0
        if self._client_eof or self._backend_eof:
            return  # already winding down: not worth moving
        assert self.transport is not None and self.backend is not None
        assert self.backend.transport is not None
        self.state = UPGRADING
        self.transport.pause_reading()
        self.backend.transport.pause_reading()
        self._finish_splice_upgrade()

    def _finish_splice_upgrade(self) -> None:
        if self.state is not UPGRADING:
            return  # closed meanwhile
        client, backend = self.transport, self.backend.transport if self.backend else None
        assert client is not None and backend is not None
        if client.get_write_buffer_size() or backend.get_write_buffer_size():
            # Bytes still queued in user space must reach the kernel first, or
            # splice would overtake them.
            asyncio.get_running_loop().call_later(0.002, self._finish_splice_upgrade)
            return
        client_sock, backend_sock = detach_socket(client), detach_socket(backend)
        if client_sock is None or backend_sock is None:
            for sock in (client_sock, backend_sock):
                if sock is not None:
                    sock.close()
            self.state = RELAYING
            client.resume_reading()
            backend.resume_reading()
            return
        self._relay = SpliceRelay(client_sock, backend_sock, self._spliced_bytes,
                                  self._spliced_eof, self._spliced_error)
        client.abort()  # each closes only its own copy of the descriptor
        backend.abort()
        self.state = RELAYING
        STATS.spliced += 1
        self._relay.start()

    def _spliced_bytes(self, to_backend: bool, count: int) -> None:
        if to_backend:
            self.bytes_in += count
        else:
            self.bytes_out += count
        self.last_activity = time.monotonic()

    def _spliced_eof(self, side: str) -> None:
        if side == "client":
            self._client_eof = True
        else:
            self._backend_eof = True
        self._half_closed(None, by=side)

    def _spliced_error(self, side: str, exc: OSError) -> None:
        kind = CLIENT_CLOSED if side == "client" else BACKEND_CLOSED
        self.close(kind, f"{side} connection lost: {exc}", by=side)

    def _decrypt(self, data: bytes) -> None:
        """Client ciphertext in: plaintext to the backend, handshake/alerts to the client."""
        tls = self.tls
        assert tls is not None and self.transport is not None
        was_done = tls.handshake_done
        try:
            plaintext, reply = tls.receive(data)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            reply = tls.pending_output()
            if reply:
                self.transport.write(reply)  # the alert tells the client what went wrong
            self.close(TLS_ERROR, f"TLS handshake failed: {exc}", by="switchyard")
            return
        if reply:
            self.transport.write(reply)
        if tls.handshake_done and not was_done:
            self._cancel_timer()
            self.alpn_negotiated = tls.alpn
            self.tls_version = tls.version or ""
            if self._to_client:
                held, self._to_client = bytes(self._to_client), bytearray()
                self.to_client(held)
            if self._backend_eof:
                self._pass_backend_eof()  # the backend finished before our handshake did
            backend = self.backend.transport if self.backend is not None else None
            if backend is not None and not backend.is_closing():
                backend.resume_reading()
        if plaintext:
            self.bytes_in += len(plaintext)
            assert self.backend is not None and self.backend.transport is not None
            self.backend.transport.write(plaintext)
        if tls.peer_closed and not self._client_eof:
            self._client_eof = True
            self._half_closed(self.backend.transport if self.backend else None, by="client")

    def to_client(self, data: bytes) -> None:
        """Backend bytes out to the client, encrypted when we terminate TLS."""
        assert self.transport is not None
        if self.state is not RELAYING:
            # The backend spoke before `_dial` resumed (connection_made and the
            # first read can run before the awaiting task): keep it in order.
            self._to_client += data
            return
        self.bytes_out += len(data)
        self.last_activity = time.monotonic()
        tls = self.tls
        if tls is None:
            self.transport.write(data)
            if self._splice_at and len(data) >= _BULK_READ:
                self._count_bulk(len(data))
        elif tls.handshake_done:
            self.transport.write(tls.send(data))
        else:
            # Server-first backends may speak before our handshake with the
            # client ends: hold it, and stop reading so a chatty backend
            # cannot grow the buffer without bound.
            self.bytes_out -= len(data)
            self._to_client += data
            if self.backend is not None and self.backend.transport is not None:
                self.backend.transport.pause_reading()

    def _arm_handshake_timer(self) -> None:
        # Traefik puts no deadline on the client handshake; a client that stops
        # mid-handshake would hold a backend connection forever, so the entry
        # point's readTimeout bounds it.
        self._cancel_timer()
        if self.table.read_timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self.table.read_timeout, self.close, TLS_ERROR,
                "timed out waiting for the client's TLS handshake", "switchyard")

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
        if (self._to_client or self.state is not RELAYING
                or (self.tls is not None and not self.tls.handshake_done)):
            # Held bytes go first: the FIN follows them once they are sent
            # (when the relay is set up, or when our TLS handshake completes).
            return
        self._pass_backend_eof()

    def _pass_backend_eof(self) -> None:
        if self.tls is not None:
            # A TLS half-close is our close_notify; TCP stays open for the client.
            if self.tls.handshake_done and self.transport is not None:
                self.transport.write(self.tls.close_notify())
            self._half_closed(None, by="backend")
            return
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
        if self._relay is not None:
            self._relay.close()
            self._finish()
            return
        if self.transport is not None:
            self.transport.close()
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.close()

    def _finish(self) -> None:
        """The client socket is gone: release middleware slots, count, log."""
        entrypoint = self.entrypoint
        entrypoint.connections.discard(self)
        self._dial_task = None
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


class _Expiry:
    """Cancels the current task when fired, and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


async def _connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to host:port (IP literals skip the resolver)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: tuple[str, int] = (host, port)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host}") from None
        family, address = infos[0][0], infos[0][4][:2]  # type: ignore[assignment]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


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
        if client._await_pg_reply:
            if data[:1] != b"S":
                client.close(BACKEND_CLOSED, "Postgres backend refused the SSLRequest",
                             by="backend")
                return
            client.postgres_accepted()
            data = data[1:]
            if not data:
                return
        client.to_client(data)

    def eof_received(self) -> bool:
        self.client.backend_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if client._relay is not None:
            return  # the splice relay owns the socket now
        if client.state is RELAYING or client.state is UPGRADING:
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
