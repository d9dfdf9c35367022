"""The pure parts of the admission middlewares: address picking and token buckets."""

from __future__ import annotations

import ipaddress
import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareError
from switchyard.http.middlewares.ratelimit import Limits, MemoryBuckets
from switchyard.http.middlewares.sourcecriterion import (
    IPStrategyOptions,
    SourceCriterionOptions,
    ip_strategy,
    ipv6_subnet_address,
    request_host,
    source_extractor,
)


def _exchange(client_ip: str = "192.0.2.9", target: bytes = b"/",
              **headers: str) -> Any:
    fields = Headers((name.replace("_", "-").encode(), value.encode())
                     for name, value in headers.items())
    request = SimpleNamespace(target=target, headers=fields,
                              host=(fields.get(b"host") or b"").decode())
    return SimpleNamespace(request=request, info=SimpleNamespace(client_ip=client_ip))


def _strategy(**options: Any) -> Any:
    return ip_strategy(IPStrategyOptions.model_validate(options))


# -- ipStrategy ----------------------------------------------------------------------------------


@given(st.ip_addresses(v=6), st.integers(1, 128))
def test_ipv6_subnet_address_is_the_first_address_of_the_subnet(
        address: ipaddress.IPv6Address, bits: int) -> None:
    folded = ipv6_subnet_address(str(address), bits)
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    assert ipaddress.ip_address(folded) == network.network_address
    assert ipv6_subnet_address(folded, bits) == folded


def test_ipv6_subnet_leaves_ipv4_and_garbage_alone_and_writes_mapped_as_go() -> None:
    assert ipv6_subnet_address("10.1.2.3", 8) == "10.1.2.3"
    assert ipv6_subnet_address("not-an-ip", 64) == "not-an-ip"
    assert ipv6_subnet_address("::ffff:10.1.2.3", 128) == "::ffff:10.1.2.3"
    assert ipv6_subnet_address("2001:db8::1%eth0", 64) == "2001:db8::"


def test_no_strategy_and_an_empty_one_take_the_peer() -> None:
    exchange = _exchange("198.51.100.7", x_forwarded_for="10.0.0.1")
    assert ip_strategy(None)(exchange) == "198.51.100.7"
    assert _strategy()(exchange) == "198.51.100.7"
    assert _strategy(ipv6Subnet=64)(_exchange("2001:db8::5")) == "2001:db8::"


def test_depth_and_excluded_ips_read_forwarded_for_from_the_right() -> None:
    exchange = _exchange(x_forwarded_for=" 1.1.1.1 ,2.2.2.2,  3.3.3.3")
    assert [_strategy(depth=d)(exchange) for d in (1, 2, 3, 4)] == [
        "3.3.3.3", "2.2.2.2", "1.1.1.1", ""]
    assert _strategy(excludedIPs=["3.3.3.3", "2.2.2.0/24"])(exchange) == "1.1.1.1"
    assert _strategy(excludedIPs=["0.0.0.0/0"])(exchange) == ""
    assert _strategy(depth=1, excludedIPs=["3.3.3.3"])(exchange) == "3.3.3.3"
    assert _strategy(depth=1)(_exchange()) == ""  # no header: an empty address


def test_bad_strategies_name_the_key() -> None:
    with pytest.raises(MiddlewareError, match="excludedIPs"):
        _strategy(excludedIPs=["300.1.1.1"])
    with pytest.raises(MiddlewareError, match="ipv6Subnet.*0"):
        _strategy(ipv6Subnet=0)
    # excludedIPs wins over ipv6Subnet in Traefik, so a bad subnet then goes unnoticed.
    assert _strategy(excludedIPs=["10.0.0.1"], ipv6Subnet=999) is not None


# -- sourceCriterion -----------------------------------------------------------------------------

BY_PEER = SourceCriterionOptions.model_validate({"ipStrategy": {}})


def _criterion(**options: Any) -> Any:
    return source_extractor(SourceCriterionOptions.model_validate(options), default=BY_PEER)


def test_source_criteria_group_by_header_host_or_address() -> None:
    exchange = _exchange("192.0.2.1", host="app.test:8080", x_tenant="acme")
    assert _criterion(requestHeaderName="x-TENANT")(exchange) == "acme"
    assert _criterion(requestHeaderName="X-Missing")(exchange) == ""
    assert _criterion(requestHeaderName="Host")(exchange) == ""  # Go keeps Host apart
    assert _criterion(requestHost=True)(exchange) == "app.test:8080"
    assert _criterion()(exchange) == "192.0.2.1"
    assert source_extractor(None, default=BY_PEER)(exchange) == "192.0.2.1"


def test_only_one_criterion_at_a_time() -> None:
    with pytest.raises(MiddlewareError, match="ipStrategy and requestHost are mutually"):
        _criterion(ipStrategy={"depth": 1}, requestHost=True)


def test_request_host_of_an_absolute_target_is_its_authority() -> None:
    request = _exchange(target=b"http://abs.test:81/x?y", host="other.test").request
    assert request_host(request) == "abs.test:81"
    assert request_host(_exchange(host="plain.test").request) == "plain.test"


# -- token buckets -------------------------------------------------------------------------------


@pytest.mark.parametrize(("average", "period", "burst", "rate", "max_delay", "ttl"), [
    (0, 1.0, 1, math.inf, 0.0, 2),
    (-5, 1.0, 0, math.inf, 0.0, 2),
    (100, 1.0, 0, 100.0, 0.005, 2),
    (3, 1.0, 1, 3.0, 0.166666666, 2),
    (1, 60.0, 5, 1 / 60, 0.5, 61),
    (1, 0.0, 1, 1.0, 0.5, 2),  # period 0 is a second
])
def test_limits_derive_as_traefik(average: int, period: float, burst: int, rate: float,
                                  max_delay: float, ttl: int) -> None:
    limits = Limits(average, period, burst)
    assert limits.rate == pytest.approx(rate)
    assert limits.max_delay == pytest.approx(max_delay)
    assert limits.ttl == ttl
    assert limits.burst == max(burst, 1)


def test_a_bucket_gives_its_burst_then_refuses_then_refills() -> None:
    buckets = MemoryBuckets(Limits(10, 1.0, 3))
    assert [buckets.reserve("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.reserve("a", 100.0) == pytest.approx(0.1)  # refused; token given back
    assert buckets.reserve("a", 100.0) == pytest.approx(0.1)
    assert buckets.reserve("a", 100.06) == pytest.approx(0.04)  # short wait: admitted
    assert buckets.reserve("b", 100.06) == 0.0  # another source, another bucket


def test_an_idle_bucket_expires_and_starts_full() -> None:
    buckets = MemoryBuckets(Limits(1, 60.0, 2))  # ttl 61 s, refilling one token a minute
    buckets.reserve("a", 1000.0)
    buckets.reserve("a", 1000.0)
    assert buckets.reserve("a", 1000.0) > 0.5
    assert buckets.reserve("a", 1061.5) == 0.0
    assert buckets.reserve("a", 1061.5) == 0.0  # full again, not just one token back


def test_a_full_table_forgets_the_stalest_source() -> None:
    buckets = MemoryBuckets(Limits(1, 60.0, 1), capacity=2)
    buckets.reserve("a", 10.0)
    buckets.reserve("b", 10.0)
    buckets.reserve("c", 10.0)
    assert set(buckets.buckets) == {"b", "c"}


@given(st.lists(st.floats(0, 0.99, allow_nan=False), max_size=60),
       st.integers(1, 5), st.integers(1, 20))
def test_admitted_requests_never_exceed_burst_plus_refill(
        gaps: list[float], burst: int, average: int) -> None:
    # Gaps under a second never let a bucket expire (which would refill it early, as Traefik's
    # do): then a source gets at most its burst plus what refills over the window.
    limits = Limits(average, 1.0, burst)
    buckets = MemoryBuckets(limits)
    now, admitted = 1000.0, []
    for gap in gaps:
        now += gap
        if buckets.reserve("s", now) <= limits.max_delay:
            admitted.append(now)
    if admitted:
        window = admitted[-1] - admitted[0]
        assert len(admitted) <= burst + limits.rate * (window + limits.max_delay) + 1e-9
