"""One request and its response on a client connection: what handlers are given (see handler)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from switchyard.http.flowcontrol import BODY, BUFFER
from switchyard.http.message import (
    Headers,
    RequestHead,
    ResponseHead,
    canonical_name,
    date_value,
    status_line,
)

if TYPE_CHECKING:
    from switchyard.http.handler import (
        Attempt,
        BodyConsumer,
        ConnectionInfo,
        Producer,
        ResponseWriter,
    )
    from switchyard.http.origin import OriginCapture
    from switchyard.http.tunnel import Endpoint

__all__ = ["ClientConnection", "Exchange", "trailer_block"]

# Request body bytes held while nobody reads them, before the client is paused.
BODY_HIGH_WATER = 64 * 1024
# Body bytes after the response that are read and dropped to keep the connection (as Go does).
DISCARD_LIMIT = 256 * 1024
# Chunks below this size are framed into one bytes object; larger ones are written in pieces.
_SMALL = 16 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Lengths of the field names start() looks at: Content-Length, Transfer-Encoding, Date,
# Connection.
_START_LOOKS_AT = frozenset({14, 17, 4, 10})


class ClientConnection(Protocol):
    """What an Exchange needs from the connection it belongs to (HTTPServerConnection)."""

    @property
    def writing_paused(self) -> bool: ...
    def transmit(self, data: bytes) -> None: ...
    def cork(self) -> None: ...
    def uncork(self) -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...
    def response_done(self, exchange: Exchange) -> None: ...
    def response_aborted(self, exchange: Exchange) -> None: ...
    def switch_protocols(self, exchange: Exchange, backend: Endpoint, backend_bytes: bytes) -> None:
        ...


class Exchange:
    """A request being served; it is also the innermost ResponseWriter (``exchange.writer``).

    Made by the client connection when a request head is complete. ``keep_alive`` is what the
    client asked for; ``close_after`` is set when the connection must close after this response.
    """

    __slots__ = (
        "_body_done", "_buffer", "_buffered", "_chunked", "_conn", "_consumer", "_continue_sent",
        "_discarded", "_no_body", "_on_finish", "_producer", "_started", "_writer", "access_logs",
        "attempts", "body_chunked", "client_username", "close_after", "closed_by",
        "expect_continue", "finished", "forward_client", "has_body", "info", "keep_alive",
        "metrics", "origin", "received_target", "request", "request_bytes", "request_unsent",
        "response_bytes", "response_head", "response_trailers", "router", "router_service",
        "server", "service", "sized_head", "started_at", "status",
    )

    def __init__(self, conn: ClientConnection, request: RequestHead, info: ConnectionInfo, *,
                 has_body: bool, keep_alive: bool, expect_continue: bool,
                 started_at: float, body_chunked: bool = False) -> None:
        self._conn = conn
        self.request = request
        self.info = info
        # None: the exchange itself. Not a reference to self, which would make every exchange
        # a cycle that only the garbage collector frees.
        self._writer: ResponseWriter | None = None
        self.router = ""
        self.service = ""
        self.server = ""
        self.has_body = has_body
        self.body_chunked = body_chunked  # sent with Transfer-Encoding (no Content-Length)
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue and has_body
        self.close_after = not keep_alive
        self.closed_by = ""
        self.started_at = started_at
        self.status = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.finished = False
        self._started = False
        self._chunked = False
        self._no_body = False
        self._body_done = not has_body
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._discarded = 0
        self._consumer: BodyConsumer | None = None
        self._producer: Producer | None = None
        self._continue_sent = False
        self._on_finish: list[Callable[[], None]] | None = None
        # Set by the reverse proxy when it answers an error because no server got the request
        # (the dial failed): nothing was sent, so the retry middleware may send it again.
        self.request_unsent = False
        # False: the reverse proxy sends no X-Forwarded-For at all (Go's nil header, which
        # the headers middleware's `X-Forwarded-For: ""` sets).
        self.forward_client = True
        self.attempts: tuple[Attempt, ...] = ()  # other requests to services, for the record
        # What only the RequestRecord reads (see RequestRecord for their meaning): set by the
        # router, the auth middlewares, the reverse proxy (when observed) and start().
        self.received_target = request.target
        self.router_service = ""
        self.client_username: str | None = None
        self.access_logs = self.metrics = True  # the router's observability switches
        self.origin: OriginCapture | None = None
        # Trailer fields of the response, set by whoever produced the body (the reverse proxy)
        # just before its end(); the connection's own writer sends them (see handler).
        self.response_trailers: Headers | None = None
        self.response_head: ResponseHead | None = None
        # A head whose Content-Length the engine added where Go's server adds one on the wire
        # only, not to the header map Traefik logs (respond(), compress's short bodies).
        self.sized_head: ResponseHead | None = None

    # -- for handlers ------------------------------------------------------------------------

    @property
    def writer(self) -> ResponseWriter:
        """Where the response goes: the outermost writer a handler put in front, else the
        exchange itself."""
        writer = self._writer
        return self if writer is None else writer

    @writer.setter
    def writer(self, writer: ResponseWriter) -> None:
        self._writer = None if writer is self else writer

    @property
    def response_started(self) -> bool:
        return self._started

    @property
    def observed(self) -> bool:
        """Whether a RequestRecord will be made of this exchange (the entry point has an
        observer; only then is ``started_at`` set): handlers note what only the record reads."""
        return self.started_at != 0.0

    @property
    def body_complete(self) -> bool:
        """Whether the whole request body has been received (True without a body)."""
        return self._body_done

    def respond(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        """A whole short response through the writer chain (Content-Length set from ``body``)."""
        fields = Headers() if headers is None else headers.copy()
        if status >= 200 and status not in (204, 304):
            fields.set(b"content-length", str(len(body)).encode("ascii"), b"Content-Length")
            head = self.sized_head = ResponseHead(status, fields)
        else:
            head = ResponseHead(status, fields)
        writer = self.writer
        self.cork()
        try:
            writer.start(head)
            if body:
                writer.write(body)
            writer.end()
        finally:
            self.uncork()

    def on_finish(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the exchange finishes: its response ended or was aborted,
        the client went away, or the connection was upgraded, whichever comes first."""
        if self.finished:
            callback()
        elif self._on_finish is None:
            self._on_finish = [callback]
        else:
            self._on_finish.append(callback)

    def read_body(self, consumer: BodyConsumer) -> None:
        """Deliver the request body to ``consumer``, first what has been held so far."""
        self._consumer = consumer
        if self._buffer:
            held, self._buffer, self._buffered = self._buffer, [], 0
            for chunk in held:
                consumer.body_data(chunk)
            self._conn.resume_reading(BUFFER)
        if self._body_done and self.has_body:
            consumer.body_end()

    def unread_body(self, chunks: list[bytes]) -> None:
        """Put body ``chunks`` back: the next read_body() delivers them first (a replayed body).

        The body's consumer is forgotten; what arrives meanwhile is held behind ``chunks``.
        """
        self._consumer = None
        self._buffer = [*chunks, *self._buffer]
        self._buffered = sum(map(len, self._buffer))
        if self._buffered > BODY_HIGH_WATER:
            self._conn.pause_reading(BUFFER)

    def pause_body(self) -> None:
        self._conn.pause_reading(BODY)

    def resume_body(self) -> None:
        self._conn.resume_reading(BODY)

    def set_producer(self, producer: Producer | None) -> None:
        """Who to pause when the client cannot take more (None: nobody)."""
        self._producer = producer
        if producer is not None and self._conn.writing_paused:
            producer.pause_producing()

    def send_continue(self) -> None:
        """Tell a client waiting on ``Expect: 100-continue`` to send its body (once)."""
        if self.expect_continue and not self._continue_sent and not self._started:
            self._continue_sent = True
            self._conn.transmit(_CONTINUE)

    def cork(self) -> None:
        self._conn.cork()

    def uncork(self) -> None:
        self._conn.uncork()

    def upgrade(self, backend: Endpoint, backend_bytes: bytes = b"") -> None:
        """After writing a ``101`` head: relay bytes both ways between client and ``backend``.

        ``backend_bytes`` are what the backend sent after its 101 head. The exchange is finished.
        """
        if self.finished:
            backend.close()
            return
        self.finished = True
        self._finished_callbacks()
        self._conn.switch_protocols(self, backend, backend_bytes)

    # -- the innermost ResponseWriter -------------------------------------------------------

    def start(self, head: ResponseHead) -> None:
        if self._started or self.finished:
            return
        self._started = True
        self.response_head = head
        status = self.status = head.status
        no_body = self._no_body = (status < 200 or status in (204, 304)
                                   or self.request.method == b"HEAD")
        length = date = False
        parts = [status_line(status)]
        for name, value in head.headers:
            size = len(name)
            if size not in _START_LOOKS_AT:  # not one of the names below: passed on as it is
                parts += (name, b": ", value, b"\r\n")
                continue
            if size == 14 and name.lower() == b"content-length":
                length = True
            elif size == 17 and name.lower() == b"transfer-encoding":
                continue  # the framing is ours to choose
            elif size == 4 and name.lower() == b"date":
                date = True
            elif size == 10 and name.lower() == b"connection" and b"close" in value.lower():
                self.close_after = True
            parts += (name, b": ", value, b"\r\n")
        if status == 101:
            pass
        elif not no_body and not length:
            if self.request.version == b"1.1":
                self._chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.close_after = True  # the end of the body is the end of the connection
        if not date:
            parts += (b"Date: ", date_value(), b"\r\n")
        if status != 101:
            if self.close_after:
                if self.keep_alive or self.request.version == b"1.1":
                    parts.append(b"Connection: close\r\n")
            elif self.request.version == b"1.0":
                parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._conn.transmit(b"".join(parts))

    def write(self, chunk: bytes) -> None:
        if self.finished or self._no_body or not chunk:
            return
        if not self._started:
            raise RuntimeError("write() before start()")
        size = len(chunk)
        self.response_bytes += size
        if not self._chunked:
            self._conn.transmit(chunk)
        elif size < _SMALL:
            self._conn.transmit(b"%x\r\n%b\r\n" % (size, chunk))
        else:
            self._conn.transmit(b"%x\r\n" % size)
            self._conn.transmit(chunk)
            self._conn.transmit(b"\r\n")

    def end(self) -> None:
        if self.finished:
            return
        if not self._started:
            raise RuntimeError("end() before start()")
        if self._chunked:
            trailers = self.response_trailers
            self._conn.transmit(b"0\r\n" + trailer_block(trailers) + b"\r\n" if trailers
                                else b"0\r\n\r\n")
        self._finish()
        self._conn.response_done(self)

    def abort(self) -> None:
        if self.finished:
            return
        if not self.closed_by:
            self.closed_by = "backend"
        self._finish()
        self._conn.response_aborted(self)

    # -- for the client connection ----------------------------------------------------------

    def body_received(self, chunk: bytes) -> None:
        self.request_bytes += len(chunk)
        if self.finished:
            self._discarded += len(chunk)
            if self._discarded > DISCARD_LIMIT:
                self.close_after = True
            return
        consumer = self._consumer
        if consumer is not None:
            consumer.body_data(chunk)
            return
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > BODY_HIGH_WATER:
            self._conn.pause_reading(BUFFER)

    def body_received_all(self) -> None:
        self._body_done = True
        if self._consumer is not None and not self.finished:
            self._consumer.body_end()

    @property
    def keeps_connection(self) -> bool:
        """After the response: whether the connection can serve another request."""
        if self.close_after:
            return False
        # A client waiting for 100 Continue that never came will not send its body.
        return self._body_done or not self.expect_continue or self._continue_sent

    @property
    def producer(self) -> Producer | None:
        return self._producer

    def client_lost(self) -> None:
        """The client connection closed before the exchange finished."""
        if self.finished:
            return
        self.closed_by = "client"
        self._finish()
        producer, consumer = self._producer, self._consumer
        if producer is not None:
            producer.stop_producing()
        if consumer is not None and not self._body_done:
            consumer.body_aborted()

    def _finish(self) -> None:
        self.finished = True
        self._finished_callbacks()
        self._producer = None
        self._buffer = []
        if self._buffered:
            self._buffered = 0
            self._conn.resume_reading(BUFFER)
        if self.has_body:
            # A slow body consumer no longer holds the client: the rest is read and dropped.
            self._conn.resume_reading(BODY)

    def _finished_callbacks(self) -> None:
        callbacks, self._on_finish = self._on_finish, None
        if callbacks is not None:
            for callback in callbacks:
                callback()


def trailer_block(trailers: Headers) -> bytes:
    """Trailer fields as they follow the last chunk: Go's spelling of each name, sorted by name
    (Go writes a header map in key order), values of one name in the order they came."""
    named = sorted(((canonical_name(name), value) for name, value in trailers),
                   key=lambda pair: pair[0])
    return b"".join(b"%b: %b\r\n" % pair for pair in named)
