"""The HTTP ``mirroring`` service: the main service answers, mirrors get copies of requests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from switchyard.http.detached import NO_CONNECTION
from switchyard.http.exchange import Exchange
from switchyard.http.message import RequestHead
from switchyard.http.weighted import Child

if TYPE_CHECKING:
    from switchyard.http.handler import ResponseWriter
    from switchyard.http.message import ResponseHead

__all__ = ["Mirror", "MirroringService"]


class Mirror:
    """One ``mirrors[]`` entry: a service and the percentage of requests it is sent."""

    __slots__ = ("count", "handler", "percent")

    def __init__(self, handler: Child, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise ValueError("percent must be between 0 and 100")
        self.handler = handler
        self.percent = percent
        self.count = 0


class MirroringService:
    """Handler: ``main`` serves the client; once its response is complete, each mirror due its
    share gets a copy of the request, and what it answers is dropped.

    A mirror takes a request when its count x 100 stays below all requests x its percent, as in
    Traefik, so 10% is every tenth request, not a random tenth. Requests with a body are not
    mirrored yet: the engine hands a body to one consumer only (see the module's report).
    """

    __slots__ = ("main", "mirrors", "name", "total")

    def __init__(self, name: str, main: Child, mirrors: Sequence[Mirror]) -> None:
        self.name = name
        self.main = main
        self.mirrors = list(mirrors)
        self.total = 0

    @property
    def up(self) -> bool:
        return self.main.up  # a mirroring's state is its main service's, as in Traefik

    def due(self) -> list[Mirror]:
        """The mirrors that take the current request (counts every request, as Traefik)."""
        self.total += 1
        chosen = []
        for mirror in self.mirrors:
            if mirror.count * 100 < self.total * mirror.percent:
                mirror.count += 1
                chosen.append(mirror)
        return chosen

    def handle(self, exchange: Exchange) -> None:
        mirrors = self.due()
        if mirrors and not exchange.has_body:
            copy = RequestHead(exchange.request.method, exchange.request.target,
                               exchange.request.version, exchange.request.headers.copy())
            exchange.writer = _ThenMirror(exchange.writer, exchange, copy, mirrors)
        self.main.handle(exchange)


class _ThenMirror:
    """ResponseWriter: after the main response ends, sends the request copy to the mirrors."""

    __slots__ = ("_exchange", "_mirrors", "_next", "_request")

    def __init__(self, next_writer: ResponseWriter, exchange: Exchange, request: RequestHead,
                 mirrors: list[Mirror]) -> None:
        self._next = next_writer
        self._exchange = exchange
        self._request = request
        self._mirrors = mirrors

    def start(self, head: ResponseHead) -> None:
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._next.write(chunk)

    def end(self) -> None:
        self._next.end()
        info = self._exchange.info
        for mirror in self._mirrors:
            request = RequestHead(self._request.method, self._request.target,
                                  self._request.version, self._request.headers.copy())
            shadow = Exchange(NO_CONNECTION, request, info, has_body=False, keep_alive=True,
                              expect_continue=False, started_at=time.monotonic())
            mirror.handler.handle(shadow)

    def abort(self) -> None:
        # The main response broke off: Go's proxy panics out of the handler, no mirroring.
        self._next.abort()
