"""TCP health checks: dial each server, optionally send/expect, and flip its UP state."""

from __future__ import annotations

import asyncio
import logging

from switchyard.services.loadbalancer import HealthCheckSettings, LoadBalancer, Server
from switchyard.services.transport import ServersTransport

log = logging.getLogger("switchyard.healthcheck")


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
                    # read, so a reply split over two segments fails there; see docs/compatibility.md).
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
