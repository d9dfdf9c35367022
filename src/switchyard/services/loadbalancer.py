"""The loadBalancer service: backend servers, picked by its strategy (weighted round robin)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import cast

from switchyard.services.passive import FailureWindow
from switchyard.services.strategies import Strategy, strategy_for
from switchyard.services.transport import ServersTransport

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


@dataclass(frozen=True, slots=True)
class PassiveSettings:
    """``passiveHealthCheck``: this many failed connections within the window take a server out."""

    failure_window: float = 10.0
    max_failed_attempts: int = 1


@dataclass(eq=False, slots=True)
class Server:
    """One backend address, its weight and its live state.

    ``open`` counts the connections relayed to it now (p2c and leastConn read it). ``attempts``
    and ``failures`` are its service's retry budget and passive health window, set by the
    load balancer so the data plane needs only the server it dialled.
    """

    address: str
    host: str
    port: int
    tls: bool = False
    up: bool = True
    weight: int = 1
    open: int = 0
    attempts: int = 1
    failures: FailureWindow[Server] | None = None

    def outcome(self, failed: bool) -> None:
        """A dial or a relayed connection ended: count it for passive health, if configured."""
        failures = self.failures
        if failures is None:
            return
        if failed:
            failures.failed(self.address, self)
        else:
            failures.succeeded(self.address)


@dataclass(eq=False, slots=True)
class LoadBalancer:
    """Spreads connections over servers with its strategy (Traefik: round robin, weight 1).

    ``retry_attempts`` is how many servers a connection may dial in all when dials are
    refused (1: no retry); ``passive`` counts failed dials and resets per server.
    """

    name: str
    servers: list[Server]
    transport: ServersTransport
    health_check: HealthCheckSettings | None = None
    strategy: str = "wrr"
    retry_attempts: int = 1
    passive: PassiveSettings | None = None
    failures: FailureWindow[Server] | None = field(init=False, default=None)
    _strategy: Strategy = field(init=False)
    _weightless: bool = field(init=False)

    def __post_init__(self) -> None:
        self._strategy = strategy_for(self.strategy, self.servers)
        self.strategy = self._strategy.name
        self._weightless = self.strategy == "p2c"  # p2c ignores weights, 0 included
        if self.passive is not None:
            self.failures = FailureWindow(
                self.name, failure_window=self.passive.failure_window,
                max_failed_attempts=self.passive.max_failed_attempts,
                active=self.health_check is not None, what="failed connections")
        for server in self.servers:
            server.attempts = max(self.retry_attempts, 1)
            server.failures = self.failures

    @property
    def up(self) -> bool:
        return any(s.up and (s.weight > 0 or self._weightless) for s in self.servers)

    def pick(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None:
        """The server for a connection from ``client_ip``, none of ``exclude`` (tried already)."""
        server = self._strategy.pick(client_ip, exclude)
        # The strategy holds this balancer's Servers (typing.cast is a call per connection).
        return None if server is None else (server, self.transport)  # type: ignore[return-value]

    def peek(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None:
        """What `pick` would return now, without moving the rotation on."""
        server = self._strategy.peek(client_ip, exclude)
        return None if server is None else (cast(Server, server), self.transport)

    def server_status(self) -> dict[str, str]:
        """Address -> UP/DOWN, as Traefik's API shows it."""
        return {s.address: "UP" if s.up else "DOWN" for s in self.servers}

    def close(self) -> None:
        """The service left the configuration: no passive return is pending any more."""
        if self.failures is not None:
            self.failures.close()
