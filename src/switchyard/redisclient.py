"""The Redis client a rate limiter's shared buckets use, made with redis-py.

Kept apart from switchyard.tokenbucket so that redis-py is imported only when a ``redis``
block is in use: a configuration without one never loads it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


class _TLSConnection(Connection):
    """A Redis connection over TLS with a context built from Traefik's ``tls`` options."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.tls_context = tls_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        arguments["ssl"] = self.tls_context
        return arguments


def bucket_client(settings: Mapping[str, Any], script: str) -> tuple[aioredis.Redis, Any]:
    """A client for ``settings`` (RedisConnection's) and ``script`` registered on it."""
    options = dict(settings)
    tls_context = options.pop("tls_context", None)
    max_connections = options.pop("max_connections")
    host, port = options.pop("host"), options.pop("port")
    pool_options: dict[str, Any] = {
        "host": host, "port": port, "max_connections": max_connections,
        # As go-redis: three retries, backing off from 8 ms to 512 ms.
        "retry": Retry(ExponentialBackoff(), 3),
        **options}
    if tls_context is not None:
        pool_options.update(connection_class=_TLSConnection, tls_context=tls_context)
    client = aioredis.Redis(connection_pool=aioredis.ConnectionPool(**pool_options))
    return client, client.register_script(script)
