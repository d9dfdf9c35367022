"""One client connection on asyncio transports, strung through its stages: preamble,
decision, dial, relay, or the entry point's HTTP server.

The stages up to the dial and the end are `lifecycle.Lifecycle`'s; each later stage
lives in its own module. This class passes the socket's events to the stage that is
current (`_on_data` / `_on_eof` are the bound handlers of that stage). It serves every
protocol; the fast engine's connection (`fastpath.FastConnection`) is a subclass that
dials plain backends on its own sockets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from switchyard.addresses import peer_address
from switchyard.http.h2server import PREFACE, H2ServerConnection
from switchyard.http.handler import ConnectionInfo
from switchyard.http.server import HTTPServerConnection
from switchyard.observability.record import CloseReason, Phase, Side
from switchyard.observability.stats import STATS
from switchyard.proxy.decision import Action, Decision
from switchyard.proxy.dial import (
    BackendRefused,
    DialError,
    SMTPReplay,
    TerminatedTLS,
    dial,
    needs_handshake,
    proxy_header,
)
from switchyard.proxy.handover import HandedTransport, Writable
from switchyard.proxy.lifecycle import ConnectionHost, Lifecycle
from switchyard.proxy.relay import BackendProtocol, ClientSide, Relay
from switchyard.proxy.tlslayer import TLSLayer
from switchyard.services import Server, ServersTransport

if TYPE_CHECKING:
    from switchyard.routing.table import Route

log = logging.getLogger("switchyard.proxy")

ACME_HANDSHAKE_TIMEOUT = 2.0  # Traefik's deadline for answering a TLS-ALPN-01 validation


class ClientConnection(Lifecycle, asyncio.Protocol):
    """The client side of a proxied connection on asyncio transports: every protocol."""

    # Thousands live at once: slots keep each one small.
    __slots__ = ("_delegate", "_dial_task", "_dialled_transport", "_on_data", "_on_eof",
                 "_relay", "_tls", "transport")

    def __init__(self, host: ConnectionHost) -> None:
        Lifecycle.__init__(self, host)
        self.transport: asyncio.Transport | None = None
        self._on_data: Callable[[bytes], None] = self._read_preamble
        self._on_eof: Callable[[], bool] = self._eof_before_routing
        self._relay: Relay | None = None
        self._tls: TLSLayer | None = None
        self._dial_task: asyncio.Task[None] | None = None
        self._delegate: asyncio.Protocol | None = None  # who serves it after a handover (HTTP)
        self._dialled_transport: ServersTransport | None = None  # of the server it reached

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is not a subclass (no typing.cast: it is a call per connection).
        self.transport = transport  # type: ignore[assignment]
        record = self.record
        record.client_ip, record.client_port = peer_address(transport.get_extra_info("peername"))
        self._host.opened(self)
        self._begin()

    def data_received(self, data: bytes) -> None:
        # A hop, not the stage handler bound in its place: uvloop reads a protocol's
        # data_received once, when the transport is made, so rebinding it later does nothing.
        self._on_data(data)

    def eof_received(self) -> bool:
        return self._on_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._relay is not None and self._relay.spliced:
            return  # the transport let go of a socket the splice relay now owns
        if self._delegate is not None:
            self._delegate.connection_lost(exc)
            if exc is None:
                self.close(CloseReason.NORMAL, "", Side.SWITCHYARD)
        if self.record.reason is None:  # most often the connection has ended already
            self.close(CloseReason.CLIENT_CLOSED, f"client connection lost: {exc}" if exc else "",
                       Side.CLIENT)
        self._finish()

    def pause_writing(self) -> None:
        if self._relay is not None:
            self._relay.client_full()
        elif self._delegate is not None:
            self._delegate.pause_writing()

    def resume_writing(self) -> None:
        if self._relay is not None:
            self._relay.client_drained()
        elif self._delegate is not None:
            self._delegate.resume_writing()

    def socket(self) -> socket.socket | None:
        """The client's socket, wherever it is now (the transport's, or the splice relay's)."""
        if self._relay is not None and self._relay.spliced:
            return self._relay.client_socket
        return self.transport.get_extra_info("socket") if self.transport else None

    # -- stage 1: the preamble, answered on the transport ----------------------------

    def _reply(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    # -- stage 2: the decision, carried out -----------------------------------------

    def _take(self, decision: Decision) -> None:
        if decision.action is Action.ACME:
            self._answer_acme(decision)
        elif decision.action is Action.HTTP:
            self._serve_http(decision)
        elif decision.route is not None and decision.route.async_limits:
            self._ask_async_limits(decision)
        else:
            self._forward(decision)

    def _ask_async_limits(self, decision: Decision) -> None:
        """Limits that answer asynchronously (rate limits): hold the client meanwhile."""
        assert self.transport is not None
        self.transport.pause_reading()
        self._on_data = self._hold
        self._dial_task = asyncio.get_running_loop().create_task(self._async_verdicts(decision))

    async def _async_verdicts(self, decision: Decision) -> None:
        route = decision.route
        assert route is not None
        for limit in route.async_limits:
            refusal = await limit.admit(self.record.client_ip)
            if refusal is not None:
                self._dial_task = None
                STATS.rejected(self.record.entrypoint, route.name, limit.name)
                self.close(CloseReason.REJECTED, refusal, Side.SWITCHYARD)
                return
        self._dial_task = None
        if self.record.reason is None:
            self._forward(decision)

    def _answer_acme(self, decision: Decision) -> None:
        """TLS-ALPN-01: one handshake with the challenge certificate, then close."""
        assert decision.acme_context is not None and self.transport is not None
        self.record.phase = Phase.ACME_CHALLENGE
        tls = self._tls = TLSLayer(
            self.transport, decision.acme_context, loop=self._host.loop, on_plaintext=_ignore,
            on_ready=lambda: self.close(CloseReason.NORMAL,
                                        "answered an ACME TLS-ALPN-01 challenge", Side.SWITCHYARD),
            on_peer_closed=_nothing,
            on_error=lambda detail: self.close(CloseReason.TLS_ERROR,
                                               f"ACME challenge: {detail}", Side.SWITCHYARD))
        self._on_data = tls.receive
        tls.start(self._pending, ACME_HANDSHAKE_TIMEOUT, "handshake timed out")

    # -- or: the entry point's HTTP server -------------------------------------------

    def _serve_http(self, decision: Decision) -> None:
        """Hand the connection, and every byte read so far, to the HTTP server."""
        assert self.transport is not None
        record = self.record
        record.phase, record.http = Phase.HTTP, True
        https = decision.https
        if https is None:
            self._start_http(self.transport, "http", self._pending)
            self._on_eof = self._eof_to_delegate
            return
        assert https.tls_context is not None
        tls = self._tls = TLSLayer(
            self.transport, https.tls_context, loop=self._host.loop,
            on_plaintext=self._plaintext_to_delegate,
            on_ready=self._https_ready, on_peer_closed=self._close_notify_to_delegate,
            on_error=lambda detail: self.close(CloseReason.TLS_ERROR, detail, Side.SWITCHYARD))
        self._on_data = tls.receive
        self._on_eof = self._eof_during_handshake
        tls.start(self._pending, self._table.read_timeout,
                  "timed out waiting for the client's TLS handshake")

    def _https_ready(self) -> None:
        tls = self._tls
        assert tls is not None
        self.record.tls_version, self.record.alpn_negotiated = tls.version, tls.alpn
        self._on_eof = self._eof_to_delegate
        self._start_http(tls, "https", b"")

    def _start_http(self, inner: Writable, scheme: str, first: bytes) -> None:
        table, record = self._table, self.record
        assert table.http is not None
        local = self._local()
        info = ConnectionInfo(
            entry_point=record.entrypoint, client_ip=record.client_ip,
            client_port=record.client_port, local_ip=local[0], local_port=local[1], scheme=scheme,
            tls_server_name=record.sni if scheme == "https" else None,
            tls_version=record.tls_version or None, tls_alpn=record.alpn_negotiated,
            tls_peer_certificates=(self._tls.peer_certificates
                                   if scheme == "https" and self._tls is not None else ()),
            tls_cipher=self._tls.cipher if scheme == "https" and self._tls is not None else None)
        http: asyncio.Protocol
        if record.alpn_negotiated == "h2" if scheme == "https" else first.startswith(PREFACE):
            http = H2ServerConnection(table.http, info, table.http_settings)
        else:
            http = HTTPServerConnection(table.http, info, table.http_settings)
        self._rebind(http)
        http.connection_made(HandedTransport(inner, http, self._rebind))  # type: ignore[arg-type]
        if first:
            http.data_received(first)

    def _rebind(self, protocol: asyncio.BaseProtocol) -> None:
        delegate = self._delegate = cast(asyncio.Protocol, protocol)
        if self._tls is None:
            self._on_data = delegate.data_received  # plaintext: no hop per read

    def _plaintext_to_delegate(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.data_received(data)

    def _eof_to_delegate(self) -> bool:
        assert self._delegate is not None
        return bool(self._delegate.eof_received())

    def _close_notify_to_delegate(self) -> None:
        if self._delegate is not None:
            self._delegate.eof_received()

    # -- stage 3: dial ---------------------------------------------------------------

    def _connect(self, decision: Decision) -> None:
        route, server, transport = decision.route, decision.server, decision.transport
        assert route is not None and server is not None and transport is not None
        assert self.transport is not None
        self.transport.pause_reading()
        self._on_data = self._hold
        self._on_eof = self._eof_while_dialing
        client: ClientSide = self.transport
        if route.tls_context is not None:
            client = self._tls = TLSLayer(
                self.transport, route.tls_context, loop=self._host.loop,
                on_plaintext=self._from_client, on_ready=self._handshake_done,
                on_peer_closed=self._client_sent_close_notify,
                on_error=lambda detail: self.close(CloseReason.TLS_ERROR, detail,
                                                   Side.SWITCHYARD))
        plaintext = (route.tls_context is None and not self.record.postgres
                     and not self.record.smtp and not server.tls)
        self._relay = Relay(self.record, client, self.close, loop=self._host.loop,
                            termination_delay=transport.termination_delay, plaintext=plaintext)
        self._start_dial(decision, server, transport, [])

    def _start_dial(self, decision: Decision, server: Server, transport: ServersTransport,
                    tried: list[Server]) -> None:
        """Dial `server` (`tried`: the servers that failed before it)."""
        # Held on the connection (which the entry point holds): the loop keeps
        # only weak references to tasks.
        self._dial_task = asyncio.get_running_loop().create_task(
            self._dial(decision, server, transport, tried))

    async def _dial(self, decision: Decision, server: Server, transport: ServersTransport,
                    tried: list[Server]) -> None:
        relay, route = self._relay, decision.route
        assert relay is not None
        assert route is not None
        # ALPN and SSL TLVs wait for the client's handshake, which starts once dialled.
        header = b""
        if transport.proxy_protocol_version and not needs_handshake(
                transport, route.tls_context is not None):
            header = proxy_header(transport, (self.record.client_ip, self.record.client_port),
                                  self._local, sni=self.record.sni)
        # A STARTTLS passed through: the backend must answer its own SSLRequest.
        postgres = self.record.postgres and route.tls_context is None
        # SMTP: the backend is brought to where the client is (its STARTTLS too when passed).
        smtp = None
        if self.record.smtp and self._preamble is not None:
            smtp = SMTPReplay(self._preamble.smtp_helo, starttls=route.tls_context is None)
        while True:
            try:
                factory = functools.partial(BackendProtocol, relay, server.tls)
                backend = await dial(server, transport, factory, header=header,
                                     postgres=postgres, smtp=smtp)
                break
            except DialError as exc:
                retry = self._retry_or_fail(route, server, str(exc), tried)
                if retry is None:
                    return
                server, transport = retry
            except BackendRefused as exc:
                self._dial_task = None
                self.close(CloseReason.BACKEND_CLOSED, str(exc), Side.BACKEND)
                return
        self._dial_task = None
        if self.record.reason is not None:  # the client left meanwhile
            backend.close()
            return
        self._relayed_on(server)
        self._dialled_transport = transport
        self._relaying(decision)

    def _retry_or_fail(self, route: Route, server: Server, error: str,
                       tried: list[Server]) -> tuple[Server, ServersTransport] | None:
        """`server` could not be reached: the server to dial next, or None once the
        connection is closed for it (either engine's dialler)."""
        retry = self._next_server(route, server, error, tried)
        if retry is None:
            self._dial_task = None  # (a task closing its own connection must not cancel itself)
            self.close(CloseReason.DIAL_FAILED, f"dial {server.address}: {error}",
                       Side.SWITCHYARD)
            return None
        assert self._relay is not None
        self._relay.forbid_splice_unless(plain=not retry[0].tls)
        return retry

    # -- stage 4: relay --------------------------------------------------------------

    def _relaying(self, decision: Decision) -> None:
        relay = self._relay
        assert relay is not None and decision.route is not None
        if decision.route.idle_timeout > 0:
            self._watch_idle(decision.route.idle_timeout)
        if decision.refuse_handshake:
            self.close(CloseReason.TLS_ERROR, decision.handshake_refusal, Side.SWITCHYARD)
            return
        pending, self._pending = self._pending, b""
        tls = self._tls
        if tls is None:
            self._on_data = relay.from_client
            self._on_eof = self._client_finished
            relay.start(pending, client_ready=True)
            return
        # Termination: the handshake starts only now, after middlewares and the
        # dial (Traefik's order); the peeked hello goes in first.
        self._on_data = tls.receive
        self._on_eof = self._eof_during_handshake
        relay.start(b"", client_ready=False)
        tls.start(pending, self._table.read_timeout,
                  "timed out waiting for the client's TLS handshake")

    def _from_client(self, plaintext: bytes) -> None:
        assert self._relay is not None
        self._relay.from_client(plaintext)

    def _handshake_done(self) -> None:
        tls, relay = self._tls, self._relay
        assert tls is not None and relay is not None
        self.record.tls_version, self.record.alpn_negotiated = tls.version, tls.alpn
        transport = self._dialled_transport
        if transport is not None and needs_handshake(transport, True):
            relay.send_to_backend(proxy_header(
                transport, (self.record.client_ip, self.record.client_port), self._local,
                sni=self.record.sni,
                tls=TerminatedTLS(tls.version, tls.alpn, bool(tls.peer_certificates))))
        self._on_eof = self._client_finished
        relay.client_ready()

    def _hold(self, data: bytes) -> None:
        self._pending += data  # arrived before reading paused; goes out with the rest

    # -- EOF from the client, by stage -----------------------------------------------

    def _eof_before_routing(self) -> bool:
        self.close(CloseReason.CLIENT_CLOSED, "client closed before it could be routed",
                   Side.CLIENT)
        return False

    def _eof_while_dialing(self) -> bool:
        assert self._relay is not None
        self._relay.client_eof()  # passed on once the relay starts
        return True

    def _eof_during_handshake(self) -> bool:
        self.close(CloseReason.TLS_ERROR, "client closed during the TLS handshake", Side.CLIENT)
        return False

    def _client_sent_close_notify(self) -> None:
        assert self._relay is not None
        self._relay.client_eof()

    def _client_finished(self) -> bool:
        assert self._relay is not None
        self._relay.client_eof()
        return True

    # -- the end ---------------------------------------------------------------------

    def _local(self) -> tuple[str, int]:
        """The address the client connected to (PROXY-adjusted), looked up only when needed."""
        preamble = self._preamble
        if preamble is not None and preamble.local is not None:
            return preamble.local  # announced by a trusted PROXY header
        sockname = self.transport.get_extra_info("sockname") if self.transport else None
        local = peer_address(sockname)
        if preamble is not None:
            preamble.local = local
        return local

    def _release(self) -> None:
        if self._tls is not None:
            self._tls.cancel()
        if self._dial_task is not None:
            self._dial_task.cancel()
        relay = self._relay
        if relay is not None:
            relay.shutdown()
            if relay.spliced:
                self._finish()
                return
        if self.transport is not None:
            self.transport.close()

    def _dropped(self) -> None:
        # Stages refer back to the connection: dropping them lets reference counting free
        # everything now instead of leaving cycles to the garbage collector.
        self._relay = self._tls = self._delegate = None
        self._on_data = self._on_eof = _closed  # type: ignore[assignment]


def _ignore(data: bytes) -> None:
    pass


def _closed(*args: object) -> bool:
    return False


def _nothing() -> None:
    pass
