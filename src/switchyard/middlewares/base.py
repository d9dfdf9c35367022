"""What a TCP middleware sees of a connection and how it answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Admissible(Protocol):
    """The part of a client connection a middleware may look at."""

    @property
    def client_ip(self) -> str: ...

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` once when the connection has fully ended."""


class Middleware(Protocol):
    """Decides whether a routed connection may go on to the service."""

    name: str

    def admit(self, conn: Admissible) -> str | None:
        """None to let the connection through, else the reason it is refused."""
