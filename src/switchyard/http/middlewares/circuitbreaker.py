"""`circuitBreaker`: stops sending requests to a service while its trip condition holds.

The state machine is the one Traefik takes from vulcand/oxy. In **standby** every request goes
through and its status and latency are recorded over a rolling window; at most once per
``checkPeriod`` (on a response) the expression (switchyard.http.middlewares.cbexpr) is
evaluated, and when it holds the breaker is **tripped**: the window is cleared and, for
``fallbackDuration``, every request is answered ``responseCode`` with the status text as body.
Then it is **recovering** for ``recoveryDuration``: a growing share of requests goes through
(``0.5 * elapsed / recoveryDuration`` of them, so the first one after the trip is still refused),
and a condition that holds again trips it at once; at the end of recovery it is back in standby.

What is measured, as oxy measures it: requests and 502/504 answers (the network errors) in ten
one-second buckets, status codes likewise, latencies in microseconds at two significant digits
in six ten-second histograms rotated as requests come. The breaker lives per router.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from switchyard.config.durations import Duration
from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler, ResponseWriter
from switchyard.http.message import Headers, reason
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.cbexpr import Condition, ExpressionError, parse

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import ResponseHead

__all__ = ["Breaker", "CircuitBreakerOptions", "RollingMetrics", "build"]

STANDBY, TRIPPED, RECOVERING = "standby", "tripped", "recovering"
_DEFAULT_CHECK_PERIOD = 0.1
_DEFAULT_FALLBACK = 10.0
_DEFAULT_RECOVERY = 10.0
_CLIENT_CLOSED = 499  # what Traefik's proxy writes (and the breaker records) when the client left

_COUNTER_BUCKETS = 10  # seconds
_HISTOGRAMS = 6
_HISTOGRAM_PERIOD = 10.0
_HISTOGRAM_MAX_US = 3_600_000_000  # an hour: longer latencies are not recorded


class CircuitBreakerOptions(TraefikModel):
    expression: str = ""
    check_period: Duration = _DEFAULT_CHECK_PERIOD
    fallback_duration: Duration = _DEFAULT_FALLBACK
    recovery_duration: Duration = _DEFAULT_RECOVERY
    response_code: int = 503

    @field_validator("response_code")
    @classmethod
    def _status(cls, value: int) -> int:
        if not 100 <= value <= 999:
            raise ValueError(f"{value} is not an HTTP status code; use one from 100 to 999, "
                             "e.g. 503")
        return value


# -- what is measured --------------------------------------------------------------------------

class _RollingCounter:
    """Counts over the last ten whole seconds (oxy's RollingCounter)."""

    __slots__ = ("last", "values")

    def __init__(self) -> None:
        self.values = [0] * _COUNTER_BUCKETS
        self.last: int | None = None  # the second of the last increment

    def _cleanup(self, second: int) -> None:
        last = self.last
        if last is None or second <= last:
            return
        if second - last >= _COUNTER_BUCKETS:
            self.values = [0] * _COUNTER_BUCKETS
            return
        for passed in range(last + 1, second + 1):
            self.values[passed % _COUNTER_BUCKETS] = 0

    def inc(self, second: int) -> None:
        self._cleanup(second)
        self.values[second % _COUNTER_BUCKETS] += 1
        self.last = second

    def count(self, second: int) -> int:
        self._cleanup(second)
        return sum(self.values)


def _equivalent_range(micros: int) -> tuple[int, int]:
    """The (lowest, highest) value an HDR histogram with two significant digits stores
    ``micros`` as: exact below 256, then in steps that double with each power of two."""
    shift = max((micros | 255).bit_length() - 8, 0)
    lowest = (micros >> shift) << shift
    return lowest, lowest + (1 << shift) - 1


class RollingMetrics:
    """A breaker's window: totals, network errors, status codes and latencies.

    Implements cbexpr.Metrics. ``clock`` gives seconds (monotonic).
    """

    __slots__ = ("_clock", "_codes", "_histograms", "_index", "_last_roll", "_net", "_total")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._total = _RollingCounter()
        self._net = _RollingCounter()
        self._codes: dict[int, _RollingCounter] = {}
        self._histograms: list[dict[int, int]] = [{} for _ in range(_HISTOGRAMS)]
        self._index = 0
        self._last_roll = self._clock()

    def record(self, status: int, latency: float) -> None:
        now = self._clock()
        second = math.floor(now)
        self._total.inc(second)
        if status in (502, 504):
            self._net.inc(second)
        counter = self._codes.get(status)
        if counter is None:
            counter = self._codes[status] = _RollingCounter()
        counter.inc(second)
        micros = int(latency * 1_000_000)
        if 0 <= micros <= _HISTOGRAM_MAX_US:
            if now - self._last_roll >= _HISTOGRAM_PERIOD:
                # One step per recorded request, however long the pause was (as oxy rotates).
                self._index = (self._index + 1) % _HISTOGRAMS
                self._histograms[self._index] = {}
                self._last_roll = now
            histogram = self._histograms[self._index]
            lowest = _equivalent_range(micros)[0]
            histogram[lowest] = histogram.get(lowest, 0) + 1

    # -- cbexpr.Metrics ----------------------------------------------------------------------

    def network_error_ratio(self) -> float:
        second = math.floor(self._clock())
        total = self._total.count(second)
        return self._net.count(second) / total if total else 0.0

    def response_code_ratio(self, start_a: int, end_a: int, start_b: int, end_b: int) -> float:
        second = math.floor(self._clock())
        a = b = 0
        for code, counter in self._codes.items():
            count = counter.count(second)
            if start_a <= code < end_a:
                a += count
            if start_b <= code < end_b:
                b += count
        return a / b if b else 0.0

    def latency_at_quantile_ms(self, quantile: float) -> int:
        merged: dict[int, int] = {}
        for histogram in self._histograms:
            for value, count in histogram.items():
                merged[value] = merged.get(value, 0) + count
        total = sum(merged.values())
        quantile = min(quantile, 100.0)
        wanted = int(quantile / 100 * total + 0.5)
        if wanted <= 0:
            return 0
        seen = 0
        for value in sorted(merged):
            seen += merged[value]
            if seen >= wanted:
                low, high = _equivalent_range(value)
                return (low if quantile == 0 else high) // 1000
        return 0


# -- the state machine ---------------------------------------------------------------------------

class Breaker:
    """Standby, tripped, recovering (see the module docstring); the clock is injectable."""

    __slots__ = ("_allowed", "_clock", "_denied", "_last_check", "_recovery_start",
                 "check_period", "condition", "fallback_duration", "metrics",
                 "recovery_duration", "state", "until")

    def __init__(self, condition: Condition, *, check_period: float = _DEFAULT_CHECK_PERIOD,
                 fallback_duration: float = _DEFAULT_FALLBACK,
                 recovery_duration: float = _DEFAULT_RECOVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.condition = condition
        self.check_period = check_period
        self.fallback_duration = fallback_duration
        self.recovery_duration = recovery_duration
        self._clock = clock
        self.metrics = RollingMetrics(clock)
        self.state = STANDBY
        self.until = 0.0
        self._last_check = -math.inf
        self._recovery_start = 0.0
        self._allowed = self._denied = 0

    def allows(self) -> bool:
        """Whether this request may go to the service (False: answer with the fallback)."""
        if self.state == STANDBY:
            return True
        now = self._clock()
        if self.state == TRIPPED:
            if now < self.until:
                return False
            self.state, self.until = RECOVERING, now + self.recovery_duration
            self._recovery_start, self._allowed, self._denied = now, 0, 0
        if now > self.until:
            self.state = STANDBY
            return True
        # Would letting this one through keep the share at or under the target? Then let it.
        target = 0.5 * (now - self._recovery_start) / self.recovery_duration
        if (self._allowed + 1) / (self._allowed + 1 + self._denied) < target:
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def record(self, status: int, latency: float) -> None:
        """A request that went through got ``status`` after ``latency`` seconds."""
        self.metrics.record(status, latency)
        now = self._clock()
        if now <= self._last_check:
            return
        self._last_check = now + self.check_period
        if self.state == TRIPPED or not self.condition.evaluate(self.metrics):
            return
        self.state, self.until = TRIPPED, now + self.fallback_duration
        self.metrics.reset()


# -- the handler -------------------------------------------------------------------------------

class _Watch:
    """The writer in front of the service: notes the status, records when the answer is over."""

    __slots__ = ("breaker", "done", "inner", "started", "status")

    def __init__(self, breaker: Breaker, inner: ResponseWriter, started: float) -> None:
        self.breaker = breaker
        self.inner = inner
        self.started = started
        self.status = 0
        self.done = False

    def start(self, head: ResponseHead) -> None:
        if not self.status:
            self.status = head.status
        self.inner.start(head)

    def write(self, chunk: bytes) -> None:
        self.inner.write(chunk)

    def end(self) -> None:
        self.finished()
        self.inner.end()

    def abort(self) -> None:
        self.finished()
        self.inner.abort()

    def finished(self) -> None:
        if not self.done:
            self.done = True
            self.breaker.record(self.status or _CLIENT_CLOSED, time.monotonic() - self.started)


class CircuitBreaker:
    __slots__ = ("body", "breaker", "headers", "next", "response_code")

    def __init__(self, breaker: Breaker, response_code: int, next_handler: Handler) -> None:
        self.breaker = breaker
        self.response_code = response_code
        self.body = reason(response_code).encode("latin-1")  # "" for a code Go does not name
        self.headers = Headers()  # Traefik sends the text without a Content-Type
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if not self.breaker.allows():
            exchange.respond(self.response_code, self.headers, self.body)
            return
        watch = _Watch(self.breaker, exchange.writer, time.monotonic())
        exchange.writer = watch
        exchange.on_finish(watch.finished)  # the client left before any answer: 499
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(CircuitBreakerOptions, options)
    try:
        condition = parse(config.expression)
    except ExpressionError as exc:
        raise MiddlewareError(f"expression {config.expression!r}: {exc}") from None

    def wrap(next_handler: Handler) -> Handler:
        # Traefik keeps its defaults for a period that is zero or negative.
        breaker = Breaker(
            condition,
            check_period=config.check_period if config.check_period > 0
            else _DEFAULT_CHECK_PERIOD,
            fallback_duration=config.fallback_duration if config.fallback_duration > 0
            else _DEFAULT_FALLBACK,
            recovery_duration=config.recovery_duration if config.recovery_duration > 0
            else _DEFAULT_RECOVERY)
        return CircuitBreaker(breaker, config.response_code, next_handler)

    return wrap

