"""The loadBalancer service: weighted round robin over backend servers."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchyard.services.transport import ServersTransport
from switchyard.services.wrr import WeightedRoundRobin

MAX_PAYLOAD = 65535  # the longest healthCheck send / expect Traefik takes


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    """How a load balancer's servers are probed, normalised like Traefik: non-positive intervals become 30 s, timeout 5 s."""

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
