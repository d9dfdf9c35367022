"""Token buckets: average per period plus burst, by a clock the test moves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchyard.middlewares.ratelimit import source_key
from switchyard.tokenbucket import MAX_SOURCES, Rate, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_source_gets_burst_then_average_per_period() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate.of(2, 10.0, 3), clock)
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b")  # sources do not share
    clock.now = 4.9
    assert not buckets.available("a")  # 2 per 10 s: one token every 5 s
    clock.now = 5.0
    assert buckets.take("a") and not buckets.take("a")


def test_traefik_defaults_burst_one_period_one_second_average_zero_unlimited() -> None:
    assert Rate.of(1, 0, 0) == Rate(1, 1.0, 1)
    unlimited = TokenBuckets(Rate.of(0, 1.0, 1), Clock())
    assert all(unlimited.take("a") for _ in range(100))
    assert unlimited.sources() == 0


def test_available_only_looks() -> None:
    buckets = TokenBuckets(Rate.of(1, 1.0, 1), Clock())
    assert buckets.available("a") and buckets.available("a")
    assert buckets.take("a") and not buckets.available("a")


def test_the_number_of_sources_is_capped_least_recent_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate.of(1, 3600.0, 1), clock)
    for index in range(MAX_SOURCES + 5):
        buckets.take(str(index))
    assert buckets.sources() == MAX_SOURCES
    assert buckets.available("0")  # forgotten, so full again
    assert not buckets.available(str(MAX_SOURCES + 4))


@given(average=st.integers(1, 20), period=st.sampled_from([0.5, 1.0, 10.0]),
       burst=st.integers(1, 10),
       gaps=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=80))
def test_never_more_than_burst_plus_the_rate_over_any_stretch(
        average: int, period: float, burst: int, gaps: list[float]) -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate.of(average, period, burst), clock)
    admitted = []
    for gap in gaps:
        clock.now += gap
        if buckets.take("a"):
            admitted.append(clock.now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            window = admitted[j] - start
            assert j - i + 1 <= burst + window * average / period + 1e-9


def test_ipv6_sources_fold_onto_their_subnet_ipv4_ones_stay() -> None:
    assert source_key("2001:db8::1:2", 64) == "2001:db8::"
    assert source_key("2001:db8::1:2", None) == "2001:db8::1:2"
    assert source_key("192.0.2.7", 64) == "192.0.2.7"
