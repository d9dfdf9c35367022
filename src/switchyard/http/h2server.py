"""The client side of HTTP/2: TLS with ALPN ``h2``, and h2c (prior knowledge) on plain ports.

Made and attached by the TCP data plane like HTTPServerConnection (see switchyard.http.server),
when the TLS handshake negotiated ``h2`` or the first bytes of a plaintext connection are the
HTTP/2 connection preface. The frames are the ``h2`` library's (a sans-IO state machine); each
request stream becomes an :class:`H2Exchange`, the same Exchange the HTTP/1.1 side gives
handlers, so routers, middlewares and services do not know which protocol the client speaks.
Backends are spoken to in HTTP/1.1 for ``http://`` servers, as Traefik does, and in HTTP/2
for ``h2c://`` servers and ``https://`` ones that choose ``h2`` (switchyard.http.upstream_h2).
Response trailers (``exchange.response_trailers``) go out as a trailing HEADERS frame.

Flow control both ways: a response body is sent as the client's windows allow, the rest held
per stream and the producer (the backend connection) paused above a high-water mark; a request
body's bytes are acknowledged (WINDOW_UPDATE) only while its consumer keeps up, so a slow
backend holds back only its own stream. As in Go's server, Switchyard advertises 250
concurrent streams and 1 MiB windows, and closes an idle connection (no open stream) after the
entry point's ``idleTimeout`` with a GOAWAY.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from switchyard.http.deadline import Deadline
from switchyard.http.exchange import Exchange
from switchyard.http.forwarded import apply_forwarded_headers
from switchyard.http.h2flow import send_within_window
from switchyard.http.handler import ConnectionInfo, Handler
from switchyard.http.message import Headers, RequestHead, ResponseHead, date_value
from switchyard.http.responder import Responder, status_text_error
from switchyard.http.server import DEFAULT_SERVER_SETTINGS, ServerSettings, request_record
from switchyard.http.tunnel import Endpoint

__all__ = ["PREFACE", "H2Exchange", "H2ServerConnection"]

log = logging.getLogger("switchyard.http")

#: What an HTTP/2 client sends first (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

MAX_CONCURRENT_STREAMS = 250
WINDOW = 1 << 20
# Response bytes held per stream beyond the client's window before the backend is paused.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

# Fields that describe one HTTP/1.1 connection and mean nothing (are forbidden) in HTTP/2.
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"})
_NO_CONNECT = Responder(405)


class _Stream:
    """One request stream: what is still to send, and whether its body may be read on."""

    __slots__ = ("conn", "ending", "exchange", "head", "id", "pending", "pending_size",
                 "producer_paused", "reading_paused", "request_done", "sent_all", "trailers",
                 "unacked")

    def __init__(self, conn: H2ServerConnection, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.exchange: H2Exchange | None = None
        self.pending: deque[memoryview] = deque()
        self.pending_size = 0
        self.ending = False  # end_stream once pending is sent
        self.trailers: list[tuple[bytes, bytes]] = []  # a trailing HEADERS frame ends it instead
        self.head: list[tuple[bytes, bytes]] | None = None  # the response head, held (send_head)
        self.sent_all = False  # END_STREAM (or RST) sent
        self.request_done = False  # END_STREAM received
        self.reading_paused = 0  # reasons (flowcontrol constants) the body is held back
        self.unacked = 0  # received body bytes not yet given back to the client's window
        self.producer_paused = False

    # -- ClientConnection, for the Exchange ----------------------------------------------------

    @property
    def writing_paused(self) -> bool:
        return self.conn.writing_paused or self.pending_size > HIGH_WATER

    def transmit(self, data: bytes) -> None:  # pragma: no cover - H2Exchange never calls it
        raise RuntimeError("HTTP/2 streams take frames, not HTTP/1.1 bytes")

    def cork(self) -> None:
        self.conn.cork()

    def uncork(self) -> None:
        self.conn.uncork()

    def pause_reading(self, reason: int) -> None:
        self.reading_paused |= reason

    def resume_reading(self, reason: int) -> None:
        if self.reading_paused & reason:
            self.reading_paused &= ~reason
            if not self.reading_paused and self.unacked:
                self.conn.acknowledge(self, self.unacked)
                self.unacked = 0

    def response_done(self, exchange: Exchange) -> None:
        self.conn.stream_finished(self, exchange)

    def response_aborted(self, exchange: Exchange) -> None:
        self.conn.stream_finished(self, exchange)

    def switch_protocols(self, exchange: Exchange, backend: Endpoint,
                         backend_bytes: bytes) -> None:  # pragma: no cover - refused earlier
        backend.close()


class H2Exchange(Exchange):
    """An Exchange whose response goes out as HEADERS and DATA frames on its stream."""

    __slots__ = ("_stream",)

    def __init__(self, stream: _Stream, request: RequestHead, info: ConnectionInfo, *,
                 has_body: bool, body_chunked: bool, started_at: float) -> None:
        super().__init__(stream, request, info, has_body=has_body, keep_alive=True,
                         expect_continue=False, started_at=started_at, body_chunked=body_chunked)
        self._stream = stream

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100 Continue unless they said so; never needed."""

    def upgrade(self, backend: Endpoint, backend_bytes: bytes = b"") -> None:
        backend.close()
        self.abort()

    def start(self, head: ResponseHead) -> None:
        if self._started or self.finished:
            return
        self._started = True
        self.response_head = head
        status = self.status = head.status
        no_body = self._no_body = (status < 200 or status in (204, 304)
                                   or self.request.method == b"HEAD")
        fields = [(b":status", str(status).encode("ascii"))]
        date = False
        for name, value in head.headers:
            lower = name.lower()
            if lower in _CONNECTION_SPECIFIC:
                continue
            if lower == b"date":
                date = True
            fields.append((lower, value))
        if not date:
            fields.append((b"date", date_value()))
        self._stream.conn.send_head(self._stream, fields, end_stream=no_body)

    def write(self, chunk: bytes) -> None:
        if self.finished or self._no_body or not chunk:
            return
        if not self._started:
            raise RuntimeError("write() before start()")
        self.response_bytes += len(chunk)
        self._stream.conn.send_data(self._stream, chunk)

    def end(self) -> None:
        if self.finished:
            return
        if not self._started:
            raise RuntimeError("end() before start()")
        if not self._no_body:
            self._stream.conn.end_stream(self._stream, self.response_trailers)
        self._finish()
        self._conn.response_done(self)

    def abort(self) -> None:
        if self.finished:
            return
        if not self.closed_by:
            self.closed_by = "backend"
        self._stream.conn.reset(self._stream)
        self._finish()
        self._conn.response_aborted(self)


class H2ServerConnection(asyncio.Protocol):
    """Serves the streams of one HTTP/2 client connection through ``handler``."""

    def __init__(self, handler: Handler, info: ConnectionInfo,
                 settings: ServerSettings = DEFAULT_SERVER_SETTINGS) -> None:
        self._handler = handler
        self._info = info
        self._settings = settings
        forwarded = settings.forwarded
        self._trusted = forwarded.trusts(info.client_ip)
        self._hostname = forwarded.hostname.encode("latin-1")
        self._kept = forwarded.kept_connection_headers
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        self._loop = asyncio.get_running_loop()
        self._deadline = Deadline(self._loop, self._idle_expired)
        self._transport: asyncio.BaseTransport | None = None
        self._streams: dict[int, _Stream] = {}
        self._corked = 0
        self._held: list[_Stream] = []  # streams whose response head is held (send_head)
        self._closed = False
        self.writing_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        h2conn = self._h2
        h2conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self._settings.max_header_bytes,
        })
        h2conn.initiate_connection()
        h2conn.increment_flow_control_window(WINDOW - 65535)
        self._deadline.set(self._settings.read_timeout)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._corked += 1
        try:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                log.debug("HTTP/2 protocol error from %s: %s", self._info.client_ip, exc)
                self._close()
                return
            for event in events:
                self._event(event)
        finally:
            self.uncork()

    def eof_received(self) -> bool:
        self._client_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_gone()

    def pause_writing(self) -> None:
        self.writing_paused = True
        for stream in self._streams.values():
            self._pause_producer(stream)

    def resume_writing(self) -> None:
        self.writing_paused = False
        for stream in list(self._streams.values()):
            if stream.pending_size <= LOW_WATER:
                self._resume_producer(stream)

    # -- frames in --------------------------------------------------------------------------

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._body(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.request_done = True
                if stream.exchange is not None:
                    stream.exchange.body_received_all()
                self._forget_if_done(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.sent_all = True
                self._lose(stream)
        elif isinstance(event, h2.events.WindowUpdated) and event.stream_id:
            found = self._streams.get(event.stream_id)
            if found is not None:
                self._send_pending(found)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for stream in list(self._streams.values()):
                self._send_pending(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._client_gone()
            self._close()

    def _request(self, event: h2.events.RequestReceived) -> None:
        self._deadline.clear()
        stream = _Stream(self, event.stream_id)
        self._streams[event.stream_id] = stream
        method = path = authority = b""
        fields: list[tuple[bytes, bytes]] = []
        cookies: list[bytes] = []
        length = False
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"cookie":
                cookies.append(value)  # HTTP/2 may split them; HTTP/1.1 wants one field
                continue
            if name == b"content-length":
                length = True
            fields.append((name, value))
        if authority and not any(name == b"host" for name, _ in fields):
            fields.insert(0, (b"host", authority))
        if cookies:
            fields.append((b"cookie", b"; ".join(cookies)))
        info = self._info
        head = RequestHead(method, path or b"/", b"2.0", apply_forwarded_headers(
            fields, trusted=self._trusted, client_ip=info.client_ip, tls=info.tls,
            hostname=self._hostname, kept=self._kept))
        has_body = event.stream_ended is None
        exchange = H2Exchange(stream, head, info, has_body=has_body,
                              body_chunked=has_body and not length, started_at=self._clock())
        stream.exchange = exchange
        if not has_body:
            stream.request_done = True
        handler = _NO_CONNECT if method == b"CONNECT" else self._handler
        try:
            handler.handle(exchange)
        except Exception:
            log.exception("HTTP handler failed on %s %r", method, path)
            if not exchange.response_started:
                status_text_error(exchange, 500)
            else:
                exchange.abort()

    def _body(self, event: h2.events.DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        size = event.flow_controlled_length
        if stream is None or stream.exchange is None:
            self._acknowledge_connection(event.stream_id, size)
            return
        stream.exchange.body_received(event.data)
        if stream.reading_paused:
            stream.unacked += size
        else:
            self.acknowledge(stream, size)

    # -- frames out (what H2Exchange uses) ------------------------------------------------

    def send_headers(self, stream: _Stream, fields: list[tuple[bytes, bytes]], *,
                     end_stream: bool) -> None:
        if stream.sent_all or self._closed:
            return
        try:
            self._h2.send_headers(stream.id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            log.debug("HTTP/2 stream %d: headers not sent: %s", stream.id, exc)
            stream.sent_all = True
        if end_stream:
            stream.sent_all = True
        self._flush_unless_corked()

    def send_head(self, stream: _Stream, fields: list[tuple[bytes, bytes]], *,
                  end_stream: bool) -> None:
        """The response head: held while the connection is corked, until the body's first bytes,
        its end or the uncork, so that a response without a body goes out as one HEADERS frame
        with END_STREAM (what gRPC clients expect of a trailers-only answer), as Go sends it."""
        if self._corked and not end_stream:
            stream.head = fields
            self._held.append(stream)
        else:
            self.send_headers(stream, fields, end_stream=end_stream)

    def send_data(self, stream: _Stream, chunk: bytes) -> None:
        if stream.head is not None:
            self._head_out(stream, end_stream=False)
        if stream.sent_all or self._closed:
            return
        stream.pending.append(memoryview(chunk))
        stream.pending_size += len(chunk)
        self._send_pending(stream)
        if stream.pending_size > HIGH_WATER:
            self._pause_producer(stream)

    def end_stream(self, stream: _Stream, trailers: Headers | None = None) -> None:
        if stream.head is not None:
            # The whole response is known before its head went out, and it has no body: Go's
            # server then says so with a Content-Length of 0.
            if not any(name == b"content-length" for name, _ in stream.head):
                stream.head.append((b"content-length", b"0"))
            self._head_out(stream, end_stream=not trailers)
        stream.ending = True
        if trailers:
            # Sorted by name, as Go's server writes them.
            fields = [(name.lower(), value) for name, value in trailers
                      if name[:1] != b":" and name.lower() not in _CONNECTION_SPECIFIC]
            stream.trailers = sorted(fields, key=lambda pair: pair[0])
        self._send_pending(stream)

    def reset(self, stream: _Stream) -> None:
        stream.head = None
        if not stream.sent_all and not self._closed:
            stream.sent_all = True
            stream.pending.clear()
            stream.pending_size = 0
            try:
                self._h2.reset_stream(stream.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            self._flush_unless_corked()
        self._forget_if_done(stream)

    def acknowledge(self, stream: _Stream, size: int) -> None:
        if size and not self._closed:
            try:
                self._h2.acknowledge_received_data(size, stream.id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._acknowledge_connection(0, size)
            self._flush_unless_corked()

    def stream_finished(self, stream: _Stream, exchange: Exchange) -> None:
        self._record(exchange)
        self._forget_if_done(stream)

    def cork(self) -> None:
        self._corked += 1

    def uncork(self) -> None:
        if self._corked == 1 and self._held:
            held, self._held = self._held, []
            for stream in held:
                if stream.head is not None:
                    self._head_out(stream, end_stream=False)
        self._corked -= 1
        if not self._corked:
            self._flush()

    # -- internals ------------------------------------------------------------------------------

    def _head_out(self, stream: _Stream, *, end_stream: bool) -> None:
        fields, stream.head = stream.head, None
        if fields is not None:
            self.send_headers(stream, fields, end_stream=end_stream)

    def _send_pending(self, stream: _Stream) -> None:
        h2conn = self._h2
        pending = stream.pending
        try:
            if not stream.sent_all:
                stream.pending_size -= send_within_window(h2conn, stream.id, pending)
            if stream.ending and not pending and not stream.sent_all:
                if stream.trailers:
                    h2conn.send_headers(stream.id, stream.trailers, end_stream=True)
                else:
                    h2conn.end_stream(stream.id)
                stream.sent_all = True
        except h2.exceptions.ProtocolError as exc:  # the client reset or closed the stream
            log.debug("HTTP/2 stream %d: %s", stream.id, exc)
            stream.sent_all = True
            pending.clear()
            stream.pending_size = 0
        if stream.pending_size <= LOW_WATER and not self.writing_paused:
            self._resume_producer(stream)
        self._flush_unless_corked()
        self._forget_if_done(stream)

    def _pause_producer(self, stream: _Stream) -> None:
        exchange = stream.exchange
        if exchange is not None and not stream.producer_paused and exchange.producer is not None:
            stream.producer_paused = True
            exchange.producer.pause_producing()

    def _resume_producer(self, stream: _Stream) -> None:
        exchange = stream.exchange
        if stream.producer_paused:
            stream.producer_paused = False
            if exchange is not None and exchange.producer is not None:
                exchange.producer.resume_producing()

    def _acknowledge_connection(self, stream_id: int, size: int) -> None:
        # Bytes of a stream we no longer track still count against the connection window.
        if size:
            self._h2.increment_flow_control_window(size)
            self._flush_unless_corked()

    def _forget_if_done(self, stream: _Stream) -> None:
        exchange = stream.exchange
        if (stream.sent_all and (exchange is None or exchange.finished)
                and self._streams.get(stream.id) is stream):
            if not stream.request_done and not self._closed:
                # The response is complete; the client need not send the rest of its body.
                try:
                    self._h2.reset_stream(stream.id, h2.errors.ErrorCodes.NO_ERROR)
                except h2.exceptions.ProtocolError:
                    pass
                self._flush_unless_corked()
            del self._streams[stream.id]
            if not self._streams:
                self._deadline.set(self._settings.idle_timeout)

    def _flush_unless_corked(self) -> None:
        if not self._corked:
            self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)  # type: ignore[attr-defined]

    def _idle_expired(self) -> None:
        if self._streams:
            return
        self._h2.close_connection()
        self._flush()
        self._close()

    def _close(self) -> None:
        self._flush()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _client_gone(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline.cancel()
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            self._lose(stream)

    def _lose(self, stream: _Stream) -> None:
        exchange = stream.exchange
        if exchange is not None and not exchange.finished:
            exchange.client_lost()
            self._record(exchange)

    def _clock(self) -> float:
        return time.monotonic() if self._settings.observer is not None else 0.0

    def _record(self, exchange: Exchange) -> None:
        observer = self._settings.observer
        if observer is None:
            return
        observer(request_record(exchange))
