"""What a TCP middleware sees of a connection and how it answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Admissible(Protocol):
    """The part of a client connection a middleware may keep track of."""

    @property
    def client_ip(self) -> str: ...

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` once when the connection has fully ended."""


class Middleware(Protocol):
    """Decides whether a routed connection may go on to the service.

    `refusal` only looks (the routing decision and `explain` call it); `enter`
    records a connection that was let through, once it goes on to its service.
    """

    name: str
    kind: str  # the configuration key: ipAllowList, ipWhiteList, inFlightConn

    def refusal(self, client_ip: str) -> str | None:
        """None to let a connection from `client_ip` through now, else why it is refused."""

    def enter(self, conn: Admissible) -> None:
        """A connection it let through goes on to the service."""


class AsyncLimit(Protocol):
    """A middleware that answers asynchronously (a token to wait for, a store to ask).

    The decision cannot wait: a routed connection asks `admit` before its server is
    dialled, and is refused when it answers a reason.
    """

    name: str

    async def admit(self, client_ip: str) -> str | None: ...
