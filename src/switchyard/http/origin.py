"""What a server answered, before middlewares changed it: Traefik's ``Origin*`` access log fields.

The reverse proxy puts an OriginCapture in front of the exchange's writer when the exchange is
observed, so the record can tell the status, header fields, body size and time of the server's
response (or of the proxy's own 502/504) from what the client was finally sent. Each attempt a
retry makes gets its own; the exchange keeps the last one, as Traefik's log shows the last.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchyard.http.handler import ResponseWriter
    from switchyard.http.message import ResponseHead

__all__ = ["OriginCapture"]


class OriginCapture:
    """A ResponseWriter that passes everything on and notes the head, body size and duration."""

    __slots__ = ("_next", "_started", "duration", "head", "size")

    def __init__(self, next_writer: ResponseWriter) -> None:
        self._next = next_writer
        self._started = time.monotonic()
        self.head: ResponseHead | None = None
        self.size = 0
        self.duration: float | None = None  # None while the response is still under way

    @property
    def elapsed(self) -> float:
        """The time from the proxy taking the request to the end of the response (or now)."""
        return time.monotonic() - self._started if self.duration is None else self.duration

    def start(self, head: ResponseHead) -> None:
        self.head = head
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._next.write(chunk)

    def end(self) -> None:
        self.duration = time.monotonic() - self._started
        self._next.end()

    def abort(self) -> None:
        self.duration = time.monotonic() - self._started
        self._next.abort()
