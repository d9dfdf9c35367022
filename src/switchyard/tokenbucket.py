"""Token buckets per source: ``average`` per ``period`` with ``burst`` at once, in memory or in Redis.

No protocol here: the TCP rateLimit counts connections with it; an HTTP one could count requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["MAX_SOURCES", "Rate", "RedisBuckets", "TokenBuckets"]

#: How many sources are tracked at most in memory (Traefik's cap); the least recent go first.
MAX_SOURCES = 65536


@dataclass(frozen=True, slots=True)
class Rate:
    """``average`` tokens per ``period`` seconds, at most ``burst`` saved up (Traefik's rules:
    burst below 1 is 1, period 0 is one second, average 0 is no limit at all)."""

    average: int
    period: float
    burst: int

    @classmethod
    def of(cls, average: int, period: float, burst: int) -> Rate:
        return cls(max(average, 0), period if period > 0 else 1.0, max(burst, 1))

    @property
    def per_second(self) -> float:
        return self.average / self.period

    @property
    def unlimited(self) -> bool:
        return self.average == 0

    def describe(self) -> str:
        return f"{self.average} per {self.period:g}s, burst {self.burst}"


class TokenBuckets:
    """One bucket per source key; a new source starts with a full bucket.

    ``available`` only looks; ``take`` spends a token. Both refill first, by elapsed time.
    """

    __slots__ = ("_buckets", "_clock", "rate")

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return float(self.rate.burst)
        tokens, at = found
        return min(float(self.rate.burst), tokens + (now - at) * self.rate.per_second)

    def available(self, key: str) -> bool:
        return self.rate.unlimited or self._tokens(key, self._clock()) >= 1.0

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False (nothing spent) when it is empty."""
        if self.rate.unlimited:
            return True
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            return False
        buckets = self._buckets
        buckets.pop(key, None)  # re-inserted last: dict order is recency
        buckets[key] = (tokens - 1.0, now)
        if len(buckets) > MAX_SOURCES:
            del buckets[next(iter(buckets))]
        return True

    def sources(self) -> int:
        return len(self._buckets)


# The bucket lives in a Redis hash: tokens and the time they were counted at, by Redis's
# clock (instances' clocks never disagree). One script call per connection, atomic.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return taken
"""


class RedisBuckets:
    """The same buckets kept in Redis under ``prefix + key``, so every instance shares them."""

    def __init__(self, rate: Rate, client: redis.asyncio.Redis, prefix: str) -> None:
        self.rate = rate
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_TAKE)

    @classmethod
    def connect(cls, rate: Rate, prefix: str, *, endpoint: str, username: str = "",
                password: str = "", db: int = 0, dial_timeout: float = 5.0,
                read_timeout: float = 3.0, max_connections: int = 0,
                tls: dict[str, Any] | None = None) -> RedisBuckets:
        """A client for ``host:port`` (no connection is made until the first take).

        ``tls``: None for plain TCP, else redis-py's ``ssl_*`` options (files, verification).
        """
        import redis.asyncio
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, _, port = endpoint.rpartition(":")
        # One quick retry at most: a connection waits on the answer, and the default backs
        # off for seconds against a Redis that is down.
        options: dict[str, Any] = {"retry": Retry(NoBackoff(), 1)}
        if max_connections > 0:
            options["max_connections"] = max_connections
        if tls is not None:
            options.update(ssl=True, **tls)
        client = redis.asyncio.Redis(
            host=host.strip("[]") or "localhost", port=int(port or 6379), db=db,
            username=username or None, password=password or None,
            socket_connect_timeout=dial_timeout, socket_timeout=read_timeout, **options)
        return cls(rate, client, prefix)

    async def take(self, key: str) -> bool:
        """Spend one token; raises redis's errors (and TimeoutError) when Redis does not answer."""
        if self.rate.unlimited:
            return True
        result = await self._script(keys=[self.prefix + key],
                                    args=[repr(self.rate.per_second), self.rate.burst])
        return bool(int(result))

    async def close(self) -> None:
        await self._client.aclose()

