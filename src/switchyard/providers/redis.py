"""The Redis provider: Traefik's KV layout in Redis, followed through keyspace notifications."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import Field
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.providers.clienttls import ClientTLS, TLSFiles, tls_files
from switchyard.providers.kv import (
    RemoteProvider,
    Session,
    StoreUnavailable,
    kv_provider,
    raise_if_cancelled,
    strict_text,
)

__all__ = ["RedisOptions", "redis_provider"]

log = logging.getLogger("switchyard.providers.redis")

#: How often a Redis that refuses CONFIG SET (managed services often do) is re-read instead.
POLL_INTERVAL = 1.0
_TIMEOUT = 2.0
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisOptions(TraefikModel):
    """``providers.redis``, with Traefik's option names and defaults."""

    endpoints: StrList = Field(default_factory=lambda: ["127.0.0.1:6379"])
    root_key: str = "traefik"
    username: str = ""
    password: str = ""
    db: int = 0
    tls: ClientTLS | None = None
    sentinel: dict[str, Any] | None = None


def redis_provider(options: RedisOptions) -> RemoteProvider[dict[str, str]]:
    """The provider named ``redis``; it connects to the first endpoint that answers.

    ``username`` and ``password`` log in (an ACL user, or the password alone for
    ``requirepass``); ``tls`` connects over TLS. ConfigLoadError for TLS files it cannot use.
    """
    tls = tls_files(options.tls, "providers.redis.tls") if options.tls is not None else None
    connect = _Connector(options, tls)
    return kv_provider("redis", ",".join(options.endpoints), options.root_key, connect.open)


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class _Connector:
    options: RedisOptions
    tls: TLSFiles | None = None
    polling_warned: bool = False

    def _tls_arguments(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert,
                "ssl_keyfile": self.tls.key, "ssl_check_hostname": self.tls.verify,
                "ssl_cert_reqs": "required" if self.tls.verify else "none"}

    async def open(self) -> Session[dict[str, str]]:
        problems = []
        for endpoint in self.options.endpoints:
            host, _, port = endpoint.rpartition(":")
            client = aioredis.Redis(
                host=host.strip("[]") or "127.0.0.1", port=int(port or 6379), db=self.options.db,
                username=self.options.username or None, password=self.options.password or None,
                # Bytes, decoded here: redis-py's own decoding raises mid-reply on a value
                # that is not UTF-8, which would leave the connection half read.
                socket_connect_timeout=_TIMEOUT, socket_timeout=_TIMEOUT, decode_responses=False,
                # Fail fast: reconnecting is the provider's job, with its own backoff.
                retry=Retry(NoBackoff(), 0), **self._tls_arguments(),
            )
            try:
                return await self._subscribe(client)
            except (RedisError, OSError) as error:
                await client.aclose()
                problems.append(f"{endpoint}: {error}")
        raise StoreUnavailable("; ".join(problems) or "no endpoints configured")

    async def _subscribe(self, client: aioredis.Redis) -> Session[dict[str, str]]:
        await client.ping()
        if not await self._notifications_on(client):
            return _RedisSession(client, None, self.options.root_key)
        pubsub = client.pubsub()
        root = _glob_escape(self.options.root_key.rstrip("/"))
        await pubsub.psubscribe(f"__keyspace@{self.options.db}__:{root}/*")
        return _RedisSession(client, pubsub, self.options.root_key)

    async def _notifications_on(self, client: aioredis.Redis) -> bool:
        """Turn on keyspace notifications (K plus all kinds, A) without dropping other flags."""
        try:
            reply = await client.config_get("notify-keyspace-events")
            current = "".join(_text(value) for key, value in reply.items()
                              if _text(key) == "notify-keyspace-events")
            if "K" not in current or "A" not in current:
                await client.config_set("notify-keyspace-events", "".join(sorted(
                    set(current) | {"K", "A"})))
        except ResponseError as error:
            if not self.polling_warned:
                log.warning("redis: cannot enable keyspace notifications (%s); set "
                            "notify-keyspace-events to KEA on the server, meanwhile the keys "
                            "are re-read every %.0f s", error, POLL_INTERVAL)
                self.polling_warned = True
            return False
        return True


class _RedisSession:
    def __init__(self, client: aioredis.Redis, pubsub: Any, root_key: str) -> None:
        self.client = client
        self.pubsub = pubsub
        self.prefix = root_key.rstrip("/") + "/"

    async def read(self) -> dict[str, str]:
        try:
            keys: list[bytes] = [key async for key in self.client.scan_iter(
                match=_glob_escape(self.prefix) + "*", count=1000)]
            pairs: dict[str, str] = {}
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                for key, value in zip(chunk, await self.client.mget(chunk), strict=True):
                    if value is not None:  # a key of another type, or deleted meanwhile
                        name = strict_text(key, f"key {key!r}")
                        pairs[name] = strict_text(value, f'key "{name}"')
            return pairs
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error

    async def next_change(self, timeout: float | None) -> bool:
        if self.pubsub is None:
            if timeout is None:
                await asyncio.sleep(POLL_INTERVAL)
                return True
            return False
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - loop.time())
                message = await self.pubsub.get_message(ignore_subscribe_messages=True,
                                                        timeout=wait)
                raise_if_cancelled()
                if message is not None and message.get("type") == "pmessage":
                    return True
                if deadline is not None and loop.time() >= deadline:
                    return False
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error

    async def close(self) -> None:
        try:
            if self.pubsub is not None:
                await self.pubsub.aclose()
            await self.client.aclose()
        except (RedisError, OSError):
            pass  # the connection is gone already
