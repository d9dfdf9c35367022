"""`contentType`: gives a response without Content-Type the type Go sniffs from its body.

Traefik switches Go's sniffing off on every entry point, so by default a response goes out
without Content-Type when the backend sent none (Switchyard never adds one either); this
middleware switches it back on for what passes through it. Go's server sniffs when it writes the
head, from the body bytes buffered by then; what a client observes of Traefik is:

* a response with a Content-Length whose first body bytes arrive within the proxy's flush
  interval (100 ms) is typed from the start of its body (up to 512 bytes);
* a response with no body, a Content-Encoding, or no Content-Length (streamed: Traefik's
  proxy flushes its head at once) gets no type, nor one whose body comes later than that.

The deprecated ``autoDetect``: ``false`` turns the middleware into nothing, ``true`` is the
default; either way Traefik warns that the option is deprecated, and so does Switchyard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler, ResponseWriter
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options
from switchyard.http.middlewares.contentsniff import SNIFF_LENGTH, detect_content_type

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import ResponseHead

__all__ = ["ContentTypeOptions", "build"]

log = logging.getLogger("switchyard.http.middlewares")

#: Traefik's default ``responseForwarding.flushInterval``: its proxy writes the head by then.
FLUSH_INTERVAL = 0.1


class ContentTypeOptions(TraefikModel):
    auto_detect: bool | None = None


class ContentTypeDetection:
    """Handler: the responses of ``next`` get a sniffed Content-Type where Go would give one."""

    __slots__ = ("next",)

    def __init__(self, next_handler: Handler) -> None:
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        exchange.writer = _Sniffing(exchange.writer)
        self.next.handle(exchange)


def _sniffable(head: ResponseHead) -> bool:
    status = head.status
    if status < 200 or status in (204, 304):
        return False
    fields = head.headers
    typed = encoded = length = False
    for name, value in fields:
        lower = name.lower()
        if lower == b"content-type":
            typed = True
        elif lower == b"content-encoding":
            encoded = encoded or bool(value)
        elif lower == b"content-length":
            length = True
    return length and not typed and not encoded


class _Sniffing:
    """ResponseWriter: holds a head without Content-Type until enough body bytes are in."""

    __slots__ = ("_head", "_held", "_next", "_size", "_timer")

    def __init__(self, next_writer: ResponseWriter) -> None:
        self._next = next_writer
        self._head: ResponseHead | None = None
        self._held: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def start(self, head: ResponseHead) -> None:
        if not _sniffable(head):
            self._next.start(head)
            return
        self._head = head
        self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._release)

    def write(self, chunk: bytes) -> None:
        if self._head is None:
            self._next.write(chunk)
            return
        if chunk:
            self._held.append(chunk)
            self._size += len(chunk)
            if self._size >= SNIFF_LENGTH:
                self._release()

    def end(self) -> None:
        self._release()
        self._next.end()

    def abort(self) -> None:
        self._cancel()
        self._head, self._held = None, []
        self._next.abort()

    def _release(self) -> None:
        """Write the held head, typed from the held bytes if there are any, then those bytes."""
        head = self._head
        if head is None:
            return
        self._cancel()
        self._head = None
        held, self._held = self._held, []
        if held:
            body = b"".join(held)
            head.headers.append((b"Content-Type", detect_content_type(body).encode("ascii")))
            self._next.start(head)
            self._next.write(body)
        else:
            self._next.start(head)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(ContentTypeOptions, options)
    if config.auto_detect is not None:
        log.warning('middleware "%s": autoDetect is deprecated; the contentType middleware only '
                    "switches Content-Type detection on, remove the option", context.name)
        if not config.auto_detect:
            return lambda next_handler: next_handler
    return ContentTypeDetection
