"""The client side of HTTP/1.1: a Protocol that takes over an accepted, already peeked connection.

The TCP data plane decides a connection is HTTP after reading some bytes, so the protocol is
made and attached by hand::

    conn = HTTPServerConnection(handler, info, settings)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    conn.data_received(peeked)

Any transport-like object works (write, close, abort, is_closing, pause_reading, resume_reading,
get_extra_info; set_protocol for upgrades). Requests are parsed with httptools and served one at
a time in order; pipelined requests wait in a queue while reading is paused. Deadlines follow
Go's server as Traefik configures it: ``readTimeout`` for a whole request from its first byte
(from the handover for the first one), ``idleTimeout`` between requests, ``writeTimeout`` from
the end of the request head to the end of the response (0 = none); an expired deadline closes
the connection without an answer, as Go does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import httptools

from switchyard.http.deadline import Deadline
from switchyard.http.exchange import Exchange
from switchyard.http.flowcontrol import PIPELINE, ReadGate
from switchyard.http.forwarded import ForwardedHeaders, apply_forwarded_headers
from switchyard.http.handler import ConnectionInfo, Handler, Observer, RequestRecord
from switchyard.http.message import RequestHead, ResponseHead, split_target
from switchyard.http.responder import Responder, status_text_error
from switchyard.http.tunnel import Endpoint, Tunnel

__all__ = ["DEFAULT_SERVER_SETTINGS", "HTTPServerConnection", "ServerSettings", "bad_request",
           "request_record"]

log = logging.getLogger("switchyard.http")

_ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


def bad_request(status: bytes = b"400 Bad Request", detail: bytes = b"") -> bytes:
    """The bytes Go's server writes before closing on a request it cannot read."""
    text = status + (b": " + detail if detail else b"")
    return b"HTTP/1.1 " + text + _ERROR_HEADERS + text


BAD_REQUEST = bad_request()
HEADERS_TOO_LARGE = bad_request(b"431 Request Header Fields Too Large")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """An entry point's HTTP settings (``transport.respondingTimeouts``, ``forwardedHeaders``)."""

    read_timeout: float = 60.0
    write_timeout: float = 0.0
    idle_timeout: float = 180.0
    forwarded: ForwardedHeaders = field(default_factory=ForwardedHeaders)
    # Go's DefaultMaxHeaderBytes plus the 4096 bytes of slack its reader allows.
    max_header_bytes: int = (1 << 20) + 4096
    observer: Observer | None = None


DEFAULT_SERVER_SETTINGS = ServerSettings()

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
# Lengths of the field names on_headers_complete looks at: Host, Content-Length,
# Transfer-Encoding, Expect.
_HEAD_LOOKS_AT = frozenset({4, 14, 17, 6})


class HTTPServerConnection(asyncio.Protocol):
    """Serves HTTP/1.1 requests on one client connection through ``handler``."""

    __slots__ = (
        "_active", "_close_when_flushed", "_corked", "_deadline", "_dispatching", "_eof", "_error",
        "_gate", "_handler", "_header_bytes", "_headers", "_hostname", "_in_message", "_info",
        "_kept", "_loop", "_lost", "_observer", "_out", "_parser", "_parsing", "_queue",
        "_settings", "_tls", "_transport", "_trusted", "_upgrade_bytes", "_upgraded", "_url",
        "_write_deadline", "_writing_paused",
    )

    def __init__(self, handler: Handler, info: ConnectionInfo,
                 settings: ServerSettings = DEFAULT_SERVER_SETTINGS) -> None:
        self._handler = handler
        self._info = info
        self._tls = info.tls
        self._settings = settings
        self._observer = settings.observer
        forwarded = settings.forwarded
        self._trusted = forwarded.trusts(info.client_ip)
        self._hostname = forwarded.hostname.encode("latin-1")
        self._kept = forwarded.kept_connection_headers
        self._parser = httptools.HttpRequestParser(self)
        self._loop = asyncio.get_running_loop()
        self._deadline = Deadline(self._loop, self._expired)
        self._write_deadline: Deadline | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._gate: ReadGate | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._in_message = False
        self._parsing: Exchange | None = None  # whose request bytes are being parsed
        self._active: Exchange | None = None  # whose response is being served
        self._queue: deque[tuple[Exchange, Handler]] = deque()
        self._dispatching = False
        self._corked = 0
        self._out: list[bytes] = []
        self._close_when_flushed = False
        self._writing_paused = False
        self._eof = False
        self._lost = False
        self._error: bytes | None = None  # what to answer once the responses before it are out
        self._upgrade_bytes: bytearray | None = None  # client bytes after an Upgrade request
        self._upgraded = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._gate = ReadGate(transport)  # type: ignore[arg-type]
        self._deadline.set(self._settings.read_timeout)
        if self._settings.write_timeout > 0:
            self._write_deadline = Deadline(self._loop, self._expired)

    def data_received(self, data: bytes) -> None:
        upgrade = self._upgrade_bytes
        if upgrade is not None:
            upgrade += data  # held for the backend until it agrees to switch (reading is paused)
            return
        if self._error is not None or self._close_when_flushed:
            return
        self._corked += 1
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_requested(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._fail(cause.response)
            elif isinstance(cause, _TooLarge):
                self._fail(HEADERS_TOO_LARGE)
            else:
                self._fail(BAD_REQUEST)
        finally:
            self.uncork()

    def eof_received(self) -> bool:
        # A client that stops sending has gone, as Go's server sees it: the request being
        # served is cancelled (Traefik logs 499) and nothing more is answered.
        self._eof = True
        if self._in_message or self._active is not None or self._queue:
            self._client_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_gone()
        self._let_go()

    def _let_go(self) -> None:
        """Drop what refers back to this connection (the parser's callbacks, the deadlines'),
        so that reference counting frees it once it is over, not the cyclic collector."""
        self._parser = _SPENT_PARSER
        self._deadline.close()
        if self._write_deadline is not None:
            self._write_deadline.close()
        self._transport = self._gate = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        active = self._active
        if active is not None and active.producer is not None:
            active.producer.pause_producing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        active = self._active
        if active is not None and active.producer is not None:
            active.producer.resume_producing()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        if self._active is None and not self._queue:
            self._deadline.set(self._settings.read_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._settings.max_header_bytes:
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._parsing is not None:
            return  # trailer fields of a chunked body: not passed on
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._settings.max_header_bytes:
            raise _TooLarge

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers = self._headers
        hosts = 0
        content_length = b""
        chunked = expect_continue = False
        expect_other = False
        for name, value in headers:
            size = len(name)
            if size not in _HEAD_LOOKS_AT:
                continue
            if size == 4 and name.lower() == b"host":
                hosts += 1
            elif size == 14 and name.lower() == b"content-length":
                content_length = value
            elif size == 17 and name.lower() == b"transfer-encoding":
                chunked = True
            elif size == 6 and name.lower() == b"expect":
                if value.strip().lower() == b"100-continue":
                    expect_continue = True
                else:
                    expect_other = True
        version = _VERSIONS.get(parser.get_http_version(), b"1.1")
        method = parser.get_method()
        info = self._info
        if hosts != 1 and (hosts or version == b"1.1"):
            detail = b"too many Host headers" if hosts else b"missing required Host header"
            raise _Refused(bad_request(detail=detail))
        has_body = chunked or content_length not in (b"", b"0")
        head = RequestHead(method, self._url, version, apply_forwarded_headers(
            headers, trusted=self._trusted, client_ip=info.client_ip, tls=self._tls,
            hostname=self._hostname, kept=self._kept))
        exchange = Exchange(self, head, info, has_body=has_body,
                            keep_alive=parser.should_keep_alive(),
                            expect_continue=expect_continue,
                            # Only records need it (uvloop's loop.time() has 1 ms steps).
                            started_at=time.monotonic() if self._observer is not None else 0.0,
                            body_chunked=chunked)
        self._parsing = exchange
        handler = self._handler
        if expect_other or method == b"CONNECT":
            # Go answers any other expectation with 417; CONNECT is not proxied (see docs).
            exchange.close_after = True
            handler = _EXPECTATION_FAILED if expect_other else _NO_CONNECT
        self._queue.append((exchange, handler))
        if self._active is not None:
            self.pause_reading(PIPELINE)
        self._dispatch()

    def on_body(self, chunk: bytes) -> None:
        exchange = self._parsing
        if exchange is not None:
            exchange.body_received(chunk)
            if exchange.finished and exchange.close_after:
                self._close()  # answered already, and too much is left to read and drop

    def on_message_complete(self) -> None:
        self._in_message = False
        exchange = self._parsing
        self._parsing = None
        if exchange is not None:
            exchange.body_received_all()
        if self._active is None and not self._queue:
            self._deadline.set(self._settings.idle_timeout)
        else:
            self._deadline.clear()
        if exchange is not None and exchange.finished and exchange is not self._active:
            # The response went out before the body was read to its end: go on now.
            self._after_response(exchange)

    # -- what Exchange uses (ClientConnection) --------------------------------------------------

    @property
    def writing_paused(self) -> bool:
        return self._writing_paused

    def transmit(self, data: bytes) -> None:
        if self._corked:
            self._out.append(data)
        elif self._transport is not None and not self._lost:
            self._transport.write(data)  # type: ignore[attr-defined]

    def cork(self) -> None:
        self._corked += 1

    def uncork(self) -> None:
        self._corked -= 1
        if self._corked:
            return
        out = self._out
        transport = self._transport
        if out and transport is not None and not self._lost:
            self._out = []
            if len(out) == 1:
                transport.write(out[0])  # type: ignore[attr-defined]
            elif sum(map(len, out)) < 65536:
                transport.write(b"".join(out))  # type: ignore[attr-defined]
            else:
                for data in out:
                    transport.write(data)  # type: ignore[attr-defined]
        if self._close_when_flushed and transport is not None and not transport.is_closing():
            transport.close()

    def pause_reading(self, reason: int) -> None:
        if self._gate is not None:
            self._gate.pause(reason)

    def resume_reading(self, reason: int) -> None:
        if self._gate is not None and not self._lost:
            self._gate.resume(reason)

    def response_done(self, exchange: Exchange) -> None:
        if self._observer is not None:
            self._record(exchange)
        if self._write_deadline is not None:
            self._write_deadline.clear()
        if exchange is self._active:
            self._active = None
        if exchange is self._parsing and not exchange.keeps_connection:
            self._close()
            return
        if exchange is not self._parsing:
            self._after_response(exchange)

    def response_aborted(self, exchange: Exchange) -> None:
        self._record(exchange)
        if exchange is self._active:
            self._active = None
        self._close()

    def switch_protocols(self, exchange: Exchange, backend: Endpoint,
                         backend_bytes: bytes) -> None:
        transport, gate = self._transport, self._gate
        pending = bytes(self._upgrade_bytes or b"")
        self._active = None
        self._upgraded = True
        self._let_go()  # the tunnel has the connection from here on
        if transport is None or self._lost:
            backend.close()
            self._record(exchange)
            return
        out, self._out = self._out, []
        for data in out:  # the 101 head goes before any relayed byte
            transport.write(data)  # type: ignore[attr-defined]
        if gate is not None:
            gate.resume(PIPELINE)
        # Traefik logs an upgraded request when its tunnel closes, with the whole session's time.
        on_close = (lambda: self._record(exchange)) if self._observer else None
        Tunnel(transport, backend, on_close).start(  # type: ignore[arg-type]
            pending, backend_bytes)

    # -- internals ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._active is None and self._queue and not self._close_when_flushed:
                exchange, handler = self._queue.popleft()
                self._active = exchange
                if self._write_deadline is not None:
                    self._write_deadline.set(self._settings.write_timeout)
                try:
                    handler.handle(exchange)
                except Exception:
                    log.exception("HTTP handler failed on %s %r", exchange.request.method,
                                  exchange.request.target)
                    if not exchange.response_started:
                        status_text_error(exchange, 500)
                    else:
                        exchange.abort()
        finally:
            self._dispatching = False
        if self._active is None and not self._queue:
            if self._gate is not None and not self._lost:
                self._gate.resume(PIPELINE)
            if self._error is not None:
                self._write_error()
            elif self._eof and not self._in_message:
                self._close()
            elif not self._close_when_flushed:
                # A request begun behind the one just answered gets its own read deadline.
                self._deadline.set(self._settings.read_timeout if self._in_message
                                   else self._settings.idle_timeout)

    def _after_response(self, exchange: Exchange) -> None:
        if not exchange.keeps_connection or self._upgrade_bytes is not None:
            self._close()
            return
        self._dispatch()

    def _upgrade_requested(self, rest: bytes) -> None:
        # The parser stops after an Upgrade request; what follows belongs to the new protocol,
        # or ends the connection if the backend refuses to switch.
        self._upgrade_bytes = bytearray(rest)
        self.pause_reading(PIPELINE)
        if self._parsing is not None:
            self._in_message = False
            self._parsing = None
        if self._active is None and not self._queue:
            self._close()  # answered without switching: the parser cannot go on

    def _fail(self, response: bytes) -> None:
        self._error = response
        self._in_message = False
        exchange = self._parsing
        self._parsing = None
        if exchange is not None and not exchange.body_complete:
            exchange.client_lost()
        if self._active is None and not self._queue:
            self._write_error()

    def _write_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            self.transmit(error)
        self._close()

    def _close(self) -> None:
        if self._corked:
            self._close_when_flushed = True
            return
        self._close_when_flushed = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _expired(self) -> None:
        # Go closes a connection whose request, response or idle wait ran out, without a word.
        transport = self._transport
        self._out = []
        self._client_gone()
        if transport is not None and not transport.is_closing():
            transport.close()

    def _client_gone(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._deadline.cancel()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        if self._upgraded:
            return
        exchanges = [self._active, self._parsing, *(queued for queued, _ in self._queue)]
        self._active = self._parsing = None
        self._queue.clear()
        for exchange in exchanges:
            if exchange is not None and not exchange.finished:
                exchange.client_lost()
                self._record(exchange)

    def _record(self, exchange: Exchange) -> None:
        observer = self._observer
        if observer is None:
            return
        observer(request_record(exchange))


def request_record(exchange: Exchange) -> RequestRecord:
    """The observation record of a finished (or abandoned) exchange, HTTP/1.x or HTTP/2.

    Header lists are handed over as they are, not copied or decoded: the record is read at once
    by the observers, and only the fields they log are decoded.
    """
    request, info = exchange.request, exchange.info
    target = exchange.received_target
    path, query = split_target(target)
    host = request.headers.get(b"host")
    origin = exchange.origin
    origin_head = origin.head if origin is not None else None
    duration = time.monotonic() - exchange.started_at
    return RequestRecord(
        entry_point=info.entry_point, router=exchange.router, service=exchange.service,
        server=exchange.server, method=request.method.decode("latin-1"),
        path=path.decode("latin-1"),
        query=query.decode("latin-1") if query or b"?" in target else None,
        protocol="HTTP/" + request.version.decode("latin-1"),
        status=exchange.status, request_bytes=exchange.request_bytes,
        response_bytes=exchange.response_bytes,
        duration=duration, started_at=time.time() - duration, client_ip=info.client_ip,
        client_port=info.client_port, tls=info.tls, closed_by=exchange.closed_by,
        attempts=exchange.attempts, host=host.decode("latin-1") if host is not None else "",
        router_service=exchange.router_service, client_username=exchange.client_username, request_headers=request.headers,
        response_headers=_logged_fields(exchange.response_head, exchange),
        response_trailers=exchange.response_trailers or (),
        origin_headers=_logged_fields(origin_head, exchange),
        origin_status=origin_head.status if origin_head is not None else 0,
        origin_bytes=origin.size if origin is not None else 0,
        origin_duration=origin.elapsed if origin is not None else None,
        tls_version=info.tls_version or "", tls_cipher=info.tls_cipher or "",
        tls_peer_certificates=info.tls_peer_certificates, access_logs=exchange.access_logs,
        metrics=exchange.metrics)


def _logged_fields(head: ResponseHead | None, exchange: Exchange
                   ) -> Sequence[tuple[bytes, bytes]]:
    """A response head's fields as Go's header map has them, without a Content-Length that
    Go's server would add on the wire only (``exchange.sized_head``)."""
    if head is None:
        return ()
    if head is exchange.sized_head:
        return [pair for pair in head.headers if pair[0].lower() != b"content-length"]
    return head.headers


class _TooLarge(Exception):
    """Raised inside a parser callback: the request head is over the limit."""


class _Refused(Exception):
    """Raised inside a parser callback: answer with these bytes and close."""

    def __init__(self, response: bytes) -> None:
        super().__init__("request refused")
        self.response = response


# What a connection parses with once it is over: no callbacks, so it refers to nobody.
_SPENT_PARSER = httptools.HttpRequestParser(object())
_EXPECTATION_FAILED = Responder(417)
_NO_CONNECT = Responder(405)
