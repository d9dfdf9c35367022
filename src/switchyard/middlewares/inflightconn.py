"""inFlightConn: a cap on simultaneous connections per client IP."""

from __future__ import annotations

from switchyard.middlewares.base import Admissible


class InFlightConn:
    """Refuses a client IP's connection once `amount` of its connections are open.

    As in Traefik the key is the client IP string and `amount <= 0` refuses
    every connection. The counters live in the object, so the
    builder decides how widely one instance is shared.
    """

    __slots__ = ("_open", "amount", "name")
    kind = "inFlightConn"

    def __init__(self, name: str, amount: int) -> None:
        self.name = name
        self.amount = amount
        self._open: dict[str, int] = {}

    def open_connections(self, client_ip: str) -> int:
        return self._open.get(client_ip, 0)

    def refusal(self, client_ip: str) -> str | None:
        if self._open.get(client_ip, 0) >= self.amount:
            return (f"max number of connections reached for {client_ip} "
                    f"({self.amount}, {self.name})")
        return None

    def enter(self, conn: Admissible) -> None:
        ip = conn.client_ip
        self._open[ip] = self._open.get(ip, 0) + 1
        conn.on_close(lambda: self._release(ip))

    def _release(self, ip: str) -> None:
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
        else:
            self._open.pop(ip, None)
