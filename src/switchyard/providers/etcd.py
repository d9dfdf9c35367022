"""The etcd provider: Traefik's KV layout in etcd v3, read and watched through its JSON gateway."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.providers.clienttls import ClientTLS, TLSFiles, tls_files
from switchyard.providers.kv import (
    RemoteProvider,
    Session,
    StoreUnavailable,
    kv_provider,
    strict_text,
)

__all__ = ["EtcdOptions", "etcd_provider", "prefix_range_end"]

_TIMEOUT = 2.0


class EtcdOptions(TraefikModel):
    """``providers.etcd``, with Traefik's option names and defaults."""

    endpoints: StrList = Field(default_factory=lambda: ["127.0.0.1:2379"])
    root_key: str = "traefik"
    username: str = ""
    password: str = ""
    tls: ClientTLS | None = None


def etcd_provider(options: EtcdOptions) -> RemoteProvider[dict[str, str]]:
    """The provider named ``etcd``; it uses the first endpoint that answers.

    ``username`` and ``password`` get a token from etcd's auth API; ``tls`` connects over
    HTTPS (endpoints without a scheme become https://), with a client certificate if given.
    """
    tls = tls_files(options.tls, "providers.etcd.tls") if options.tls is not None else None
    connect = _Connector(options, tls)
    return kv_provider("etcd", ",".join(options.endpoints), options.root_key, connect.open)


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with ``prefix``" (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"  # the prefix is all 0xff: to the end of the keyspace


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class _Connector:
    options: EtcdOptions
    tls: TLSFiles | None = None

    async def open(self) -> Session[dict[str, str]]:
        problems = []
        scheme = "https" if self.tls is not None else "http"
        for endpoint in self.options.endpoints:
            base = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
            connector = aiohttp.TCPConnector(ssl=self.tls.context()) if self.tls else None
            session = aiohttp.ClientSession(
                base.rstrip("/"), connector=connector,
                timeout=aiohttp.ClientTimeout(sock_connect=_TIMEOUT))
            try:
                return await _EtcdSession.start(session, self.options)
            except (aiohttp.ClientError, OSError, TimeoutError, StoreUnavailable) as error:
                await session.close()
                problems.append(f"{endpoint}: {error or type(error).__name__}")
        raise StoreUnavailable("; ".join(problems) or "no endpoints configured")


class _EtcdSession:
    def __init__(self, http: aiohttp.ClientSession, prefix: bytes) -> None:
        self.http = http
        self.prefix = prefix
        self.headers: dict[str, str] = {}
        self.watch: aiohttp.ClientResponse | None = None

    @classmethod
    async def start(cls, http: aiohttp.ClientSession, options: EtcdOptions) -> _EtcdSession:
        session = cls(http, (options.root_key.rstrip("/") + "/").encode())
        if options.username:
            reply = await session.call("/v3/auth/authenticate",
                                       {"name": options.username, "password": options.password})
            session.headers["Authorization"] = str(reply.get("token", ""))
        await session.start_watch()
        return session

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(path, json=body, headers=self.headers,
                                  timeout=aiohttp.ClientTimeout(total=_TIMEOUT)) as response:
            reply = await response.json(content_type=None)
        if response.status != 200 or not isinstance(reply, dict):
            raise StoreUnavailable(f"{path}: HTTP {response.status}: {_message(reply)}")
        return reply

    async def start_watch(self) -> None:
        request = {"create_request": {"key": _b64(self.prefix),
                                      "range_end": _b64(prefix_range_end(self.prefix))}}
        # No read timeout: the stream stays open for as long as etcd runs.
        self.watch = await self.http.post("/v3/watch", json=request, headers=self.headers,
                                          timeout=aiohttp.ClientTimeout(sock_connect=_TIMEOUT))
        if self.watch.status != 200:
            raise StoreUnavailable(f"/v3/watch: HTTP {self.watch.status}")
        created = await self._next_result()
        if created is None or not created.get("created"):
            raise StoreUnavailable(f"/v3/watch: the watch was not created: {created}")

    async def read(self) -> dict[str, str]:
        try:
            reply = await self.call("/v3/kv/range", {
                "key": _b64(self.prefix), "range_end": _b64(prefix_range_end(self.prefix))})
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error
        pairs: dict[str, str] = {}
        for item in reply.get("kvs", []):
            try:
                raw_key = base64.b64decode(item.get("key", ""), validate=True)
                raw_value = base64.b64decode(item.get("value", ""), validate=True)
            except (AttributeError, TypeError, ValueError) as error:
                raise StoreUnavailable(f"/v3/kv/range: not an etcd answer: {error}") from None
            key = strict_text(raw_key, f"key {raw_key!r}")
            pairs[key] = strict_text(raw_value, f'key "{key}"')
        return pairs

    async def next_change(self, timeout: float | None) -> bool:
        try:
            result = await asyncio.wait_for(self._next_result(), timeout)
        except TimeoutError:
            return False
        if result is None:
            raise StoreUnavailable("the watch stream ended")
        if result.get("canceled"):
            raise StoreUnavailable(f"the watch was canceled: {result.get('cancel_reason', '')}")
        return True

    async def _next_result(self) -> dict[str, Any] | None:
        """The next ``result`` of the watch stream (one JSON object a line), None at its end."""
        assert self.watch is not None
        try:
            while True:
                line = await self.watch.content.readline()
                if not line:
                    return None
                if not line.strip():
                    continue
                document = json.loads(line)
                if "error" in document:
                    raise StoreUnavailable(f"watch: {_message(document)}")
                result = document.get("result", {})
                return result if isinstance(result, dict) else {}
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        await self.http.close()


def _message(reply: Any) -> str:
    if isinstance(reply, dict):
        error = reply.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(reply.get("message", error or reply))
    return str(reply)
