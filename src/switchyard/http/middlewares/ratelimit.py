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
from collections.abc import Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.durations import Duration, go_duration
from switchyard.config.dynamic import Redis, TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.sourcecriterion import (
    SourceCriterionOptions,
    SourceExtractor,
    source_extractor,
)
from switchyard.http.responder import http_error
from switchyard.tokenbucket import (
    BUCKET_SCRIPT,
    Limits,
    MemoryBuckets,
    RedisBuckets,
    RedisConnection,
)

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["BUCKET_SCRIPT", "Limits", "MemoryBuckets", "RateLimitOptions", "build"]

log = logging.getLogger("switchyard.http.middlewares")

_BY_CLIENT_IP = SourceCriterionOptions.model_validate({"ipStrategy": {}})
_TOO_MANY = b"Too Many Requests"

class RateLimitOptions(TraefikModel):
    average: int = 0
    period: Duration = 1.0
    burst: int = 1
    source_criterion: SourceCriterionOptions | None = Field(default=None,
                                                            alias="sourceCriterion")
    redis: Redis | None = None


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
            delay = self.buckets.reserve(self.source(exchange), monotonic())
            if delay == 0.0:  # a token at hand: the common case, without a hop
                self.next.handle(exchange)
            else:
                self._admit(exchange, delay)
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
        from redis.exceptions import RedisError  # loaded with the client: Redis is in use

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
    try:
        connection = RedisConnection.from_options(config.redis) if config.redis else None
    except ValueError as exc:
        raise MiddlewareError(str(exc)) from None

    def wrap(next_handler: Handler) -> Handler:
        redis = (RedisBuckets(limits, connection, context.name) if connection is not None
                 else None)
        return RateLimit(context.name, limits, source, redis, next_handler)
    return wrap
