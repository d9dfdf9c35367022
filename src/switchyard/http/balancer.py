"""The HTTP loadBalancer service: weighted round robin over servers, each with its proxy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from switchyard.http.proxy import ReverseProxy
from switchyard.http.responder import http_error
from switchyard.services.wrr import WeightedRoundRobin

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["BalancedServer", "LoadBalancer"]


class BalancedServer:
    """One ``servers[]`` entry: its proxy, weight and live state (``up`` is for health checks)."""

    __slots__ = ("proxy", "up", "weight")

    def __init__(self, proxy: ReverseProxy, weight: int = 1) -> None:
        self.proxy = proxy
        self.weight = weight
        self.up = True

    @property
    def url(self) -> str:
        return self.proxy.url.url

    @property
    def open_requests(self) -> int:
        return self.proxy.open_requests

    def __repr__(self) -> str:
        return f"BalancedServer({self.url!r}, weight={self.weight}, up={self.up})"


class LoadBalancer:
    """Handler: picks a server by weighted round robin and hands it the request.

    With no server up (or all weights 0) it answers ``503`` with ``no available server``, as
    Traefik's balancer does.
    """

    __slots__ = ("_only", "_wrr", "name", "servers")

    def __init__(self, name: str, servers: Sequence[BalancedServer]) -> None:
        self.name = name
        self.servers = list(servers)
        self._wrr = WeightedRoundRobin([(server, server.weight) for server in self.servers])
        # One server (the common case) needs no rotation: the same answer as the WRR, cheaper.
        self._only = self.servers[0] if len(self.servers) == 1 else None

    @property
    def up(self) -> bool:
        return self._wrr.has_candidate()

    def pick(self) -> BalancedServer | None:
        return self._wrr.pick()

    def handle(self, exchange: Exchange) -> None:
        exchange.service = self.name
        only = self._only
        if only is not None:
            server = only if only.up and only.weight > 0 else None
        else:
            server = self._wrr.pick()
        if server is None:
            http_error(exchange, 503, "no available server")
            return
        server.proxy.handle(exchange)

    def close(self) -> None:
        """Drop the idle backend connections (the service left the configuration)."""
        for server in self.servers:
            server.proxy.close()
