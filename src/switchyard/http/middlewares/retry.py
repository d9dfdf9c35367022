"""`retry`: sends a request again, up to ``attempts`` times in all, while nothing was answered.

What is retried, as in Traefik 3.7:

* a request no server got: the reverse proxy could not connect (it marks the exchange
  ``request_unsent``), whatever the method and body, unless ``disableRetryOnNetworkError``;
  once request bytes were sent to a server its answer, even a 502, goes to the client;
* with ``status`` (codes and ``from-to`` ranges), a response with such a status, for methods
  other than POST, PATCH and LOCK (all with ``retryNonIdempotentMethod``). Its body is read
  and dropped. The request body is read first, up to ``maxRequestBodyBytes`` (2 MiB; negative:
  no limit), and replayed on every attempt; a larger body turns the status retry off for that
  request (it is still forwarded, unread bytes first).

Nothing is retried once a response has started towards the client, and never after
``timeout`` (counted from the first attempt). Each attempt starts from the request as the
retry received it (middlewares after it change a fresh copy) and goes through the rest of the
chain again, so a load balancer may pick another server. The last attempt writes straight to
the client. Between attempts: no wait without ``initialInterval``, else Go's exponential
backoff (each wait drawn from 50 % to 150 % of an interval that starts at ``initialInterval``
and grows so as to double over the attempts).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.durations import Duration
from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Attempt, Handler, ResponseWriter
from switchyard.http.message import RequestHead
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import Headers, ResponseHead

__all__ = ["Backoff", "RetryOptions", "build", "code_ranges"]

DEFAULT_MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024
_NON_IDEMPOTENT = frozenset({b"POST", b"PATCH", b"LOCK"})
_GO_INT = re.compile(r"[+-]?[0-9]+")
# Go's backoff.ExponentialBackOff defaults that Traefik keeps.
_RANDOMIZATION = 0.5
_MAX_INTERVAL = 60.0


class RetryOptions(TraefikModel):
    attempts: int = 0
    timeout: Duration = 0.0
    initial_interval: Duration = 0.0
    max_request_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_BYTES
    status: StrList = Field(default_factory=list)
    disable_retry_on_network_error: bool = False
    retry_non_idempotent_method: bool = False


def code_ranges(blocks: list[str]) -> tuple[tuple[int, int], ...]:
    """``status`` entries (``"503"``, ``"500-599"``) as inclusive (low, high) pairs."""
    ranges = []
    for block in blocks:
        codes = block.split("-")
        low, high = codes[0], codes[1] if len(codes) > 1 else codes[0]
        for code in (low, high):
            if not _GO_INT.fullmatch(code):
                raise MiddlewareError(f"status: {block!r} is not a status code or a range of "
                                      'them; write e.g. "503" or "500-599"')
        ranges.append((int(low), int(high)))
    return tuple(ranges)


class Backoff:
    """The waits between attempts: Go's ExponentialBackOff as Traefik configures it."""

    __slots__ = ("interval", "multiplier")

    def __init__(self, initial_interval: float, attempts: int) -> None:
        self.interval = initial_interval
        # So that the interval reaches twice the initial one at the last attempt.
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts > 1 else 1.0

    def next_wait(self) -> float:
        current = self.interval
        if current <= 0:
            return 0.0
        delta = _RANDOMIZATION * current
        wait = current - delta + random.random() * 2 * delta
        self.interval = (_MAX_INTERVAL if current >= _MAX_INTERVAL / self.multiplier
                         else current * self.multiplier)
        return wait


class Retry:
    __slots__ = ("attempts", "initial_interval", "max_body", "network", "next",
                 "non_idempotent", "statuses", "timeout")

    def __init__(self, options: RetryOptions, statuses: tuple[tuple[int, int], ...],
                 next_handler: Handler) -> None:
        self.attempts = options.attempts
        self.timeout = options.timeout
        self.initial_interval = options.initial_interval
        self.max_body = options.max_request_body_bytes
        self.network = not options.disable_retry_on_network_error
        self.non_idempotent = options.retry_non_idempotent_method
        self.statuses = statuses
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if self.attempts == 1:
            self.next.handle(exchange)
            return
        _Run(self, exchange).begin()


class _Run:
    """One request's attempts; also the BodyConsumer that reads a body to replay."""

    __slots__ = ("attempt", "backoff", "body", "exchange", "head", "overflow", "retry",
                 "size", "started", "statuses", "writer")

    def __init__(self, retry: Retry, exchange: Exchange) -> None:
        self.retry = retry
        self.exchange = exchange
        self.writer: ResponseWriter = exchange.writer  # towards the client
        request = exchange.request
        self.head: tuple[bytes, bytes, bytes, Headers] = (
            request.method, request.target, request.version, request.headers.copy())
        idempotent = request.method not in _NON_IDEMPOTENT
        self.statuses = retry.statuses if retry.non_idempotent or idempotent else ()
        self.attempt = 1
        self.started = time.monotonic()
        self.backoff = Backoff(retry.initial_interval, retry.attempts)
        self.body: list[bytes] | None = None  # the whole body, when it is replayed
        self.size = 0
        self.overflow = False

    def begin(self) -> None:
        exchange = self.exchange
        if self.statuses and exchange.has_body:
            self.body = []
            exchange.send_continue()  # reading the body is what Go's 100 Continue waits for
            exchange.read_body(self)
        else:
            self.attempt_once()

    # -- BodyConsumer: reading the body before the first attempt --------------------------------

    def body_data(self, chunk: bytes) -> None:
        body = self.body
        if body is None:
            return
        body.append(chunk)
        self.size += len(chunk)
        if not self.overflow and 0 <= self.retry.max_body < self.size:
            self.overflow = True
            self.exchange.pause_body()
            # Not from inside the exchange's delivery loop: it may still hold chunks for us.
            asyncio.get_running_loop().call_soon(self._too_large)

    def body_end(self) -> None:
        if self.body is not None and not self.overflow:
            self.attempt_once()

    def body_aborted(self) -> None:
        self.body = None  # the client went away; the exchange is finished

    def _too_large(self) -> None:
        body, self.body = self.body, None
        self.statuses = ()  # as in Traefik: the body cannot be replayed, so no status retry
        exchange = self.exchange
        if exchange.finished or body is None:
            return
        exchange.unread_body(body)
        exchange.resume_body()
        self.attempt_once()

    # -- attempts -------------------------------------------------------------------------------

    def attempt_once(self) -> None:
        exchange = self.exchange
        if exchange.finished:
            return
        if self.attempt > 1:
            method, target, version, headers = self.head
            exchange.request = RequestHead(method, target, version, headers.copy())
        if self.body is not None:
            exchange.unread_body(list(self.body))
        exchange.request_unsent = False
        exchange.server = ""  # which server this attempt reaches, if any
        last = self.attempt >= self.retry.attempts
        exchange.writer = self.writer if last else _Attempt(self)
        self.retry.next.handle(exchange)

    def timed_out(self) -> bool:
        timeout = self.retry.timeout
        return timeout > 0 and time.monotonic() - self.started >= timeout

    def retries(self, head: ResponseHead) -> bool:
        """Whether this attempt's response is dropped for another attempt."""
        if self.timed_out():
            return False
        if self.retry.network and self.exchange.request_unsent:
            return True
        status = head.status
        return any(low <= status <= high for low, high in self.statuses)

    def again(self, status: int, dropped_bytes: int, started: float) -> None:
        exchange = self.exchange
        if exchange.server:  # it reached a server: the service metrics count it
            sent = 0 if exchange.request_unsent else self.size
            exchange.attempts += (Attempt(exchange.service, status, sent, dropped_bytes,
                                          time.monotonic() - started),)
        self.attempt += 1
        self.exchange.writer = self.writer
        wait = self.backoff.next_wait()
        loop = asyncio.get_running_loop()
        if wait > 0:
            loop.call_later(wait, self.attempt_once)
        else:
            loop.call_soon(self.attempt_once)


class _Attempt:
    """The writer of an attempt that is not the last: passes its response on, or drops it."""

    __slots__ = ("dropped", "dropping", "run", "started", "status")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.dropping = False
        self.started = time.monotonic()
        self.status = 0
        self.dropped = 0  # body bytes dropped

    def start(self, head: ResponseHead) -> None:
        if self.run.retries(head):
            self.dropping = True
            self.status = head.status
        else:
            self.run.writer.start(head)

    def write(self, chunk: bytes) -> None:
        if self.dropping:
            self.dropped += len(chunk)
        else:
            self.run.writer.write(chunk)

    def end(self) -> None:
        if self.dropping:
            self.run.again(self.status, self.dropped, self.started)
        else:
            self.run.writer.end()

    def abort(self) -> None:
        if self.dropping:
            self.run.again(self.status, self.dropped, self.started)
        else:
            self.run.writer.abort()


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(RetryOptions, options)
    if not config.status and config.disable_retry_on_network_error:
        raise MiddlewareError("with disableRetryOnNetworkError there is nothing left to retry "
                              "on; set status (e.g. [\"503\"]) or let network errors retry")
    if config.attempts <= 0:
        raise MiddlewareError(f"attempts must be 1 or more (got {config.attempts}); it counts "
                              "the first try, so attempts: 3 sends a request at most 3 times")
    statuses = code_ranges(config.status)
    return lambda next_handler: Retry(config, statuses, next_handler)
