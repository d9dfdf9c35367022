"""Active HTTP health checks: request each server's health path and flip its UP state.

``h2c://`` servers are probed over HTTP/2 cleartext, and ``mode: grpc`` asks gRPC's health
protocol (grpc.health.v1.Health/Check) over h2c, as Traefik does (switchyard.http.h2probe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from switchyard.http.h2probe import grpc_health, h2_request
from switchyard.tls.backend import build_backend_context

if TYPE_CHECKING:
    # aiohttp (some 40 modules and several MiB) is imported when the first probe runs: a
    # configuration without HTTP health checks never needs it.
    import aiohttp

    from switchyard.config.http import ServerHealthCheck
    from switchyard.http.balancer import BalancedServer

__all__ = ["Checked", "HTTPHealthCheck", "HTTPHealthMonitor", "check_url", "probe",
           "watch_server"]

log = logging.getLogger("switchyard.healthcheck")

_DEFAULT_INTERVAL = 30.0
_DEFAULT_TIMEOUT = 5.0
_MAX_REDIRECTS = 10  # Go's http.Client stops after 10


@dataclass(frozen=True, slots=True)
class HTTPHealthCheck:
    """``loadBalancer.healthCheck`` with Traefik's defaults applied (see from_config)."""

    path: str = ""
    scheme: str = ""
    method: str = "GET"
    status: int = 0
    port: int = 0
    interval: float = _DEFAULT_INTERVAL
    unhealthy_interval: float = _DEFAULT_INTERVAL
    timeout: float = _DEFAULT_TIMEOUT
    hostname: str = ""
    follow_redirects: bool = True
    headers: tuple[tuple[str, str], ...] = field(default=())
    mode: str = "http"

    @classmethod
    def from_config(cls, config: ServerHealthCheck, service: str) -> HTTPHealthCheck:
        """Raises ValueError naming the service for what cannot be checked.

        Non-positive intervals and timeouts fall back to the defaults, as in Traefik; an unset
        ``unhealthyInterval`` is ``interval``.
        """
        mode = config.mode or "http"
        if mode not in ("http", "grpc"):
            raise ValueError(f'service "{service}": healthCheck mode "{mode}" is unknown; '
                             'use "http" or "grpc"')
        parts = urlsplit(config.path)
        if parts.scheme or parts.netloc:
            raise ValueError(f'service "{service}": health check path must be a relative URL, '
                             f'got: "{config.path}"')
        interval = config.interval if config.interval > 0 else _DEFAULT_INTERVAL
        unhealthy = config.unhealthy_interval
        if unhealthy is None:
            unhealthy = interval
        elif unhealthy <= 0:
            unhealthy = _DEFAULT_INTERVAL
        return cls(
            path=config.path, scheme=config.scheme, method=config.method.upper() or "GET",
            status=config.status, port=config.port, interval=interval,
            unhealthy_interval=unhealthy,
            timeout=config.timeout if config.timeout > 0 else _DEFAULT_TIMEOUT,
            hostname=config.hostname, follow_redirects=config.follow_redirects,
            headers=tuple(config.headers.items()), mode=mode)


def check_url(server_url: str, check: HTTPHealthCheck) -> str:
    """The URL probed: the path resolved against the server URL, then scheme and port."""
    server = urlsplit(server_url)
    # urljoin resolves paths for the schemes it knows only; h2c is http as far as paths go.
    base = urlunsplit(server._replace(scheme="http")) if server.scheme == "h2c" else server_url
    parts = urlsplit(urljoin(base, check.path))
    scheme = check.scheme or server.scheme
    netloc = parts.netloc
    if check.port:
        host = parts.hostname or ""
        netloc = f"[{host}]:{check.port}" if ":" in host else f"{host}:{check.port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


async def probe(session: aiohttp.ClientSession, server: BalancedServer,
                check: HTTPHealthCheck) -> str | None:
    """None when the server is healthy, else what failed (in Traefik's words).

    With ``status`` 0 any 2xx or 3xx answer is healthy; otherwise only that status is.
    HTTPS probes use the server's servers transport TLS settings.
    """
    import aiohttp

    if check.mode == "grpc":
        return await _probe_grpc(server.url, check)
    url = check_url(server.url, check)
    parts = urlsplit(url)
    if parts.scheme == "h2c":
        return await _probe_h2c(parts, check)
    headers = dict(check.headers)
    if check.hostname:
        headers["Host"] = check.hostname
    ssl_context, server_hostname = None, None
    if parts.scheme == "https":
        try:
            ssl_context, server_hostname = build_backend_context(
                server.proxy.pool.settings.tls, parts.hostname or "")
        except ValueError as exc:
            return str(exc)
    try:
        async with session.request(
                check.method, url, headers=headers, allow_redirects=check.follow_redirects,
                max_redirects=_MAX_REDIRECTS, timeout=aiohttp.ClientTimeout(total=check.timeout),
                ssl=ssl_context if ssl_context is not None else True,
                server_hostname=server_hostname) as response:
            status = response.status
    except TimeoutError:
        return f"HTTP request failed: no answer within {check.timeout:g}s"
    except aiohttp.TooManyRedirects:
        return f"HTTP request failed: stopped after {_MAX_REDIRECTS} redirects"
    except (aiohttp.ClientError, OSError) as exc:
        return f"HTTP request failed: {exc or type(exc).__name__}"
    return _judge(status, check)


def _judge(status: int, check: HTTPHealthCheck) -> str | None:
    if check.status == 0 and not 200 <= status < 400:
        return f"received error status code: {status}"
    if check.status and status != check.status:
        return f"received error status code: {status} expected status code: {check.status}"
    return None


async def _probe_h2c(parts: SplitResult, check: HTTPHealthCheck) -> str | None:
    """An ``h2c://`` server: the same request over HTTP/2 cleartext (redirects not followed)."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = [(b":method", check.method.encode()), (b":scheme", b"http"),
              (b":authority", (check.hostname or parts.netloc).encode("idna")),
              (b":path", target.encode("latin-1"))]
    fields += [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in check.headers if name.lower() != "host"]
    try:
        async with asyncio.timeout(check.timeout):
            reply = await h2_request(parts.hostname or "", parts.port or 80, fields)
    except TimeoutError:
        return f"HTTP request failed: no answer within {check.timeout:g}s"
    except (OSError, ConnectionError) as exc:
        return f"HTTP request failed: {exc or type(exc).__name__}"
    return _judge(reply.status, check)


async def _probe_grpc(server_url: str, check: HTTPHealthCheck) -> str | None:
    parts = urlsplit(server_url)
    host = parts.hostname or ""
    port = check.port or parts.port or (443 if parts.scheme == "https" else 80)
    if check.scheme not in ("", "http", "h2c"):
        # Traefik dials with no transport security for any other scheme, which gRPC refuses.
        return (f"fail to connect to {host}:{port}: grpc: no transport security set (use "
                "grpc.WithTransportCredentials(insecure.NewCredentials()) explicitly or set "
                "credentials)")
    try:
        async with asyncio.timeout(check.timeout):
            return await grpc_health(host, port)
    except TimeoutError:
        return ("gRPC health check timeout: rpc error: code = DeadlineExceeded desc = context "
                "deadline exceeded")


async def watch_server(session: aiohttp.ClientSession, service: str, server: BalancedServer,
                       check: HTTPHealthCheck) -> None:
    """Probe one server forever: every ``interval`` while UP, every ``unhealthyInterval`` while
    DOWN; the first probe comes one interval after the start, as in Traefik."""
    while True:
        await asyncio.sleep(check.interval if server.up else check.unhealthy_interval)
        failure = await probe(session, server, check)
        healthy = failure is None
        if healthy != server.up:
            server.up = healthy
            if healthy:
                log.warning('service "%s": server %s is UP again', service, server.url)
            else:
                log.warning('service "%s": server %s is DOWN: %s', service, server.url, failure)


class Checked(Protocol):
    """A balancer whose servers are checked: LoadBalancer or StrategyBalancer."""

    @property
    def name(self) -> str: ...

    @property
    def servers(self) -> list[BalancedServer]: ...


class HTTPHealthMonitor:
    """One probe task per server of each health-checked balancer, kept while it is unchanged.

    ``update`` takes every balancer that has a health check (the whole set each time): tasks of
    balancers no longer given are cancelled, new balancers get theirs. Call on the event loop.
    """

    def __init__(self) -> None:
        self._tasks: dict[int, list[asyncio.Task[None]]] = {}
        self._session: aiohttp.ClientSession | None = None

    def update(self, checked: Sequence[tuple[Checked, HTTPHealthCheck]]) -> None:
        wanted = {id(balancer): (balancer, check) for balancer, check in checked}
        for key in list(self._tasks):
            if key not in wanted:
                for task in self._tasks.pop(key):
                    task.cancel()
        if not wanted:
            return
        if self._session is None:
            import aiohttp

            # No cookies kept between probes, connections pooled as Go's transport pools them.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        loop = asyncio.get_running_loop()
        for key, (balancer, check) in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = [
                    loop.create_task(watch_server(self._session, balancer.name, server, check))
                    for server in balancer.servers]

    async def stop(self) -> None:
        """Cancel every probe and close the client."""
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
