"""One client connection, strung through its stages: preamble, decision, dial, relay.

Each stage lives in its own module; this class only passes the socket's
events to the stage that is current (`_on_data` / `_on_eof` are the bound
handlers of that stage) and ends the connection in one place, `close`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast

from switchyard.addresses import peer_address
from switchyard.http.h2server import PREFACE, H2ServerConnection
from switchyard.http.handler import ConnectionInfo
from switchyard.http.server import HTTPServerConnection
from switchyard.observability.record import CloseReason, ConnectionRecord, Phase, Side
from switchyard.observability.stats import STATS
from switchyard.proxy import preamble as pre
from switchyard.proxy.decision import (
    Action,
    ChallengeResponder,
    Decision,
    decide,
    decide_at_accept,
    decide_silent,
)
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
from switchyard.proxy.relay import BackendProtocol, ClientSide, Relay
from switchyard.proxy.smtp import ClientDialogue
from switchyard.proxy.tlslayer import TLSLayer
from switchyard.services import Server, ServersTransport

if TYPE_CHECKING:
    from switchyard.observability.accesslog import AccessLog
    from switchyard.routing.table import RoutingTable

log = logging.getLogger("switchyard.proxy")

ACME_HANDSHAKE_TIMEOUT = 2.0  # Traefik's deadline for answering a TLS-ALPN-01 validation


class ConnectionHost(Protocol):
    """What a connection needs from its entry point."""

    @property
    def name(self) -> str: ...
    @property
    def table(self) -> RoutingTable: ...
    @property
    def access_log(self) -> AccessLog | None: ...
    @property
    def acme_resolvers(self) -> Sequence[ChallengeResponder]: ...

    def proxy_trust(self, client_ip: str) -> bool | None: ...
    def opened(self, conn: ClientConnection) -> None: ...
    def closed(self, conn: ClientConnection) -> None: ...


class ClientConnection(asyncio.Protocol):
    """The client side of a proxied connection; owns the connection's life."""

    # Thousands live at once: slots keep each one small.
    __slots__ = ("_deadline", "_delegate", "_dial_task", "_dialled_transport", "_drain",
                 "_finished", "_host", "_idle", "_life",
                 "_on_close", "_on_data", "_on_eof", "_peek_timer", "_pending", "_preamble",
                 "_relay", "_server", "_table", "_tls", "record", "transport")

    def __init__(self, host: ConnectionHost) -> None:
        self._host = host
        self._table = host.table  # the table current at accept time serves the whole connection
        self.record = ConnectionRecord(host.name)
        self.transport: asyncio.Transport | None = None
        self._preamble: pre.Preamble | None = None
        self._on_data: Callable[[bytes], None] = self._read_preamble
        self._on_eof: Callable[[], bool] = self._eof_before_routing
        self._deadline: asyncio.TimerHandle | None = None
        self._peek_timer: asyncio.TimerHandle | None = None  # the entry point's peekTimeout
        self._pending = b""  # read before routing; whoever takes the connection gets it first
        self._relay: Relay | None = None
        self._tls: TLSLayer | None = None
        self._dial_task: asyncio.Task[None] | None = None
        self._on_close: list[Callable[[], None]] = []
        self._finished = False
        self._delegate: asyncio.Protocol | None = None  # who serves it after a handover (HTTP)
        self._server: Server | None = None  # the server it is open on, once picked
        self._idle: asyncio.TimerHandle | None = None  # the router's idleTimeout check
        self._life: asyncio.TimerHandle | None = None  # the router's maxDuration
        self._drain: asyncio.TimerHandle | None = None  # onChange: drain
        self._dialled_transport: ServersTransport | None = None  # of the server it reached

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is not a subclass (no typing.cast: it is a call per connection).
        self.transport = transport  # type: ignore[assignment]
        record = self.record
        record.client_ip, record.client_port = peer_address(transport.get_extra_info("peername"))
        self._host.opened(self)
        trusted = self._host.proxy_trust(record.client_ip)
        if trusted is None and self._route_at_accept():
            return  # routed before reading: no preamble to read
        hostname = self._table.smtp_hostname
        self._preamble = pre.Preamble((record.client_ip, record.client_port), trusted,
                                      None if hostname is None else ClientDialogue(hostname))
        if trusted is not None:
            record.phase = Phase.PROXY_HEADER
        self._arm_deadline()
        if trusted is None:
            self._arm_peek_timeout()
            if hostname is not None:
                self._handle(self._preamble.feed(b""))  # the SMTP greeting

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

    # -- what middlewares see (Admissible) -----------------------------------------

    @property
    def client_ip(self) -> str:
        return self.record.client_ip

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    # -- stage 1: the preamble -----------------------------------------------------

    def _arm_deadline(self) -> None:
        timeout = self._table.read_timeout
        if timeout > 0:
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._peek_timer is not None:
            self._peek_timer.cancel()
            self._peek_timer = None

    def _arm_peek_timeout(self) -> None:
        timeout = self._table.peek_timeout
        if timeout > 0 and self._table.plain:
            self._peek_timer = asyncio.get_running_loop().call_later(timeout, self._peek_expired)

    def _peek_expired(self) -> None:
        """Silent so far: a server-first protocol (MySQL, SMTP) waits for the backend to speak."""
        self._peek_timer = None
        preamble = self._preamble
        if preamble is None or not preamble.silent or self.record.reason is not None:
            return
        decision = decide_silent(self._table, self.record.client_ip)
        if decision is None:
            return  # no non-TLS router takes it: readTimeout still applies
        self._cancel_deadline()
        self._dispatch(decision)

    def _expired(self) -> None:
        self._deadline = None
        assert self._preamble is not None
        self._handle(self._preamble.expire(), after_deadline=True)

    def _read_preamble(self, data: bytes) -> None:
        if self._preamble is None:
            return  # refused at accept: the transport is closing
        self._handle(self._preamble.feed(data))

    def _handle(self, event: pre.Event, after_deadline: bool = False) -> None:
        preamble = self._preamble
        assert preamble is not None and self.transport is not None
        while True:
            if event is pre.NEED_MORE:
                return
            if isinstance(event, pre.Reply):
                self.transport.write(event.data)
            elif isinstance(event, pre.Addressed):
                self.record.client_ip, self.record.client_port = preamble.client
                self.record.phase = Phase.PEEKING
                if self._route_at_accept():
                    return
                if not after_deadline:
                    self._arm_peek_timeout()
                if after_deadline:
                    # No header in time counts as no header, but no second deadline.
                    event = pre.Refused(CloseReason.PEEK_TIMEOUT,
                                        "timed out waiting for the client's first bytes")
                    continue
            elif isinstance(event, pre.Refused):
                self.close(event.reason, event.detail, Side.SWITCHYARD)
                return
            else:
                assert isinstance(event, pre.Peeked)
                self._peeked(event)
                return
            event = preamble.feed(b"")

    def _route_at_accept(self) -> bool:
        """Server-first protocols (SMTP, MySQL, SSH banners) need the backend before any byte."""
        decision = decide_at_accept(self._table, self.record.client_ip)
        if decision is None:
            return False
        self._cancel_deadline()
        if self._preamble is not None:
            self._pending = self._preamble.buffered  # what followed a PROXY header, if anything
        self._dispatch(decision)
        return True

    def _peeked(self, peeked: pre.Peeked) -> None:
        self._cancel_deadline()
        record = self.record
        record.postgres, record.smtp = peeked.postgres, peeked.smtp
        if peeked.hello is not None:
            record.is_tls = True
            record.sni, record.alpn = peeked.hello.sni, peeked.hello.alpn
            record.tls_versions = peeked.hello.versions
        self._pending = peeked.data
        # After a STARTTLS (Postgres or SMTP) only TCP TLS routers may take the hello.
        self._dispatch(decide(self._table, peeked.meta, postgres=peeked.postgres or peeked.smtp,
                              challenges=self._host.acme_resolvers))

    # -- stage 2: the decision, carried out -----------------------------------------

    def _dispatch(self, decision: Decision) -> None:
        record = self.record
        route = decision.route
        if route is not None:
            record.router, record.service = route.name, route.service_name
        if decision.action is Action.ACME:
            self._answer_acme(decision)
            return
        if decision.action is Action.HTTP:
            self._serve_http(decision)
            return
        if decision.action is Action.REFUSE:
            assert decision.reason is not None
            if decision.reason is CloseReason.REJECTED and route is not None:
                STATS.rejected(record.entrypoint, route.name, decision.verdicts[-1][0].name)
            self.close(decision.reason, decision.detail, Side.SWITCHYARD)
            return
        assert route is not None and decision.server is not None
        if route.async_limits:
            self._ask_async_limits(decision)
            return
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

    def _forward(self, decision: Decision) -> None:
        """Let the middlewares count it, open it on its server, dial."""
        route, record = decision.route, self.record
        assert route is not None and decision.server is not None
        if route.max_duration > 0:
            self._life = asyncio.get_running_loop().call_later(
                route.max_duration, self.close, CloseReason.MAX_DURATION,
                f'open longer than router "{route.name}" allows ({route.max_duration:g}s)',
                Side.SWITCHYARD)
        for middleware, _ in decision.verdicts:
            middleware.enter(self)
        record.phase = Phase.DIALING
        self._assign(decision.server)
        STATS.routed(route.name, route.service_name, record.server)
        self._connect(decision)

    def _assign(self, server: Server) -> None:
        """The connection counts as open on `server` until it ends (p2c, leastConn read it)."""
        self.record.server = server.address
        server.open += 1
        self._server = server

    def _answer_acme(self, decision: Decision) -> None:
        """TLS-ALPN-01: one handshake with the challenge certificate, then close."""
        assert decision.acme_context is not None and self.transport is not None
        self.record.phase = Phase.ACME_CHALLENGE
        tls = self._tls = TLSLayer(
            self.transport, decision.acme_context, on_plaintext=_ignore,
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
            self.transport, https.tls_context, on_plaintext=self._plaintext_to_delegate,
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
                self.transport, route.tls_context, on_plaintext=self._from_client,
                on_ready=self._handshake_done, on_peer_closed=self._client_sent_close_notify,
                on_error=lambda detail: self.close(CloseReason.TLS_ERROR, detail,
                                                   Side.SWITCHYARD))
        plaintext = (route.tls_context is None and not self.record.postgres
                     and not self.record.smtp and not server.tls)
        self._relay = Relay(self.record, client, self.close,
                            termination_delay=transport.termination_delay, plaintext=plaintext)
        # Held on the connection (which the entry point holds): the loop keeps
        # only weak references to tasks.
        self._dial_task = asyncio.get_running_loop().create_task(self._dial(decision))

    async def _dial(self, decision: Decision) -> None:
        relay, server, transport = self._relay, decision.server, decision.transport
        assert relay is not None and server is not None and transport is not None
        route = decision.route
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
        tried: list[Server] = []
        while True:
            try:
                factory = functools.partial(BackendProtocol, relay, server.tls)
                backend = await dial(server, transport, factory, header=header,
                                     postgres=postgres, smtp=smtp)
                break
            except DialError as exc:
                server.outcome(failed=True)
                log.warning('router "%s": cannot reach server %s: %s', route.name,
                            server.address, exc)
                tried.append(server)
                # Nothing was sent to it: another server can take the connection as well.
                retry = (route.service.pick(self.record.client_ip, tried)
                         if len(tried) < server.attempts else None)
                if retry is None:
                    self._dial_task = None
                    self.close(CloseReason.DIAL_FAILED, f"dial {server.address}: {exc}",
                               Side.SWITCHYARD)
                    return
                server, transport = retry
                self._moved(route.service_name, tried[-1], server)
                relay.forbid_splice_unless(plain=not server.tls)
            except BackendRefused as exc:
                self._dial_task = None
                self.close(CloseReason.BACKEND_CLOSED, str(exc), Side.BACKEND)
                return
        self._dial_task = None
        if self.record.reason is not None:  # the client left meanwhile
            backend.close()
            return
        if server.failures is not None:  # passive health counts how relayed ones end
            self.on_close(lambda: server.outcome(failed=_backend_failed(self.record)))
        self._dialled_transport = transport
        self._relaying(decision)

    def _moved(self, service: str, old: Server, new: Server) -> None:
        """A retry: the connection now belongs to `new` in the counters and the record."""
        STATS.moved(service, old.address, new.address)
        old.open -= 1
        self._assign(new)

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

    def _watch_idle(self, timeout: float) -> None:
        """One timer per quiet stretch, not per read: it looks at the last traffic when due."""
        wait = self.record.last_activity + timeout - time.monotonic()  # the record's clock
        if wait <= 0 and self.record.phase is Phase.RELAYING:
            self._idle = None
            self.close(CloseReason.IDLE_TIMEOUT, f"no traffic either way for {timeout:g}s",
                       Side.SWITCHYARD)
            return
        self._idle = asyncio.get_running_loop().call_later(max(wait, 0.001), self._watch_idle,
                                                           timeout)

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

    def drain(self, timeout: float, detail: str) -> None:
        """A reload changed its route (onChange): close within `timeout` (0: now)."""
        if timeout <= 0:
            self.close(CloseReason.CONFIG_CHANGED, detail, Side.SWITCHYARD)
        elif self._drain is None and self.record.reason is None:
            self._drain = asyncio.get_running_loop().call_later(
                timeout, self.close, CloseReason.CONFIG_CHANGED,
                f"{detail}; not finished within drainTimeout {timeout:g}s", Side.SWITCHYARD)

    def close(self, reason: CloseReason, detail: str = "", by: Side = Side.SWITCHYARD) -> None:
        """End the connection on both sides; pending writes are flushed first."""
        record = self.record
        if record.reason is not None:
            return
        record.finish(reason, detail, by)
        if detail and reason not in (CloseReason.NORMAL, CloseReason.CLIENT_CLOSED):
            log.debug("%s:%d %s: %s", record.client_ip, record.client_port, reason.value, detail)
        if self._deadline is not None or self._peek_timer is not None:
            self._cancel_deadline()
        for timer in (self._idle, self._life, self._drain):
            if timer is not None:
                timer.cancel()
        self._idle = self._life = self._drain = None
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

    def _finish(self) -> None:
        """The client socket is gone: release middleware slots, count, log."""
        if self._finished:
            return
        self._finished = True
        host = self._host
        host.closed(self)
        if self._server is not None:
            self._server.open -= 1
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
        # Stages refer back to the connection: dropping them lets reference counting free
        # everything now instead of leaving cycles to the garbage collector.
        self._relay = self._tls = self._delegate = self._server = None
        self._on_data = self._on_eof = _closed  # type: ignore[assignment]
        STATS.finished(self.record)
        if host.access_log is not None and not self.record.http:  # requests log themselves
            host.access_log.record(self.record)


def _backend_failed(record: ConnectionRecord) -> bool:
    """A relayed connection counts against its server when the backend reset or cut it."""
    return record.reason is CloseReason.BACKEND_CLOSED and bool(record.detail)


def _ignore(data: bytes) -> None:
    pass


def _closed(*args: object) -> bool:
    return False


def _nothing() -> None:
    pass
