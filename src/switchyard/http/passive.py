"""Passive health checks: failed live requests take a server out for ``failureWindow``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from switchyard.services.passive import FailureWindow

if TYPE_CHECKING:
    from switchyard.config.http import PassiveHealthCheck
    from switchyard.http.balancer import BalancedServer
    from switchyard.http.exchange import Exchange
    from switchyard.http.handler import Handler, ResponseWriter
    from switchyard.http.message import ResponseHead

__all__ = ["PassiveHealthChecked"]


def failed(status: int) -> bool:
    """Whether a request's outcome counts against its server, as Traefik counts it.

    ``status`` is what the response head carried (0: none was sent). A 5xx counts (the
    proxy's own 502 for a refused or reset connection and 504 for a timeout included); so does
    a response that ended before any head. A body cut short after a head below 500 does not.
    """
    return status == 0 or status >= 500


class PassiveHealthChecked:
    """Handler in front of a balancer (``next``): watches each request's outcome per server.

    The server is the one the proxy recorded in ``exchange.server`` (its URL); the counting
    (``failure_window``, ``max_failed_attempts``, the return after the window unless an active
    check owns the state) is the shared FailureWindow's. Requests the balancer answers itself
    (503 with nothing UP) concern no server.
    """

    __slots__ = ("_by_url", "failures", "name", "next")

    def __init__(self, name: str, next_handler: Handler, servers: Sequence[BalancedServer], *,
                 failure_window: float = 10.0, max_failed_attempts: int = 1,
                 active: bool = False) -> None:
        self.name = name
        self.next = next_handler
        self.failures: FailureWindow[BalancedServer] = FailureWindow(
            name, failure_window=failure_window, max_failed_attempts=max_failed_attempts,
            active=active, what="failed requests")
        self._by_url = {server.url: server for server in servers}

    @classmethod
    def from_config(cls, name: str, next_handler: Handler, servers: Sequence[BalancedServer],
                    config: PassiveHealthCheck, *, active: bool) -> PassiveHealthChecked:
        return cls(name, next_handler, servers, failure_window=config.failure_window,
                   max_failed_attempts=config.max_failed_attempts, active=active)

    @property
    def up(self) -> bool:
        return any(server.up for server in self._by_url.values())

    def handle(self, exchange: Exchange) -> None:
        exchange.writer = _OutcomeWriter(exchange.writer, exchange, self)
        self.next.handle(exchange)

    def outcome(self, url: str, status: int) -> None:
        """Count one finished request to the server at ``url``."""
        server = self._by_url.get(url)
        if server is None:
            return
        if failed(status):
            self.failures.failed(url, server)
        else:
            self.failures.succeeded(url)

    def close(self) -> None:
        """Drop pending returns (the service left the configuration)."""
        self.failures.close()


class _OutcomeWriter:
    """ResponseWriter: remembers the status and reports the outcome when the response ends."""

    __slots__ = ("_checker", "_exchange", "_next", "_status")

    def __init__(self, next_writer: ResponseWriter, exchange: Exchange,
                 checker: PassiveHealthChecked) -> None:
        self._next = next_writer
        self._exchange = exchange
        self._checker = checker
        self._status = 0

    def start(self, head: ResponseHead) -> None:
        if head.status >= 200 or head.status == 101:
            self._status = head.status
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._checker.outcome(self._exchange.server, self._status)
        self._next.end()

    def abort(self) -> None:
        self._checker.outcome(self._exchange.server, self._status)
        self._next.abort()
