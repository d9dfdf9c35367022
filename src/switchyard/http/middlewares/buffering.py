"""`buffering`: reads the whole request before forwarding it and the whole response before
answering, with size limits and optional retries (Traefik's oxy buffer).

* A request declaring a Content-Length above ``maxRequestBodyBytes`` is answered ``413
  Request Entity Too Large`` (no Content-Type, as Traefik sends it) at once; a chunked one as soon as it passes the limit. A body
  that fits is forwarded with a Content-Length (no chunked framing), as oxy does.
* A response body above ``maxResponseBodyBytes`` is read to its end and dropped, and the client
  gets ``500 Internal Server Error``. A ``101`` (WebSocket) passes straight through.
* ``retryExpression`` is checked after each complete response (up to 10 attempts); when it
  holds, the stored request is sent again and that response dropped.
* Memory: up to ``memRequestBodyBytes`` / ``memResponseBodyBytes`` (default 1 MiB each) of a
  body is kept in memory, the rest goes to an anonymous temporary file, which is replayed in
  64 KiB pieces with backpressure and closed when the exchange finishes. The file is written
  and read from the event loop (local disk; a slow disk slows the process).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import BodyConsumer, Handler, ResponseWriter
from switchyard.http.message import RequestHead, ResponseHead
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.retryexpr import (
    RetryContext,
    RetryPredicate,
    parse_retry_expression,
)
from switchyard.http.middlewares.subexchange import SubExchange

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from switchyard.http.exchange import Exchange

__all__ = ["Buffering", "SpillBuffer", "build"]

DEFAULT_MEM_BYTES = 1024 * 1024
MAX_ATTEMPTS = 10
_PIECE = 64 * 1024
_GO_RESPONSE_BUFFER = 2048


class BufferingOptions(TraefikModel):
    max_request_body_bytes: int = 0
    mem_request_body_bytes: int = 0
    max_response_body_bytes: int = 0
    mem_response_body_bytes: int = 0
    retry_expression: str = ""


class SpillBuffer:
    """Bytes kept in memory up to ``memory_limit``, the rest in a temporary file."""

    __slots__ = ("_file", "_memory", "_memory_size", "memory_limit", "size")

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self._memory: list[bytes] = []
        self._memory_size = 0
        self._file: IO[bytes] | None = None
        self.size = 0

    def append(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.memory_limit - self._memory_size
        if room > 0:
            kept = chunk[:room]
            self._memory.append(kept)
            self._memory_size += len(kept)
            chunk = chunk[room:]
        if chunk:
            if self._file is None:
                # Closed by close(), which the exchange calls when it finishes.
                self._file = tempfile.TemporaryFile(prefix="switchyard-buffer-")  # noqa: SIM115
            self._file.write(chunk)

    @property
    def on_disk(self) -> int:
        return self.size - self._memory_size

    def pieces(self) -> Iterator[bytes]:
        """The bytes from the start, memory first, then the file in 64 KiB pieces."""
        yield from self._memory
        file = self._file
        if file is not None:
            file.flush()
            offset = 0
            while True:
                file.seek(offset)
                piece = file.read(_PIECE)
                if not piece:
                    return
                offset += len(piece)
                yield piece

    def close(self) -> None:
        self._memory = []
        if self._file is not None:
            self._file.close()
            self._file = None


class _Pump:
    """Sends a SpillBuffer's pieces to a sink until paused; resumes where it stopped."""

    __slots__ = ("_done", "_paused", "_pieces", "_pumping", "_send")

    def __init__(self, buffer: SpillBuffer, send: Callable[[bytes], None],
                 done: Callable[[], None]) -> None:
        self._pieces = buffer.pieces()
        self._send = send
        self._done: Callable[[], None] | None = done
        self._paused = False
        self._pumping = False

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.run()

    def stop(self) -> None:
        self._paused = True
        self._done = None

    def run(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._paused:
                piece = next(self._pieces, None)
                if piece is None:
                    done, self._done = self._done, None
                    if done is not None:
                        done()
                    return
                self._send(piece)
        finally:
            self._pumping = False


class _StoredBody:
    """BodySource: the stored request body, sent again from the start on every replay."""

    __slots__ = ("_buffer", "_pump")

    def __init__(self, buffer: SpillBuffer) -> None:
        self._buffer = buffer
        self._pump: _Pump | None = None

    def replay(self, consumer: BodyConsumer) -> None:
        if self._pump is not None:
            self._pump.stop()
        pump = self._pump = _Pump(self._buffer, consumer.body_data, consumer.body_end)
        pump.run()

    def pause(self) -> None:
        if self._pump is not None:
            self._pump.pause()

    def resume(self) -> None:
        if self._pump is not None:
            self._pump.resume()


class _RequestReader:
    """BodyConsumer: stores the client's body, refusing it past the limit."""

    __slots__ = ("_buffering", "_exchange", "buffer", "refused")

    def __init__(self, buffering: Buffering, exchange: Exchange) -> None:
        self._buffering = buffering
        self._exchange = exchange
        self.buffer = SpillBuffer(buffering.mem_request)
        self.refused = False

    def body_data(self, chunk: bytes) -> None:
        if self.refused:
            return
        limit = self._buffering.max_request
        if limit and self.buffer.size + len(chunk) > limit:
            self.refused = True
            self.buffer.close()
            _too_large(self._exchange)
            return
        self.buffer.append(chunk)

    def body_end(self) -> None:
        if not self.refused:
            self._buffering.forward(self._exchange, self.buffer)

    def body_aborted(self) -> None:
        self.buffer.close()


class _Attempt:
    """ResponseWriter of one attempt: stores the response; its end decides what follows."""

    __slots__ = ("_run", "body", "head", "overflow", "passing")

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.head: ResponseHead | None = None
        self.body = SpillBuffer(run.buffering.mem_response)
        self.overflow = False
        self.passing = False  # a 101: the exchange is the tunnel's now

    def start(self, head: ResponseHead) -> None:
        if head.status == 101:
            self.passing = True
            self._run.writer.start(head)
            return
        self.head = head

    def write(self, chunk: bytes) -> None:
        if self.passing:
            self._run.writer.write(chunk)
            return
        limit = self._run.buffering.max_response
        if self.overflow or (limit and self.body.size + len(chunk) > limit):
            self.overflow = True
            return
        self.body.append(chunk)

    def end(self) -> None:
        if self.passing:
            self._run.writer.end()
        else:
            self._run.attempt_done(self)

    def abort(self) -> None:
        self.body.close()
        self._run.writer.abort()


class _Run:
    """One request through the buffering middleware: the stored request and its attempts."""

    __slots__ = ("attempt", "body", "buffering", "exchange", "request", "response", "writer")

    def __init__(self, buffering: Buffering, exchange: Exchange, body: SpillBuffer | None) -> None:
        self.buffering = buffering
        self.exchange = exchange
        self.writer: ResponseWriter = exchange.writer
        original = exchange.request
        headers = original.headers.copy()
        if body is not None:
            headers.remove(b"transfer-encoding")
            headers.set(b"content-length", str(body.size).encode("ascii"), b"Content-Length")
        self.request = RequestHead(original.method, original.target, original.version, headers)
        self.body = _StoredBody(body) if body is not None and body.size else None
        self.attempt = 0
        self.response: _Pump | None = None

    def send(self) -> None:
        self.attempt += 1
        request = self.request
        sub = SubExchange(self.exchange, RequestHead(request.method, request.target,
                                                     request.version, request.headers.copy()),
                          self.body)
        attempt = _Attempt(self)
        self.exchange.on_finish(attempt.body.close)
        sub.writer = attempt
        self.buffering.next.handle(sub)
        sub.report_to_outer()

    def attempt_done(self, attempt: _Attempt) -> None:
        exchange = self.exchange
        if exchange.finished:
            attempt.body.close()
            return
        head = attempt.head
        assert head is not None
        retry = self.buffering.retry
        if (retry is not None and self.attempt <= MAX_ATTEMPTS and retry(RetryContext(
                exchange.request.method.decode("latin-1"), self.attempt, head.status))):
            attempt.body.close()
            self.send()
            return
        if attempt.overflow:
            attempt.body.close()
            exchange.respond(500, None, b"Internal Server Error")
            return
        self._answer(head, attempt.body)

    def _answer(self, head: ResponseHead, body: SpillBuffer) -> None:
        if not _expects_body(self.exchange.request.method, head):
            body.close()
            self.writer.start(head)
            self.writer.end()
            return
        if head.headers.get(b"content-length") is None and body.size <= _GO_RESPONSE_BUFFER:
            # Go's server gives a short complete handler output its length.
            head.headers.append((b"Content-Length", str(body.size).encode("ascii")))
        writer = self.writer
        writer.start(head)

        def done() -> None:
            self.exchange.set_producer(None)
            body.close()
            writer.end()

        pump = self.response = _Pump(body, writer.write, done)
        self.exchange.set_producer(self)
        pump.run()

    # -- Producer (the stored response towards the client) ------------------------------------

    def pause_producing(self) -> None:
        if self.response is not None:
            self.response.pause()

    def resume_producing(self) -> None:
        if self.response is not None:
            self.response.resume()

    def stop_producing(self) -> None:
        if self.response is not None:
            self.response.stop()


def _expects_body(method: bytes, head: ResponseHead) -> bool:
    """oxy's rule for whether a stored response has a body to send."""
    status, headers = head.status, head.headers
    if method == b"HEAD" or 100 <= status < 200 or status in (204, 304):
        return False
    if headers.get(b"content-length") == b"0":
        return False
    grpc = headers.get(b"grpc-status")
    return not grpc or grpc == b"0"


def _too_large(exchange: Exchange) -> None:
    exchange.respond(413, None, b"Request Entity Too Large")


class Buffering:
    """Handler: stores the request body, then runs the attempts (see the module docstring)."""

    __slots__ = ("max_request", "max_response", "mem_request", "mem_response", "next", "retry")

    def __init__(self, next_handler: Handler, *, max_request: int, mem_request: int,
                 max_response: int, mem_response: int, retry: RetryPredicate | None) -> None:
        self.next = next_handler
        self.max_request = max_request
        self.mem_request = mem_request
        self.max_response = max_response
        self.mem_response = mem_response
        self.retry = retry

    def handle(self, exchange: Exchange) -> None:
        limit = self.max_request
        if limit:
            declared = exchange.request.headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                _too_large(exchange)
                return
        if not exchange.has_body:
            _Run(self, exchange, None).send()
            return
        reader = _RequestReader(self, exchange)
        exchange.on_finish(reader.buffer.close)
        exchange.send_continue()  # Go's server says 100 Continue when the body is first read
        exchange.read_body(reader)

    def forward(self, exchange: Exchange, body: SpillBuffer) -> None:
        if not exchange.finished:
            _Run(self, exchange, body).send()


def _memory_limit(configured: int, maximum: int) -> int:
    limit = configured or DEFAULT_MEM_BYTES
    return min(limit, maximum) if maximum else limit


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(BufferingOptions, options)
    for key, value in (("maxRequestBodyBytes", config.max_request_body_bytes),
                       ("memRequestBodyBytes", config.mem_request_body_bytes),
                       ("maxResponseBodyBytes", config.max_response_body_bytes),
                       ("memResponseBodyBytes", config.mem_response_body_bytes)):
        if value < 0:
            raise MiddlewareError(f"{key}: bytes should be >= 0, got {value} (0 means the "
                                  "default)")
    retry = None
    if config.retry_expression:
        try:
            retry = parse_retry_expression(config.retry_expression)
        except ValueError as exc:
            raise MiddlewareError(f"retryExpression {config.retry_expression!r}: {exc}") from None
    settings = {
        "max_request": config.max_request_body_bytes,
        "mem_request": _memory_limit(config.mem_request_body_bytes,
                                     config.max_request_body_bytes),
        "max_response": config.max_response_body_bytes,
        "mem_response": _memory_limit(config.mem_response_body_bytes,
                                      config.max_response_body_bytes),
    }
    return lambda next_handler: Buffering(next_handler, retry=retry, **settings)
