"""Consul's HTTP API as the two Consul providers use it: requests, blocking queries, sessions."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

from switchyard.config.loader import ConfigLoadError
from switchyard.providers.clienttls import ClientTLS, TLSFiles, tls_files
from switchyard.providers.kv import StoreUnavailable

__all__ = ["DEFAULT_ADDRESS", "ConsulClient", "ConsulEndpoint", "ConsulSession"]

log = logging.getLogger("switchyard.providers.consul")

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:8500"
_CONNECT_TIMEOUT = 3.0
_REQUEST_TIMEOUT = 10.0
#: Consul's own cap on a blocking query's ``wait`` when none is given.
_SERVER_WAIT = 300.0
#: A blocking query answered sooner than this without a new index is retried after it:
#: Consul may return early, and a loop of early returns must not spin.
_MIN_BLOCK = 0.05


@dataclass(frozen=True)
class ConsulEndpoint:
    """Where and how to ask one Consul agent: base URL, TLS, token, datacenter, namespace."""

    base_url: str
    socket_path: str = ""
    tls: TLSFiles | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    wait: float = 0.0  # seconds a blocking query may hold; 0: Consul's default

    @classmethod
    def parse(cls, address: str, option: str, *, scheme: str = "", tls: ClientTLS | None = None,
              token: str = "", datacenter: str = "", namespace: str = "",
              username: str = "", password: str = "", wait: float = 0.0) -> ConsulEndpoint:
        """An endpoint as Consul's Go client reads ``address`` (``host:port``, a URL, unix://).

        Raises ConfigLoadError naming ``option`` for an address it cannot use, and
        ``<option's section>.tls`` for certificates that do not load.
        """
        address = address or DEFAULT_ADDRESS
        socket_path = ""
        if address.startswith("unix://"):
            socket_path, base = address.removeprefix("unix://"), "http://consul"
        else:
            if "://" in address:
                parts = urlsplit(address)
                scheme, netloc = parts.scheme, parts.netloc
            else:
                netloc = address
            scheme = scheme or "http"
            if tls is not None and scheme == "http":
                # Consul's Go client (which Traefik's consulCatalog uses) keeps plain HTTP
                # then: the TLS settings only apply to an https scheme.
                log.warning("%s: tls is set but the scheme is http, so it is not used; set "
                            "scheme: https or an https:// address", option)
            if scheme not in ("http", "https") or not netloc:
                raise ConfigLoadError(f'{option} "{address}": use host:port, http://host:port, '
                                      "https://host:port or unix:///path/to/consul.sock")
            base = f"{scheme}://{netloc}"
        headers: dict[str, str] = {}
        if token:
            headers["X-Consul-Token"] = token
        if username or password:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{username}:{password}".encode()).decode("ascii")
        params = {key: value for key, value in (("dc", datacenter), ("ns", namespace)) if value}
        files = None
        if tls is not None:
            files = tls_files(tls, option.rsplit(".", 1)[0] + ".tls")
        return cls(base, socket_path, files, headers, params, wait)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None for plain HTTP; OSError/SSLError for bad files."""
        if not self.base_url.startswith("https://"):
            return None
        return self.tls.context() if self.tls is not None else ssl.create_default_context()

    def client(self) -> ConsulClient:
        try:
            context = self.ssl_context()
        except (OSError, ssl.SSLError) as error:
            raise StoreUnavailable(f"TLS files: {error}") from None
        connector = (aiohttp.UnixConnector(self.socket_path) if self.socket_path
                     else aiohttp.TCPConnector(ssl=context if context is not None else False))
        http = aiohttp.ClientSession(self.base_url, connector=connector, headers=self.headers,
                                     timeout=aiohttp.ClientTimeout(sock_connect=_CONNECT_TIMEOUT))
        return ConsulClient(http, self)


class ConsulClient:
    """GET requests against one agent; every failure is StoreUnavailable saying which call."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: ConsulEndpoint) -> None:
        self.http = http
        self.endpoint = endpoint

    async def get(self, path: str, params: Mapping[str, str] | None = None, *,
                  index: int = 0, allow_missing: bool = False) -> tuple[Any, int]:
        """The decoded JSON of ``GET /v1<path>`` and its ``X-Consul-Index``.

        With ``index`` above 0 this is a blocking query: Consul holds the answer until the
        index moves past ``index`` or its wait time ends. ``allow_missing`` turns a 404 (a
        KV prefix with no keys) into None.
        """
        query = {**self.endpoint.params, **(params or {})}
        timeout = _REQUEST_TIMEOUT
        if index > 0:
            query["index"] = str(index)
            wait = self.endpoint.wait or _SERVER_WAIT
            if self.endpoint.wait:
                query["wait"] = f"{int(self.endpoint.wait * 1000)}ms"
            # Consul adds up to wait/16 of jitter before it answers.
            timeout = wait + wait / 16 + _REQUEST_TIMEOUT
        url = "/v1" + quote(path)
        try:
            async with self.http.get(url, params=query,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
                consul_index = _index_of(reply.headers.get("X-Consul-Index", ""))
                if reply.status == 404 and allow_missing:
                    return None, consul_index
                if reply.status != 200:
                    text = (await reply.text()).strip()
                    raise StoreUnavailable(f"GET {url}: HTTP {reply.status}"
                                           + (f": {text[:200]}" if text else ""))
                return await reply.json(content_type=None), consul_index
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            raise StoreUnavailable(f"GET {url}: {error or type(error).__name__}") from error

    async def close(self) -> None:
        await self.http.close()


def _index_of(header: str) -> int:
    try:
        return max(int(header), 0)
    except ValueError:
        return 0


@dataclass
class _IndexWatch:
    """One blocking query kept running: ``changed`` is set each time its index moves."""

    client: ConsulClient
    path: str
    params: Mapping[str, str]
    changed: asyncio.Event
    index: int = 0
    error: StoreUnavailable | None = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first, non-blocking query: raises StoreUnavailable when Consul is not there."""
        _, self.index = await self.client.get(self.path, self.params, allow_missing=True)
        self.task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                _, index = await self.client.get(self.path, self.params,
                                                 index=max(self.index, 1), allow_missing=True)
            except StoreUnavailable as error:
                self.error = error
                self.changed.set()
                return
            if index != self.index:
                # An index that went backwards (a restored snapshot, a new cluster) is taken
                # as it is, as Consul's documentation says to: the next query starts from it.
                self.index = index
                self.changed.set()
            elif loop.time() - started < _MIN_BLOCK:
                await asyncio.sleep(_MIN_BLOCK)


class ConsulSession(Generic[T]):
    """A provider session: ``read`` the state now; ``next_change`` waits for a new index.

    With ``watched`` paths, each is a blocking query kept open (started before the first
    read, so no change falls between); without, the state is re-read every ``poll`` seconds.
    """

    def __init__(self, client: ConsulClient, read: Callable[[ConsulClient], Awaitable[T]],
                 watched: Sequence[tuple[str, Mapping[str, str]]], poll: float) -> None:
        self.client = client
        self._read = read
        self.changed = asyncio.Event()
        self.watches = [_IndexWatch(client, path, params, self.changed)
                        for path, params in watched]
        self.poll = poll

    @classmethod
    async def open(cls, endpoint: ConsulEndpoint, read: Callable[[ConsulClient], Awaitable[T]],
                   watched: Sequence[tuple[str, Mapping[str, str]]],
                   poll: float) -> ConsulSession[T]:
        session = cls(endpoint.client(), read, watched, poll)
        try:
            for watch in session.watches:
                await watch.start()
        except BaseException:
            await session.close()
            raise
        return session

    async def read(self) -> T:
        return await self._read(self.client)

    async def next_change(self, timeout: float | None) -> bool:
        if not self.watches:
            if timeout is None:
                await asyncio.sleep(self.poll)
                return True
            return False  # polling: nothing tells of changes in between
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        for watch in self.watches:
            if watch.error is not None:
                raise watch.error
        return True

    async def close(self) -> None:
        tasks = [watch.task for watch in self.watches if watch.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()
