"""The TCP rateLimit's own parts: sources, and waiting for a token as Traefik waits."""

from __future__ import annotations

import asyncio
import time

from switchyard.middlewares.ratelimit import RateLimit, source_key


def test_ipv6_sources_fold_onto_their_subnet_ipv4_ones_stay() -> None:
    assert source_key("2001:db8::1:2", 64) == "2001:db8::"
    assert source_key("2001:db8::1:2", None) == "2001:db8::1:2"
    assert source_key("192.0.2.7", 64) == "192.0.2.7"


def test_a_token_within_the_longest_wait_is_waited_for_further_ones_refuse() -> None:
    async def run() -> list[tuple[str | None, float]]:
        limit = RateLimit("r", average=10, period=1.0, burst=1)  # longest wait: 1/(2*10) s
        found = []
        for pause in (0.0, 0.06, 0.0):
            await asyncio.sleep(pause)
            started = time.monotonic()
            found.append((await limit.admit("10.0.0.1"), time.monotonic() - started))
        return found

    (first, waited_first), (second, waited_second), (third, _) = asyncio.run(run())
    assert first is None and waited_first < 0.01
    assert second is None and 0.02 < waited_second < 0.06  # its token was 40 ms away
    assert third is not None and "rate limit exceeded for 10.0.0.1" in third


def test_average_zero_is_no_limit() -> None:
    async def run() -> list[str | None]:
        limit = RateLimit("r", average=0, period=1.0, burst=1)
        return [await limit.admit("10.0.0.1") for _ in range(50)]

    assert asyncio.run(run()) == [None] * 50
