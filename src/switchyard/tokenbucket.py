"""Token buckets per source, in memory or in Redis, as Traefik's rateLimit keeps them.

No protocol here: the HTTP rateLimit counts requests with them, the TCP one connections. A
bucket holds up to ``burst`` tokens (at least 1) and refills at ``average / period`` tokens a
second; ``average: 0`` turns limiting off. Taking a token answers how long to wait for it;
waits over ``max_delay`` are refusals and give the token back. In Redis a bucket is the hash
``rate:<middleware>:<source>`` Traefik uses, read and updated by one Lua script.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from typing import Any

from switchyard.config.dynamic import Redis, RedisTLS
from switchyard.tls.certificates import (
    CertificateError,
    load_certificate,
    pem_bundle,
    read_certificates,
)

__all__ = ["BUCKET_SCRIPT", "MAX_SOURCES", "Limits", "MemoryBuckets", "RedisBuckets",
           "RedisConnection"]

#: How many sources one in-memory limiter remembers; past that the stalest is dropped.
MAX_SOURCES = 65536
_REDIS_PREFIX = "rate:"

# KEYS[1] is the bucket, a hash of `last` (microseconds) and `tokens`, as Traefik stores it.
# ARGV: tokens per microsecond, burst, time to live (s), now (us), longest wait (us).
# Returns the wait in microseconds; a wait over the longest gives its token back.
BUCKET_SCRIPT = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, longest = tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'last', 'tokens')
local last, tokens = tonumber(state[1]) or 0, tonumber(state[2]) or 0
if last > now then last = now end
tokens = math.min(tokens + (now - last) * rate, burst) - 1
local wait = 0
if tokens < 0 then
  wait = -tokens / rate
  if wait > longest then tokens = math.min(tokens + 1, burst) end
end
redis.call('HSET', KEYS[1], 'last', now, 'tokens', tokens)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""


class Limits:
    """The numbers every bucket of one middleware follows, derived as Traefik derives them."""

    __slots__ = ("burst", "max_delay", "rate", "ttl", "unlimited")

    def __init__(self, average: int, period: float, burst: int) -> None:
        self.burst = max(burst, 1)
        period = period or 1.0
        # Tokens a second; infinite when limiting is off.
        self.rate = average / period if average > 0 else math.inf
        if self.rate < 1:
            self.max_delay = 0.5  # 1/(2*rate) would let slow limits wait for seconds
        elif math.isinf(self.rate):
            self.max_delay = 0.0
        else:
            self.max_delay = (1_000_000_000 // (int(self.rate) * 2)) / 1e9
        # Slow buckets are kept for about the time one token takes, fast ones for a second,
        # plus a second either way.
        self.ttl = 2 if self.rate >= 1 else 1 + int(1 / self.rate)
        self.unlimited = math.isinf(self.rate)


class MemoryBuckets:
    """The buckets of one in-memory limiter, by source, stalest first."""

    __slots__ = ("buckets", "burst", "capacity", "limits")

    def __init__(self, limits: Limits, capacity: int = MAX_SOURCES) -> None:
        self.limits = limits
        self.capacity = capacity
        # A float like the tokens: Python's arithmetic and comparisons of two floats are its
        # fast ones, and this runs for every request (or connection) limited.
        self.burst = float(limits.burst)
        # source -> (tokens, last refill (monotonic s), expiry (whole s)); re-inserted on use,
        # so the dict's order is the order of expiry.
        self.buckets: dict[str, tuple[float, float, int]] = {}

    def reserve(self, source: str, now: float) -> float:
        """Take a token for ``source`` at ``now``: the seconds to wait for it (0: none)."""
        limits, buckets, burst = self.limits, self.buckets, self.burst
        second = int(now)
        bucket = buckets.pop(source, None)
        if bucket is None or bucket[2] <= second:
            while buckets:  # drop the expired, and the stalest when full
                stalest = next(iter(buckets))
                if buckets[stalest][2] > second and len(buckets) < self.capacity:
                    break
                del buckets[stalest]
            buckets[source] = (burst - 1.0, now, second + limits.ttl)
            return 0.0  # a full bucket (burst is at least 1)
        tokens, last, _ = bucket
        rate = limits.rate
        tokens += (now - last if now > last else 0.0) * rate
        # min(tokens, burst), written out: a call of the builtin costs about 1,100 machine
        # instructions in Python 3.11 (callgrind), a quarter of a whole reservation.
        if tokens > burst:  # noqa: PLR1730
            tokens = burst
        tokens -= 1.0
        delay = -tokens / rate if tokens < 0.0 else 0.0
        if delay > limits.max_delay:
            tokens = min(tokens + 1.0, burst)  # refused: the token goes back
        buckets[source] = (tokens, now, second + limits.ttl)
        return delay


class RedisBuckets:
    """Buckets kept in Redis; one client per event loop and connection settings."""

    __slots__ = ("connection", "limits", "prefix")

    def __init__(self, limits: Limits, connection: RedisConnection, name: str) -> None:
        self.limits = limits
        self.connection = connection
        self.prefix = f"{_REDIS_PREFIX}{name}:"

    async def reserve(self, source: str) -> float:
        """Seconds to wait for a token of ``source``; raises RedisError or OSError."""
        limits = self.limits
        script = self.connection.script()
        reply = await script(keys=[self.prefix + source], args=[
            repr(limits.rate / 1e6), limits.burst, limits.ttl, time.time_ns() // 1000,
            int(limits.max_delay * 1e6)])
        return float(reply) / 1e6


# -- Redis connections --------------------------------------------------------------------------


# Clients are shared by every limiter with the same settings on a loop, so that rebuilding the
# configuration does not open new pools. Their connections keep the loop alive, so clients of
# loops that have been closed are dropped when a new client is made.
_CLIENTS: dict[asyncio.AbstractEventLoop, dict[tuple[Any, ...], tuple[Any, Any]]] = {}


class RedisConnection:
    """How to reach the Redis of one ``redis`` option block (validated when built)."""

    __slots__ = ("key", "settings")

    def __init__(self, settings: dict[str, Any], key: tuple[Any, ...]) -> None:
        self.settings = settings
        self.key = key

    @classmethod
    def from_options(cls, options: Redis) -> RedisConnection:
        if not options.endpoints:
            raise ValueError("redis.endpoints: list the Redis address (host:port)")
        if len(options.endpoints) > 1:
            raise ValueError(
                "redis.endpoints: several endpoints make Traefik use Redis Cluster, which "
                "Switchyard does not support; give one host:port")
        endpoint = options.endpoints[0]
        host, colon, port = endpoint.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'redis.endpoints: "{endpoint}" is not host:port '
                                  '(e.g. "redis:6379")')
        for key, value in (("poolSize", options.pool_size), ("minIdleConns",
                           options.min_idle_conns), ("maxActiveConns", options.max_active_conns)):
            if value < 0:
                raise ValueError(f"redis.{key}: must not be negative")
        timeout = max(options.read_timeout, options.write_timeout)
        settings: dict[str, Any] = {
            "host": host.removeprefix("[").removesuffix("]"), "port": int(port),
            "db": options.db, "username": options.username or None,
            "password": options.password or None,
            "socket_connect_timeout": options.dial_timeout if options.dial_timeout > 0 else 5.0,
            # Traefik: zero or less means no timeout.
            "socket_timeout": timeout if timeout > 0 else None,
            "max_connections": options.max_active_conns or None,
        }
        tls_key: tuple[Any, ...] = ()
        if options.tls is not None:
            settings["tls_context"] = _tls_context(options.tls)
            tls_key = tuple(options.tls.model_dump().items())
        return cls(settings, (*sorted((k, v) for k, v in settings.items()
                                      if k != "tls_context"), tls_key))

    def script(self) -> Any:
        """The bucket script bound to this loop's client (made on first use)."""
        loop = asyncio.get_running_loop()
        clients = _CLIENTS.get(loop)
        if clients is None:
            for closed in [other for other in _CLIENTS if other.is_closed()]:
                del _CLIENTS[closed]
            clients = _CLIENTS[loop] = {}
        found = clients.get(self.key)
        if found is None:
            # redis-py (some 60 modules) is imported when a limiter first asks Redis.
            from switchyard.redisclient import bucket_client

            found = clients[self.key] = bucket_client(self.settings, BUCKET_SCRIPT)
        return found[1]


def _tls_context(options: RedisTLS) -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        if options.ca:
            context.load_verify_locations(cadata=pem_bundle(read_certificates(options.ca,
                                                                              "redis.tls.ca")))
        if options.cert or options.key:
            if not (options.cert and options.key):
                raise ValueError("redis.tls: give both cert and key, or neither")
            load_certificate(options.cert, options.key).load_into(context)
    except CertificateError as exc:
        raise ValueError(f"redis.tls: {exc}") from None
    if options.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
