"""TCP health checks: dial each server, optionally send/expect, and flip its UP state."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from switchyard.services.loadbalancer import LoadBalancer, Server
from switchyard.services.transport import ServersTransport

log = logging.getLogger("switchyard.healthcheck")

MAX_PAYLOAD = 65535


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    """Normalised like Traefik (spec 7): non-positive intervals become 30 s, timeout 5 s."""

    port: int = 0
    send: bytes = b""
    expect: bytes = b""
    interval: float = 30.0
    unhealthy_interval: float = 30.0
    timeout: float = 5.0

    @classmethod
    def normalised(cls, *, port: int, send: str, expect: str, interval: float,
                   unhealthy_interval: float | None, timeout: float) -> HealthCheckSettings:
        interval = interval if interval > 0 else 30.0
        if unhealthy_interval is None:
            unhealthy_interval = interval
        elif unhealthy_interval <= 0:
            unhealthy_interval = 30.0
        send_bytes, expect_bytes = send.encode(), expect.encode()
        if len(send_bytes) > MAX_PAYLOAD or len(expect_bytes) > MAX_PAYLOAD:
            raise ValueError(f"healthCheck send/expect longer than {MAX_PAYLOAD} bytes")
        return cls(port=port, send=send_bytes, expect=expect_bytes, interval=interval,
                   unhealthy_interval=unhealthy_interval, timeout=timeout if timeout > 0 else 5.0)


async def probe(server: Server, settings: HealthCheckSettings,
                transport: ServersTransport | None = None) -> str | None:
    """None when the server is healthy, else what failed.

    Dials like the data plane does (TLS for `tls: true` servers, with the
    service's servers transport) but never sends a PROXY header; the backend
    TLS handshake is inside the timeout (Traefik leaves it unbounded).
    """
    port = settings.port or server.port
    context, server_name = None, None
    if server.tls:
        from switchyard.tls.backend import build_backend_context

        try:
            context, server_name = build_backend_context(
                transport.tls if transport else None, server.host)
        except ValueError as exc:
            return str(exc)
    try:
        async with asyncio.timeout(settings.timeout):
            reader, writer = await asyncio.open_connection(
                server.host, port, ssl=context, server_hostname=server_name)
            try:
                if settings.send:
                    writer.write(settings.send)
                    await writer.drain()
                if settings.expect:
                    # Read until we have as many bytes as expected (Traefik does one
                    # read, so a reply split over two segments fails there: spec 11.23).
                    got = await reader.readexactly(len(settings.expect))
                    if got != settings.expect:
                        return f"expected {settings.expect!r}, got {got!r}"
            finally:
                writer.close()
    except TimeoutError:
        return f"no answer within {settings.timeout:g}s"
    except asyncio.IncompleteReadError as exc:
        return f"connection closed after {len(exc.partial)} of {len(settings.expect)} expected bytes"
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


async def watch_server(balancer: LoadBalancer, server: Server, settings: HealthCheckSettings) -> None:
    """Probe one server forever: every `interval` while UP, every `unhealthyInterval` while DOWN."""
    while True:
        await asyncio.sleep(settings.interval if server.up else settings.unhealthy_interval)
        failure = await probe(server, settings, balancer.transport)
        healthy = failure is None
        if healthy != server.up:
            server.up = healthy
            if healthy:
                log.warning('service "%s": server %s is UP again', balancer.name, server.address)
            else:
                log.warning('service "%s": server %s is DOWN: %s', balancer.name, server.address,
                            failure)


class HealthMonitor:
    """One probe task per health-checked server, kept across reloads while the service is unchanged."""

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[LoadBalancer, list[asyncio.Task[None]]]] = {}

    def update(self, balancers: list[LoadBalancer]) -> None:
        wanted = {id(lb): lb for lb in balancers if lb.health_check is not None}
        for key in list(self._tasks):
            if key not in wanted:
                for task in self._tasks.pop(key)[1]:
                    task.cancel()
        for key, balancer in wanted.items():
            if key in self._tasks:
                continue
            settings = balancer.health_check
            assert settings is not None
            tasks = [asyncio.get_running_loop().create_task(watch_server(balancer, s, settings))
                     for s in balancer.servers]
            self._tasks[key] = (balancer, tasks)

    def stop(self) -> None:
        self.update([])
