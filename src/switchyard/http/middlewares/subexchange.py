"""An exchange a middleware makes for a request of its own to the handlers behind it.

``errors`` sends a new GET for the error page; ``buffering`` sends the request again with the
body it has stored. Either way the request is not the client's, but the client's connection
is still where the answer goes and what paces it: batching (cork), response backpressure,
protocol upgrades and "finished" callbacks are the client exchange's. The caller sets
``writer`` to pass the answer on, and may give a ``BodySource`` that replays a stored body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from switchyard.http.detached import NO_CONNECTION
from switchyard.http.exchange import Exchange

if TYPE_CHECKING:
    from collections.abc import Callable

    from switchyard.http.handler import BodyConsumer, Producer
    from switchyard.http.message import RequestHead
    from switchyard.http.tunnel import Endpoint

__all__ = ["BodySource", "SubExchange"]


class BodySource(Protocol):
    """A stored request body that can be delivered (again) with backpressure."""

    def replay(self, consumer: BodyConsumer) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class SubExchange(Exchange):
    """A middleware's own request on behalf of ``outer`` (see the module docstring)."""

    __slots__ = ("_body", "outer")

    def __init__(self, outer: Exchange, request: RequestHead,
                 body: BodySource | None = None) -> None:
        super().__init__(NO_CONNECTION, request, outer.info, has_body=body is not None,
                         keep_alive=True, expect_continue=False, started_at=outer.started_at)
        self.outer = outer
        self._body = body
        self.router = outer.router

    def read_body(self, consumer: BodyConsumer) -> None:
        if self._body is None:
            super().read_body(consumer)
        else:
            self._body.replay(consumer)

    def pause_body(self) -> None:
        if self._body is not None:
            self._body.pause()

    def resume_body(self) -> None:
        if self._body is not None:
            self._body.resume()

    def set_producer(self, producer: Producer | None) -> None:
        self.outer.set_producer(producer)

    def cork(self) -> None:
        self.outer.cork()

    def uncork(self) -> None:
        self.outer.uncork()

    def upgrade(self, backend: Endpoint, backend_bytes: bytes = b"") -> None:
        self.finished = True
        self.outer.upgrade(backend, backend_bytes)

    def on_finish(self, callback: Callable[[], None]) -> None:
        self.outer.on_finish(callback)

    def report_to_outer(self) -> None:
        """Copy what the handlers noted for the record (service, server) onto ``outer``."""
        if self.service:
            self.outer.service = self.service
        if self.server:
            self.outer.server = self.server
