"""The circuit breaker's state machine and rolling window, on a clock the test moves."""

from __future__ import annotations

import pytest

from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError
from switchyard.http.middlewares.cbexpr import parse
from switchyard.http.middlewares.circuitbreaker import (
    RECOVERING,
    STANDBY,
    TRIPPED,
    Breaker,
    RollingMetrics,
    build,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def breaker(expression: str, clock: Clock, **periods: float) -> Breaker:
    return Breaker(parse(expression), clock=clock, **periods)


def test_trips_on_the_first_check_that_holds_and_clears_the_window() -> None:
    clock = Clock()
    cb = breaker("NetworkErrorRatio() > 0.5", clock)
    cb.record(502, 0.001)  # first response: checked at once, 1/1 network errors
    assert cb.state == TRIPPED
    assert cb.metrics.network_error_ratio() == 0.0
    assert not cb.allows()


def test_checks_at_most_once_per_check_period() -> None:
    clock = Clock()
    cb = breaker("NetworkErrorRatio() > 0.5", clock, check_period=1.0)
    cb.record(200, 0.001)  # checked: 0/1
    cb.record(502, 0.001)
    cb.record(502, 0.001)  # 2/3 but not checked again within the period
    assert cb.state == STANDBY
    clock.now += 1.01
    cb.record(502, 0.001)
    assert cb.state == TRIPPED


def test_fallback_then_recovery_lets_a_growing_share_through_then_standby() -> None:
    clock = Clock()
    cb = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5", clock,
                 fallback_duration=10.0, recovery_duration=10.0)
    cb.record(500, 0.001)
    assert cb.state == TRIPPED
    clock.now += 9.9
    assert not cb.allows()
    clock.now += 0.2
    assert not cb.allows()  # entering recovery: the first request is still refused
    assert cb.state == RECOVERING
    passed = 0
    for _ in range(100):
        clock.now += 0.05  # through the first half of the recovery
        passed += cb.allows()
    assert 5 < passed < 30  # the share grows from 0 towards 0.25 over 5 s
    clock.now += 5.1  # past the recovery's end
    assert cb.allows()
    assert cb.state == STANDBY


def test_condition_holding_again_while_recovering_trips_at_once() -> None:
    clock = Clock()
    cb = breaker("NetworkErrorRatio() > 0.5", clock, fallback_duration=1.0)
    cb.record(504, 0.001)
    clock.now += 1.5
    cb.allows()
    assert cb.state == RECOVERING
    clock.now += 0.2
    cb.record(502, 0.001)
    assert cb.state == TRIPPED
    assert cb.until == pytest.approx(clock.now + 1.0)


def test_counters_keep_ten_whole_seconds() -> None:
    clock = Clock(2000.2)
    metrics = RollingMetrics(clock)
    metrics.record(502, 0.0)
    clock.now = 2005.0
    metrics.record(200, 0.0)
    assert metrics.network_error_ratio() == 0.5
    clock.now = 2009.9
    assert metrics.network_error_ratio() == 0.5
    clock.now = 2010.0  # second 2000 has left the window
    assert metrics.network_error_ratio() == 0.0
    clock.now = 2015.0
    assert metrics.response_code_ratio(200, 300, 0, 600) == 0.0


def test_response_code_ratio_is_zero_without_a_denominator() -> None:
    metrics = RollingMetrics(Clock())
    metrics.record(500, 0.0)
    assert metrics.response_code_ratio(500, 600, 200, 300) == 0.0
    metrics.record(200, 0.0)
    assert metrics.response_code_ratio(500, 600, 200, 300) == 1.0
    assert metrics.response_code_ratio(500, 600, 0, 600) == 0.5


def test_latency_quantiles_in_whole_milliseconds() -> None:
    metrics = RollingMetrics(Clock())
    assert metrics.latency_at_quantile_ms(50.0) == 0
    for ms in (10, 20, 30, 40, 250):
        metrics.record(200, ms / 1000)
    assert metrics.latency_at_quantile_ms(50.0) == 30
    assert metrics.latency_at_quantile_ms(100.0) == 250  # within 1 % (two digits)
    assert metrics.latency_at_quantile_ms(0.0) == 0  # rounds to no request: 0


@pytest.mark.parametrize(("options", "says"), [
    ({}, "expression '': the expression is empty"),
    ({"expression": "NetworkErrorRatio() > 1"}, "needs a float"),
    ({"expression": "NetworkErrorRatio() > 0.5", "responseCode": 0}, "100 to 999"),
    ({"expression": "NetworkErrorRatio() > 0.5", "checkPeriod": "soon"}, "checkPeriod"),
])
def test_bad_options_are_refused(options: dict[str, object], says: str) -> None:
    with pytest.raises(MiddlewareError) as error:
        build(options, MiddlewareContext(name="cb@file", provider="file"))
    assert says in str(error.value)
