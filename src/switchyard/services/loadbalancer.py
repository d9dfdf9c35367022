"""The loadBalancer service: weighted round robin over backend servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from switchyard.services.transport import ServersTransport
from switchyard.services.wrr import WeightedRoundRobin

if TYPE_CHECKING:
    from switchyard.services.healthcheck import HealthCheckSettings


@dataclass(eq=False, slots=True)
class Server:
    """One backend address and its live health state."""

    address: str
    host: str
    port: int
    tls: bool = False
    up: bool = True


@dataclass(eq=False, slots=True)
class LoadBalancer:
    """Spreads connections over servers; every server has weight 1 (as in Traefik)."""

    name: str
    servers: list[Server]
    transport: ServersTransport
    health_check: HealthCheckSettings | None = None
    _wrr: WeightedRoundRobin[Server] = field(init=False)

    def __post_init__(self) -> None:
        self._wrr = WeightedRoundRobin([(server, 1) for server in self.servers])

    @property
    def up(self) -> bool:
        return self._wrr.has_candidate()

    def pick(self) -> tuple[Server, ServersTransport] | None:
        server = self._wrr.pick()
        return None if server is None else (server, self.transport)

    def peek(self) -> tuple[Server, ServersTransport] | None:
        """What `pick` would return now, without moving the rotation on."""
        server = self._wrr.peek()
        return None if server is None else (server, self.transport)

    def server_status(self) -> dict[str, str]:
        """Address -> UP/DOWN, as Traefik's API shows it."""
        return {s.address: "UP" if s.up else "DOWN" for s in self.servers}
