"""`rateLimit`: a token bucket per source, in memory or shared through Redis.

Traefik's semantics: a bucket holds up to ``burst`` tokens (at least 1) and refills at
``average / period`` tokens a second; ``average: 0`` (or less) turns limiting off. Each request
takes a token. When the bucket is short, the request waits for its token if that takes no longer
than ``1 / (2 * rate)`` (0.5 s for rates below one a second); otherwise it gets ``429`` with
``Retry-After`` (whole seconds) and ``X-Retry-In`` (a Go duration) and its token is given back.
Requests are grouped by ``sourceCriterion`` (the client address by default). A bucket left
unused for its time to live (2 s, longer for slow rates) is forgotten, so it starts full again.

With ``redis``, buckets live in Redis under ``rate:<middleware>:<source>`` with the same layout
Traefik uses, and one Lua script reads and updates a bucket atomically, so every instance
pointing at the same Redis shares the limit. The handler answers once Redis has: the event loop
never waits. When Redis cannot be reached the request is answered ``500`` (as Traefik does: it
fails closed rather than letting unlimited traffic through).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from pydantic import Field
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from switchyard.config.durations import Duration, go_duration
from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.sourcecriterion import (
    SourceCriterionOptions,
    SourceExtractor,
    source_extractor,
)
from switchyard.http.responder import http_error
from switchyard.tls.certificates import (
    CertificateError,
    load_certificate,
    pem_bundle,
    read_certificates,
)

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["BUCKET_SCRIPT", "Limits", "MemoryBuckets", "RateLimitOptions", "build"]

log = logging.getLogger("switchyard.http.middlewares")

#: How many sources one in-memory limiter remembers; past that the stalest is dropped.
MAX_SOURCES = 65536
_BY_CLIENT_IP = SourceCriterionOptions.model_validate({"ipStrategy": {}})
_TOO_MANY = b"Too Many Requests"
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


class RedisTLSOptions(TraefikModel):
    ca: str = ""
    cert: str = ""
    key: str = ""
    insecure_skip_verify: bool = False


class RedisOptions(TraefikModel):
    endpoints: StrList = Field(default_factory=lambda: ["localhost:6379"])
    tls: RedisTLSOptions | None = None
    username: str = ""
    password: str = ""
    db: int = 0
    pool_size: int = 0
    min_idle_conns: int = 0
    max_active_conns: int = 0
    read_timeout: Duration = 3.0
    write_timeout: Duration = 3.0
    dial_timeout: Duration = 5.0


class RateLimitOptions(TraefikModel):
    average: int = 0
    period: Duration = 1.0
    burst: int = 1
    source_criterion: SourceCriterionOptions | None = Field(default=None,
                                                            alias="sourceCriterion")
    redis: RedisOptions | None = None


class Limits:
    """The numbers every bucket of one middleware follows, derived as Traefik derives them."""

    __slots__ = ("burst", "max_delay", "rate", "ttl")

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

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.rate)


class MemoryBuckets:
    """The buckets of one in-memory limiter, by source, stalest first."""

    __slots__ = ("buckets", "capacity", "limits")

    def __init__(self, limits: Limits, capacity: int = MAX_SOURCES) -> None:
        self.limits = limits
        self.capacity = capacity
        # source -> [tokens, last refill (monotonic s), expiry (whole s)]; re-inserted on use,
        # so the dict's order is the order of expiry.
        self.buckets: dict[str, list[float]] = {}

    def reserve(self, source: str, now: float) -> float:
        """Take a token for ``source`` at ``now``: the seconds to wait for it (0: none)."""
        limits, buckets = self.limits, self.buckets
        second = int(now)
        bucket = buckets.pop(source, None)
        if bucket is None or bucket[2] <= second:
            while buckets:  # drop the expired, and the stalest when full
                stalest = next(iter(buckets))
                if buckets[stalest][2] > second and len(buckets) < self.capacity:
                    break
                del buckets[stalest]
            tokens = float(limits.burst)
        else:
            elapsed = now - bucket[1] if now > bucket[1] else 0.0
            tokens = min(bucket[0] + elapsed * limits.rate, limits.burst)
        tokens -= 1
        delay = -tokens / limits.rate if tokens < 0 else 0.0
        if delay > limits.max_delay:
            tokens = min(tokens + 1, limits.burst)  # refused: the token goes back
        buckets[source] = [tokens, now, second + limits.ttl]
        return delay


class RedisBuckets:
    """Buckets kept in Redis; one client per event loop and connection settings."""

    __slots__ = ("connection", "limits", "prefix")

    def __init__(self, limits: Limits, connection: _RedisConnection, name: str) -> None:
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


class RateLimit:
    """Handler: admits a request when its source's bucket has a token (or will have one soon)."""

    __slots__ = ("buckets", "failing", "limits", "name", "next", "pending", "redis", "source")

    def __init__(self, name: str, limits: Limits, source: SourceExtractor,
                 redis: RedisBuckets | None, next_handler: Handler) -> None:
        self.name = name
        self.limits = limits
        self.source = source
        self.redis = redis
        self.next = next_handler
        self.buckets = MemoryBuckets(limits)
        self.pending: set[asyncio.Task[None]] = set()
        self.failing = False

    def handle(self, exchange: Exchange) -> None:
        if self.redis is None:
            if self.limits.unlimited:
                self.next.handle(exchange)
                return
            self._admit(exchange, self.buckets.reserve(self.source(exchange), time.monotonic()))
            return
        if self.limits.unlimited:
            # Traefik's Redis limiter reports no reservation at all when the rate is unlimited,
            # which its handler answers as a refusal: average 0 with redis refuses everything.
            http_error(exchange, 429, "No bursty traffic allowed")
            return
        task = asyncio.get_running_loop().create_task(
            self._ask_redis(exchange, self.redis, self.source(exchange)))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _ask_redis(self, exchange: Exchange, redis: RedisBuckets, source: str) -> None:
        try:
            delay = await redis.reserve(source)
        except (RedisError, OSError, ValueError) as exc:
            if not self.failing:
                self.failing = True
                log.error('middleware "%s": cannot reach the rate limit buckets in Redis (%s); '
                          "requests are answered 500 until it is back", self.name, exc)
            if not exchange.finished:
                http_error(exchange, 500, "Could not insert/update bucket")
            return
        if self.failing:
            self.failing = False
            log.warning('middleware "%s": Redis answers again', self.name)
        if not exchange.finished:
            self._admit(exchange, delay)

    def _admit(self, exchange: Exchange, delay: float) -> None:
        if delay > self.limits.max_delay:
            headers = Headers([(b"Retry-After", b"%d" % math.ceil(delay)),
                               (b"X-Retry-In", go_duration(delay).encode())])
            exchange.respond(429, headers, _TOO_MANY)
        elif delay > 0:
            asyncio.get_running_loop().call_later(delay, self._resume, exchange)
        else:
            self.next.handle(exchange)

    def _resume(self, exchange: Exchange) -> None:
        if not exchange.finished:  # the client may have left while its request waited
            self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(RateLimitOptions, options)
    if config.period < 0:
        raise MiddlewareError(f"period: negative value not valid for period: "
                              f"{go_duration(config.period)}; give a positive duration such as 1s")
    limits = Limits(config.average, config.period, config.burst)
    source = source_extractor(config.source_criterion, default=_BY_CLIENT_IP)
    connection = _RedisConnection.from_options(config.redis) if config.redis else None

    def wrap(next_handler: Handler) -> Handler:
        redis = (RedisBuckets(limits, connection, context.name) if connection is not None
                 else None)
        return RateLimit(context.name, limits, source, redis, next_handler)
    return wrap


# -- Redis connections --------------------------------------------------------------------------


class _TLSConnection(Connection):
    """A Redis connection over TLS with a context built from Traefik's ``tls`` options."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.tls_context = tls_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        arguments["ssl"] = self.tls_context
        return arguments


# Clients are shared by every limiter with the same settings on a loop, so that rebuilding the
# configuration does not open new pools. Their connections keep the loop alive, so clients of
# loops that have been closed are dropped when a new client is made.
_CLIENTS: dict[asyncio.AbstractEventLoop, dict[tuple[Any, ...], tuple[aioredis.Redis, Any]]] = {}


class _RedisConnection:
    """How to reach the Redis of one ``redis`` option block (validated when built)."""

    __slots__ = ("key", "settings")

    def __init__(self, settings: dict[str, Any], key: tuple[Any, ...]) -> None:
        self.settings = settings
        self.key = key

    @classmethod
    def from_options(cls, options: RedisOptions) -> _RedisConnection:
        if not options.endpoints:
            raise MiddlewareError("redis.endpoints: list the Redis address (host:port)")
        if len(options.endpoints) > 1:
            raise MiddlewareError(
                "redis.endpoints: several endpoints make Traefik use Redis Cluster, which "
                "Switchyard does not support; give one host:port")
        endpoint = options.endpoints[0]
        host, colon, port = endpoint.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise MiddlewareError(f'redis.endpoints: "{endpoint}" is not host:port '
                                  '(e.g. "redis:6379")')
        for key, value in (("poolSize", options.pool_size), ("minIdleConns",
                           options.min_idle_conns), ("maxActiveConns", options.max_active_conns)):
            if value < 0:
                raise MiddlewareError(f"redis.{key}: must not be negative")
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
            settings = dict(self.settings)
            tls_context = settings.pop("tls_context", None)
            max_connections = settings.pop("max_connections")
            host, port = settings.pop("host"), settings.pop("port")
            pool_options: dict[str, Any] = {
                "host": host, "port": port, "max_connections": max_connections,
                # As go-redis: three retries, backing off from 8 ms to 512 ms.
                "retry": Retry(ExponentialBackoff(), 3),
                **settings}
            if tls_context is not None:
                pool_options.update(connection_class=_TLSConnection, tls_context=tls_context)
            client = aioredis.Redis(connection_pool=aioredis.ConnectionPool(**pool_options))
            found = clients[self.key] = (client, client.register_script(BUCKET_SCRIPT))
        return found[1]


def _tls_context(options: RedisTLSOptions) -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        if options.ca:
            context.load_verify_locations(cadata=pem_bundle(read_certificates(options.ca,
                                                                              "redis.tls.ca")))
        if options.cert or options.key:
            if not (options.cert and options.key):
                raise MiddlewareError("redis.tls: give both cert and key, or neither")
            load_certificate(options.cert, options.key).load_into(context)
    except CertificateError as exc:
        raise MiddlewareError(f"redis.tls: {exc}") from None
    if options.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
