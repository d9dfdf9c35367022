"""rateLimit (an addition for TCP): new connections per source, from a token bucket.

In memory the buckets belong to one instance of the middleware (one per router, as Traefik keeps
an HTTP rateLimit's), and the decision reads them like any other middleware. With ``redis`` they
live in Redis, shared by every router and every Switchyard using the middleware's name; such a
limit can only be asked asynchronously, so the connection asks it after the routing decision
and before dialling (``admit``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import weakref
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from switchyard.middlewares.base import Admissible
from switchyard.tokenbucket import Rate, RedisBuckets, TokenBuckets

if TYPE_CHECKING:
    from switchyard.config.dynamic import RateLimit as RateLimitConfig
    from switchyard.config.dynamic import Redis

__all__ = ["RateLimit", "SharedRateLimit", "build_rate_limit"]

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
    """Refuses a source's connection once its bucket is empty; a connection let in spends a token."""

    __slots__ = ("buckets", "ipv6_subnet", "name")
    kind = "rateLimit"

    def __init__(self, name: str, rate: Rate, ipv6_subnet: int | None = None) -> None:
        self.name = name
        self.ipv6_subnet = ipv6_subnet
        self.buckets = TokenBuckets(rate)

    @property
    def rate(self) -> Rate:
        return self.buckets.rate

    def refusal(self, client_ip: str) -> str | None:
        source = source_key(client_ip, self.ipv6_subnet)
        if self.buckets.available(source):
            return None
        return f"rate limit exceeded for {source} ({self.rate.describe()}, {self.name})"

    def enter(self, conn: Admissible) -> None:
        self.buckets.take(source_key(conn.client_ip, self.ipv6_subnet))


# One Redis client per event loop and server settings, shared by the middleware's instances
# and kept across reloads (a client belongs to the loop it first ran on).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], RedisBuckets]] \
    = weakref.WeakKeyDictionary()


class SharedRateLimit:
    """The same limit with its buckets in Redis; the decision leaves it to ``admit``.

    When Redis cannot be reached the connection is refused, as Traefik answers an HTTP
    request 500 then: a limit that cannot be checked is not waived.
    """

    __slots__ = ("_settings", "ipv6_subnet", "name", "rate")
    kind = "rateLimit"
    KEY_PREFIX = "switchyard:tcp:ratelimit:"

    def __init__(self, name: str, rate: Rate, redis: Redis, ipv6_subnet: int | None = None
                 ) -> None:
        if not redis.endpoints:
            raise ValueError("redis.endpoints is empty: give the Redis server as host:port")
        self.name = name
        self.rate = rate
        self.ipv6_subnet = ipv6_subnet
        tls = None
        if redis.tls is not None:
            tls = {"ssl_ca_certs": redis.tls.ca or None, "ssl_certfile": redis.tls.cert or None,
                   "ssl_keyfile": redis.tls.key or None,
                   "ssl_cert_reqs": "none" if redis.tls.insecure_skip_verify else "required"}
        self._settings: tuple[Any, ...] = (
            redis.endpoints[0], redis.username, redis.password, redis.db, redis.dial_timeout,
            redis.read_timeout, redis.max_active_conns or redis.pool_size,
            tuple(sorted(tls.items())) if tls else None)

    def refusal(self, client_ip: str) -> str | None:
        return None  # asked in Redis by `admit`, once the connection is routed

    def enter(self, conn: Admissible) -> None:
        pass

    def _buckets(self) -> RedisBuckets:
        per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
        key = (self.name, self.rate, *self._settings)
        found = per_loop.get(key)
        if found is None:
            endpoint, username, password, db, dial, read, pool, tls = self._settings
            found = per_loop[key] = RedisBuckets.connect(
                self.rate, f"{self.KEY_PREFIX}{self.name}:", endpoint=endpoint,
                username=username, password=password, db=db, dial_timeout=dial,
                read_timeout=read, max_connections=pool, tls=dict(tls) if tls else None)
        return found

    async def admit(self, client_ip: str) -> str | None:
        """None to let the connection through, else why it is refused."""
        source = source_key(client_ip, self.ipv6_subnet)
        try:
            taken = await self._buckets().take(source)
        except (RedisError, OSError) as exc:  # timeouts are OSErrors
            log.error('middleware "%s": Redis did not answer: %s', self.name, exc)
            return f"rate limit store unreachable ({exc or type(exc).__name__}), {self.name}"
        if taken:
            return None
        return f"rate limit exceeded for {source} ({self.rate.describe()}, {self.name})"


def build_rate_limit(name: str, config: RateLimitConfig) -> RateLimit | SharedRateLimit:
    rate = Rate.of(config.average, config.period, config.burst)
    strategy = config.source_criterion.ip_strategy if config.source_criterion else None
    subnet = strategy.ipv6_subnet if strategy is not None else None
    if config.redis is not None:
        return SharedRateLimit(name, rate, config.redis, subnet)
    return RateLimit(name, rate, subnet)
