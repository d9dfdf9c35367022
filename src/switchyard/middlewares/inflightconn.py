"""inFlightConn: a cap on simultaneous connections per client IP, per router or overall."""

from __future__ import annotations

from switchyard.middlewares.base import Admissible


class InFlightConn:
    """Refuses a connection once `amount` connections of its scope are open.

    `scope` is Traefik's `clientIP` (the key is the client IP string), `router` (every
    connection of the router counts, whatever its entry point) or `global` (every router
    using the middleware, HAProxy's `maxconn`). As in Traefik `amount <= 0` refuses every
    connection. The counts live in `counts`, which the builder shares between instances
    and keeps across reloads for the `router` and `global` scopes.
    """

    __slots__ = ("_open", "amount", "name", "scope")
    kind = "inFlightConn"

    def __init__(self, name: str, amount: int, scope: str = "clientIP",
                 counts: dict[str, int] | None = None) -> None:
        self.name = name
        self.amount = amount
        self.scope = scope or "clientIP"
        self._open: dict[str, int] = {} if counts is None else counts

    def _key(self, client_ip: str) -> str:
        return client_ip if self.scope == "clientIP" else ""

    def open_connections(self, client_ip: str) -> int:
        return self._open.get(self._key(client_ip), 0)

    def refusal(self, client_ip: str) -> str | None:
        if self._open.get(self._key(client_ip), 0) >= self.amount:
            whom = client_ip if self.scope == "clientIP" else (
                "the router" if self.scope == "router" else "every router using it")
            return f"max number of connections reached for {whom} ({self.amount}, {self.name})"
        return None

    def enter(self, conn: Admissible) -> None:
        key = self._key(conn.client_ip)
        self._open[key] = self._open.get(key, 0) + 1
        conn.on_close(lambda: self._release(key))

    def _release(self, key: str) -> None:
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)
