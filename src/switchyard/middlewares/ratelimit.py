"""rateLimit (an addition for TCP): new connections per source, from Traefik's token buckets.

The buckets and their arithmetic are the HTTP rateLimit's (switchyard.tokenbucket): ``burst``
at once, ``average`` per ``period``, a connection short of a token waits for it up to
``1/(2 * rate)`` and is refused past that. In memory they belong to one instance of the
middleware (one per router, as Traefik keeps an HTTP rateLimit's); with ``redis`` they live in
Redis under the middleware's name, shared by every router and every Switchyard using it.

Taking a token may wait (for Redis, or for the token), so the routing decision does not: the
connection asks `admit` once routed, before its server is dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from switchyard.middlewares.base import Admissible
from switchyard.tokenbucket import Limits, MemoryBuckets, RedisBuckets, RedisConnection

if TYPE_CHECKING:
    from switchyard.config.dynamic import RateLimit as RateLimitConfig

__all__ = ["RateLimit", "build_rate_limit", "source_key"]

log = logging.getLogger("switchyard.middlewares")


def source_key(client_ip: str, ipv6_subnet: int | None) -> str:
    """The bucket a client IP counts in: itself, or its IPv6 subnet's first address."""
    if ipv6_subnet is None or ":" not in client_ip:
        return client_ip
    try:
        network = ipaddress.ip_network(f"{client_ip}/{ipv6_subnet}", strict=False)
    except ValueError:
        return client_ip
    return str(network.network_address)


class RateLimit:
    """Refuses a source's connection when its token is further away than the longest wait.

    When Redis cannot be reached the connection is refused, as Traefik answers an HTTP request
    500 then: a limit that cannot be checked is not waived. ``average: 0`` is no limit, with
    or without Redis.
    """

    __slots__ = ("average", "buckets", "burst", "failing", "ipv6_subnet", "limits", "name",
                 "period", "redis")
    kind = "rateLimit"

    def __init__(self, name: str, average: int, period: float, burst: int, *,
                 ipv6_subnet: int | None = None, redis: RedisBuckets | None = None) -> None:
        self.name = name
        self.average, self.period, self.burst = average, period or 1.0, max(burst, 1)
        self.limits = Limits(average, period, burst)
        self.ipv6_subnet = ipv6_subnet
        self.buckets = MemoryBuckets(self.limits)
        self.redis = redis
        self.failing = False

    def describe(self) -> str:
        where = "in Redis, shared by every instance" if self.redis else "in memory"
        return f"{self.average} per {self.period:g}s, burst {self.burst}, {where}"

    def refusal(self, client_ip: str) -> str | None:
        return None  # a token is taken (and maybe waited for) by `admit`, once routed

    def enter(self, conn: Admissible) -> None:
        pass

    async def admit(self, client_ip: str) -> str | None:
        """None to let the connection through (after its wait), else why it is refused."""
        limits = self.limits
        if limits.unlimited:
            return None
        source = source_key(client_ip, self.ipv6_subnet)
        if self.redis is None:
            delay = self.buckets.reserve(source, time.monotonic())
        else:
            from redis.exceptions import RedisError  # loaded with the client: Redis is in use

            try:
                delay = await self.redis.reserve(source)
            except (RedisError, OSError, ValueError) as exc:
                if not self.failing:
                    self.failing = True
                    log.error('middleware "%s": cannot reach the rate limit buckets in Redis '
                              "(%s); connections are refused until it is back", self.name, exc)
                return f"rate limit store unreachable ({exc or type(exc).__name__}), {self.name}"
            if self.failing:
                self.failing = False
                log.warning('middleware "%s": Redis answers again', self.name)
        if delay > limits.max_delay:
            return (f"rate limit exceeded for {source} ({self.average} per {self.period:g}s, "
                    f"burst {self.burst}, {self.name})")
        if delay > 0:
            await asyncio.sleep(delay)
        return None


def build_rate_limit(name: str, config: RateLimitConfig) -> RateLimit:
    """ValueError for a ``redis`` block that cannot be used (the message names the key)."""
    strategy = config.source_criterion.ip_strategy if config.source_criterion else None
    redis = None
    if config.redis is not None:
        limits = Limits(config.average, config.period, config.burst)
        redis = RedisBuckets(limits, RedisConnection.from_options(config.redis), name)
    return RateLimit(name, config.average, config.period, config.burst,
                     ipv6_subnet=strategy.ipv6_subnet if strategy is not None else None,
                     redis=redis)
