"""The weighted service: weighted round robin over child services."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchyard.services.loadbalancer import Server
from switchyard.services.transport import ServersTransport
from switchyard.services.wrr import WeightedRoundRobin


class Child(Protocol):
    """A service a weighted service splits over: a load balancer or another weighted one."""

    name: str

    @property
    def up(self) -> bool: ...

    def pick(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None: ...
    def peek(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None: ...


@dataclass(eq=False, slots=True)
class WeightedService:
    """Picks a child service by weight, then lets the child pick a server.

    A child counts as UP while it has a server that can take a connection, so
    a dead child is skipped instead of failing the connection (Traefik only
    learns that when health checks propagate status).
    """

    name: str
    children: Sequence[tuple[Child, int]]
    health_checked: bool = False
    _wrr: WeightedRoundRobin[Child] = field(init=False)

    def __post_init__(self) -> None:
        self._wrr = WeightedRoundRobin(self.children)

    @property
    def up(self) -> bool:
        return self._wrr.has_candidate()

    def pick(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None:
        """A child by weight, then its server for ``client_ip`` (none of ``exclude``).

        With ``exclude`` (a retry), a child left with no server to offer passes the turn to
        the next one.
        """
        for _ in range(max(len(self.children), 1) if exclude else 1):
            child = self._wrr.pick()
            if child is None:
                return None
            found = child.pick(client_ip, exclude)
            if found is not None:
                return found
        return None

    def peek(self, client_ip: str = "", exclude: Collection[Server] = ()
             ) -> tuple[Server, ServersTransport] | None:
        """What `pick` would return now, without moving any rotation on."""
        child = self._wrr.peek()
        return None if child is None else child.peek(client_ip, exclude)
