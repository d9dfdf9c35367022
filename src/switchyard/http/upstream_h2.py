"""HTTP/2 connections to backends: many requests at once on one connection, a stream each.

Used for ``h2c://`` servers (HTTP/2 with prior knowledge, no TLS) and for ``https://`` servers
that choose ``h2`` when offered ``h2, http/1.1`` by ALPN (unless the servers transport says
``disableHTTP2``); a server that chooses HTTP/1.1 gets its connection handed to an ordinary
UpstreamConnection, and the pool remembers to dial HTTP/1.1 from then on. As in Go's
transport, a connection takes up to 100 streams until the server's SETTINGS name its own
limit (then the limit the server named last), and a new connection is dialed when every open
one is full.

Flow control runs both ways per stream: request body bytes beyond the server's window are held
and the client paused above a high-water mark; response bytes are acknowledged to the server
(WINDOW_UPDATE) only while the client keeps up, so a slow client holds back only its own
stream. Trailers of a response become ``exchange.response_trailers``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from switchyard.http.deadline import Deadline
from switchyard.http.message import Headers, ResponseHead, canonical_name
from switchyard.http.rewrite import response_headers_for_client
from switchyard.http.upstream import (
    Failure,
    RequestOwner,
    UpstreamConnection,
    UpstreamPool,
    UpstreamSettings,
    connect,
    dial_within,
)
from switchyard.tls.backend import build_backend_context

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
from switchyard.http.h2flow import send_within_window

__all__ = ["H2Pool", "H2UpstreamConnection"]

log = logging.getLogger("switchyard.http")

#: Streams a new connection takes before the server's SETTINGS say how many it allows.
INITIAL_STREAMS = 100
#: The receive window of each stream, and of the whole connection (Go's transport: 4 MiB, 1 GiB).
STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 1 << 30
# Request body bytes held per stream beyond the server's window before the client is paused.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
_ALPN = ("h2", "http/1.1")

Dialed = Callable[["H2UpstreamConnection | UpstreamConnection | None", "Failure | None"], None]


class H2Pool:
    """The HTTP/2 connections to one server under one servers transport.

    ``speaks_h2`` is None while an ``https://`` server has not yet answered ALPN, False once it
    chose HTTP/1.1 (the requests then go to ``fallback``, the HTTP/1.1 pool).
    """

    __slots__ = ("_closed", "_conns", "_context", "_loop", "_waiting", "dialed", "fallback",
                 "host", "port", "settings", "speaks_h2", "stream_limit", "tls")

    def __init__(self, host: str, port: int, settings: UpstreamSettings, *, tls: bool,
                 fallback: UpstreamPool) -> None:
        self.host = host
        self.port = port
        self.settings = settings
        self.tls = tls
        self.fallback = fallback
        self.speaks_h2: bool | None = None if tls else True
        # The server's last SETTINGS_MAX_CONCURRENT_STREAMS: what a new connection takes before
        # its own SETTINGS arrive.
        self.stream_limit = INITIAL_STREAMS
        self._conns: list[H2UpstreamConnection] = []
        self._waiting: list[Dialed] | None = None  # requests waiting for the dial in flight
        self._context: tuple[ssl.SSLContext, str | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.dialed = 0  # connections opened so far, for tests and stats

    @property
    def connections(self) -> int:
        return len(self._conns)

    def acquire(self) -> H2UpstreamConnection | None:
        """An open connection with room for one more stream, or None."""
        for conn in self._conns:
            if conn.capacity > 0:
                return conn
        return None

    def dial(self, done: Dialed) -> None:
        """Open a new connection (or wait for the one being opened); ``done(conn, None)`` or
        ``done(None, failure)`` follows. ``conn`` is an UpstreamConnection when the server
        chose HTTP/1.1."""
        waiting = self._waiting
        if waiting is not None and len(waiting) < self.stream_limit:
            waiting.append(done)
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self.dialed += 1
        conn = H2UpstreamConnection(self, loop)
        waiters = [done]
        if self.speaks_h2:
            self._waiting = waiters  # the same connection will take them all

        def finished(failure: Failure | None) -> None:
            if self._waiting is waiters:
                self._waiting = None
            if failure is not None:
                if conn.replacement is not None:
                    conn.replacement.close()  # e.g. its certificate was refused
                for waiter in waiters:
                    waiter(None, failure)
                return
            if conn.replacement is None:
                if self.speaks_h2 is None:
                    self.speaks_h2 = True
                if self._closed:
                    conn.close()
                else:
                    self._conns.append(conn)
            if conn.replacement is not None:
                # HTTP/1.1 after all: one request per connection, the others dial their own.
                waiters[0](conn.replacement, None)
                for waiter in waiters[1:]:
                    self.dial(waiter)
                return
            for waiter in waiters:
                waiter(conn, None)

        dial_within(loop, self._connect(conn), self.settings.dial_timeout, finished)

    async def _connect(self, conn: H2UpstreamConnection) -> None:
        loop = self._loop
        assert loop is not None
        if self.tls and self._context is None:
            self._context = build_backend_context(self.settings.tls, self.host, _ALPN)
        await connect(loop, conn, self.host, self.port, self.settings,
                      self._context if self.tls else None)

    def spoke_http1(self, transport: asyncio.BaseTransport) -> UpstreamConnection:
        """The server chose HTTP/1.1: ``transport`` becomes a connection of the fallback pool."""
        self.speaks_h2 = False
        loop = self._loop
        assert loop is not None
        conn = UpstreamConnection(self.fallback, loop)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        return conn

    def forget(self, conn: H2UpstreamConnection) -> None:
        try:
            self._conns.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        """Close idle connections, and the others once their streams are done (a reload)."""
        self._closed = True
        for conn in list(self._conns):
            conn.retire()


class H2UpstreamConnection(asyncio.Protocol):
    """One HTTP/2 connection to a server, carrying a stream per request."""

    def __init__(self, pool: H2Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.loop = loop
        self.settings = pool.settings
        # Outbound fields come from backend_request_fields (lower-case names, no connection
        # fields, values as the client's parser left them): checking them again per request
        # costs a third of a request's CPU. What the server sends is still checked.
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._idle = Deadline(loop, self._idle_expired)
        # Health pings (readIdleTimeout/pingTimeout): one deadline, moved on by every read.
        self._quiet = Deadline(loop, self._quiet_expired)
        self._ping_sent = False
        self._closed = False
        self._retired = False  # no new streams (GOAWAY received, or the pool is gone)
        self._settings_seen = False
        self._corked = 0
        self._touched: list[_Stream] = []  # streams whose client is corked for this read
        self.writing_paused = False
        self.replacement: UpstreamConnection | None = None

    @property
    def usable(self) -> bool:
        """Whether it may take new streams (open, and the server has not said GOAWAY)."""
        transport = self._transport
        return not (self._closed or self._retired or transport is None or transport.is_closing())

    @property
    def capacity(self) -> int:
        """How many more streams this connection takes now."""
        if not self.usable:
            return 0
        limit = self._h2.remote_settings.max_concurrent_streams
        if not self._settings_seen:
            limit = min(limit, self._pool.stream_limit)
        return limit - len(self._streams)  # h2's own count walks every stream

    # -- requests -------------------------------------------------------------------------------

    def send(self, exchange: Exchange, owner: RequestOwner,
             fields: list[tuple[bytes, bytes]]) -> None:
        """Open a stream with the request head ``fields`` and stream the body behind it."""
        h2conn = self._h2
        stream = _Stream(self, h2conn.get_next_available_stream_id(), exchange, owner)
        self._streams[stream.id] = stream
        self._idle.clear()
        self._corked += 1
        try:
            try:
                h2conn.send_headers(stream.id, fields, end_stream=not exchange.has_body)
            except h2.exceptions.ProtocolError as exc:  # e.g. a field HTTP/2 cannot carry
                del self._streams[stream.id]
                owner.upstream_failed(exchange, Failure(
                    502, f"request not sent: {exc}",
                    retriable=isinstance(exc, h2.exceptions.TooManyStreamsError)))
                return
            exchange.set_producer(stream)
            if exchange.has_body:
                exchange.send_continue()  # Go's server answers 100 once the body is read
                exchange.read_body(stream)
            else:
                stream.sent()
        finally:
            self.uncork()

    def retire(self) -> None:
        """Take no new streams; close once the open ones are done."""
        self._retired = True
        self._pool.forget(self)
        if not self._streams:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._idle.cancel()
        self._quiet.cancel()
        self._pool.forget(self)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            try:
                self._h2.close_connection()
                transport.write(self._h2.data_to_send())
            except h2.exceptions.ProtocolError:
                pass
            transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._pool.tls:
            tls_object = transport.get_extra_info("ssl_object")
            if tls_object is None or tls_object.selected_alpn_protocol() != "h2":
                self.replacement = self._pool.spoke_http1(transport)
                self._closed = True
                return
        self._transport = cast(asyncio.Transport, transport)
        h2conn = self._h2
        h2conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        })
        h2conn.initiate_connection()
        h2conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()
        self._idle_if_unused()
        if self.settings.read_idle_timeout > 0:
            self._quiet.set(self.settings.read_idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self.settings.read_idle_timeout > 0:
            self._ping_sent = False
            self._quiet.set(self.settings.read_idle_timeout)
        self._corked += 1
        try:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                log.debug("HTTP/2 protocol error from %s:%d: %s", self._pool.host,
                          self._pool.port, exc)
                self._lost(f"HTTP/2 protocol error from the backend: {exc}")
                return
            for event in events:
                self._event(event)
        finally:
            # The clients' writes of this read go out together: a head and the end of its
            # stream in one read become one HEADERS frame for an HTTP/2 client (see h2server).
            touched, self._touched = self._touched, []
            for stream in touched:
                stream.corked = False
                stream.exchange.uncork()
            self.uncork()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.replacement is not None:
            return
        self._lost("backend closed the connection" if exc is None else str(exc))

    def pause_writing(self) -> None:
        self.writing_paused = True
        for stream in self._streams.values():
            stream.gate_body()

    def resume_writing(self) -> None:
        self.writing_paused = False
        for stream in list(self._streams.values()):
            stream.gate_body()

    # -- frames in --------------------------------------------------------------------------

    def _stream(self, stream_id: int) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.corked:
            stream.corked = True
            stream.exchange.cork()
            self._touched.append(stream)
        return stream

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self._stream(event.stream_id)
            if stream is None:
                self._give_back(event.stream_id, event.flow_controlled_length)
            else:
                stream.data(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.response(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.trailers = Headers((canonical_name(name), value)
                                          for name, value in event.headers
                                          if name[:1] != b":")
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.complete()
        elif isinstance(event, h2.events.StreamReset):
            stream = self._stream(event.stream_id)
            if stream is not None:
                # Traefik answers a stream error 500 (it is no network error to Go).
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                stream.broken(Failure(500, f"backend reset the stream ({event.error_code!s})",
                                      retriable=refused))
        elif isinstance(event, h2.events.InformationalResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None and dict(event.headers).get(b":status") == b"100":
                stream.exchange.send_continue()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                found = self._streams.get(event.stream_id)
                if found is not None:
                    found.send_pending()
            else:
                for stream in list(self._streams.values()):
                    stream.send_pending()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_seen = True
            self._pool.stream_limit = max(1, min(
                self._h2.remote_settings.max_concurrent_streams, 1 << 16))
            for stream in list(self._streams.values()):
                stream.send_pending()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event.last_stream_id, event.error_code)

    def _goaway(self, last_stream_id: int | None, error_code: Any) -> None:
        # Streams the server did not take may be sent again elsewhere; the others go on.
        self._retired = True
        self._pool.forget(self)
        last = last_stream_id if last_stream_id is not None else 0
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last:
                stream.broken(Failure(502, f"backend went away ({error_code!s})",
                                      retriable=True))
        if not self._streams:
            self.close()

    # -- frames out (what _Stream uses) -----------------------------------------------------

    def send_data(self, stream: _Stream) -> None:
        """Send what ``stream`` holds as far as the server's windows allow."""
        h2conn = self._h2
        pending = stream.pending
        try:
            stream.pending_size -= send_within_window(h2conn, stream.id, pending)
            if stream.body_ended and not pending and not stream.sent_all:
                stream.sent_all = True
                h2conn.end_stream(stream.id)
        except h2.exceptions.ProtocolError as exc:  # the server closed or reset the stream
            log.debug("HTTP/2 stream %d to the backend: %s", stream.id, exc)
            pending.clear()
            stream.pending_size = 0
            stream.sent_all = True
        self._flush_unless_corked()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self._closed:
            try:
                self._h2.acknowledge_received_data(size, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._give_back(0, size)
            self._flush_unless_corked()

    def forget(self, stream: _Stream, *, cancel: bool) -> None:
        """``stream`` is over for us; ``cancel``: tell the server (RST_STREAM CANCEL)."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
        if cancel:
            self._reset(stream.id, h2.errors.ErrorCodes.CANCEL)
        if not self._streams and not self._closed:
            if self._retired:
                self.close()
            else:
                self._idle_if_unused()

    def cork(self) -> None:
        self._corked += 1

    def uncork(self) -> None:
        self._corked -= 1
        if not self._corked:
            self._flush()

    # -- internals ------------------------------------------------------------------------------

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        if self._closed:
            return
        try:
            self._h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed both ways
        self._flush_unless_corked()

    def _give_back(self, stream_id: int, size: int) -> None:
        # Bytes of a stream we no longer track still count against the connection window.
        if size and not self._closed:
            self._h2.increment_flow_control_window(size)
            self._flush_unless_corked()

    def _idle_if_unused(self) -> None:
        settings = self._pool.settings
        if settings.max_idle_conns_per_host <= 0:
            self.retire()  # no reuse: a connection serves the requests it has, then closes
        else:
            self._idle.set(settings.idle_conn_timeout)

    def _idle_expired(self) -> None:
        if not self._streams:
            self.close()

    def _quiet_expired(self) -> None:
        """Nothing read for readIdleTimeout: ask for a PING answer, or give up on the server."""
        if self._closed:
            return
        if self._ping_sent:
            log.debug("HTTP/2 backend %s:%d did not answer a PING within %gs", self._pool.host,
                      self._pool.port, self.settings.ping_timeout)
            self._lost("the backend did not answer a PING in time")
            return
        self._ping_sent = True
        try:
            self._h2.ping(b"swtchyrd")
        except h2.exceptions.ProtocolError:
            return
        self._flush_unless_corked()
        self._quiet.set(self.settings.ping_timeout)

    def _flush_unless_corked(self) -> None:
        if not self._corked:
            self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _lost(self, reason: str) -> None:
        was_closed = self._closed
        self._closed = True
        self._idle.cancel()
        self._quiet.cancel()
        self._pool.forget(self)
        transport = self._transport
        if not was_closed and transport is not None and not transport.is_closing():
            transport.close()
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            # Go's HTTP/2 transport reports a lost connection as no network error: a 500.
            stream.broken(Failure(500, reason))


class _Stream:
    """One request on an HTTP/2 connection: the body consumer and the response producer."""

    __slots__ = ("body_ended", "body_paused", "conn", "corked", "deadline", "exchange", "id",
                 "owner",
                 "pending", "pending_size", "producer_paused", "sent_all", "started",
                 "trailers", "unacked")

    def __init__(self, conn: H2UpstreamConnection, stream_id: int, exchange: Exchange,
                 owner: RequestOwner) -> None:
        self.conn = conn
        self.id = stream_id
        self.exchange = exchange
        self.owner: RequestOwner | None = owner
        self.pending: deque[memoryview] = deque()
        self.pending_size = 0
        self.body_ended = False  # the client's body is complete (END_STREAM once it is sent)
        self.sent_all = not exchange.has_body
        self.body_paused = False
        self.producer_paused = False
        self.started = False
        self.corked = False  # its client connection is corked until the read is handled
        self.unacked = 0  # response bytes not yet given back to the server's window
        self.trailers: Headers | None = None
        self.deadline: Deadline | None = None

    # -- BodyConsumer (the client's request body) -----------------------------------------------

    def body_data(self, chunk: bytes) -> None:
        if self.owner is None or not chunk:
            return
        self.pending.append(memoryview(chunk))
        self.pending_size += len(chunk)
        self.conn.send_data(self)
        self.gate_body()

    def body_end(self) -> None:
        if self.owner is None:
            return
        self.body_ended = True
        self.conn.send_data(self)
        self.sent()

    def body_aborted(self) -> None:
        self._abandon()

    def send_pending(self) -> None:
        if self.pending or self.body_ended and not self.sent_all:
            self.conn.send_data(self)
            self.gate_body()

    def gate_body(self) -> None:
        """Pause the client's body while the server or its socket cannot take more."""
        limit = LOW_WATER if self.body_paused else HIGH_WATER
        hold = self.conn.writing_paused or self.pending_size > limit
        if hold != self.body_paused and self.owner is not None:
            self.body_paused = hold
            if hold:
                self.exchange.pause_body()
            else:
                self.exchange.resume_body()

    def sent(self) -> None:
        timeout = self.conn.settings.response_header_timeout
        if timeout > 0 and not self.started:
            self.deadline = Deadline(self.conn.loop, self._expired)
            self.deadline.set(timeout)

    # -- Producer (the response body towards the client) ----------------------------------------

    def pause_producing(self) -> None:
        self.producer_paused = True

    def resume_producing(self) -> None:
        if self.producer_paused:
            self.producer_paused = False
            unacked, self.unacked = self.unacked, 0
            self.conn.acknowledge(self.id, unacked)

    def stop_producing(self) -> None:
        self._abandon()

    # -- frames in, from the connection ---------------------------------------------------------

    def response(self, fields: list[tuple[bytes, bytes]]) -> None:
        status = 0
        named: list[tuple[bytes, bytes]] = []
        for name, value in fields:
            if name == b":status":
                status = int(value)
            elif name[:1] != b":":
                named.append((canonical_name(name), value))
        self.started = True
        if self.deadline is not None:
            self.deadline.cancel()
        headers, _ = response_headers_for_client(named, switching=False)
        self.exchange.writer.start(ResponseHead(status, headers))

    def data(self, chunk: bytes, size: int) -> None:
        self.exchange.writer.write(chunk)
        if self.producer_paused:
            self.unacked += size
        else:
            self.conn.acknowledge(self.id, size)

    def complete(self) -> None:
        exchange, owner = self.exchange, self.owner
        self.owner = None
        # A server may answer before it has read the whole body: the rest is not sent.
        self.conn.forget(self, cancel=not self.sent_all)
        if owner is None:
            return
        exchange.set_producer(None)
        owner.upstream_done()
        exchange.response_trailers = self.trailers
        exchange.writer.end()

    def broken(self, failure: Failure) -> None:
        exchange, owner = self.exchange, self.owner
        self.owner = None
        if self.deadline is not None:
            self.deadline.cancel()
        self.conn.forget(self, cancel=failure.status == 504)
        if owner is None:
            return
        exchange.set_producer(None)
        if self.started:
            owner.upstream_done()
            exchange.writer.abort()  # a response cut short must not look complete
        else:
            owner.upstream_failed(exchange, failure)

    def _abandon(self) -> None:
        """The client went away: cancel the stream; the connection goes on."""
        owner = self.owner
        self.owner = None
        if self.deadline is not None:
            self.deadline.cancel()
        self.conn.forget(self, cancel=True)
        if owner is not None:
            owner.upstream_done()

    def _expired(self) -> None:
        timeout = self.conn.settings.response_header_timeout
        self.broken(Failure(504, f"no response header within {timeout:g}s"))
