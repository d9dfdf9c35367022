"""`errors`: a response whose status is in ``status`` is replaced by a page from another service.

As in Traefik: the backend's own head and body are dropped (the body is read to its end, so the
connection to the backend stays reusable); once it has ended, a new ``GET`` for ``query`` (with
``{status}``, ``{originalStatus}`` and ``{url}`` filled in) goes through ``service`` carrying the
original request's Host and header fields (only those listed in ``errorRequestHeaders`` when that
is set), and its answer reaches the client with the original status, or the one
``statusRewrites`` maps it to. A response cut short stays cut short.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Attempt, Handler, ResponseWriter
from switchyard.http.message import Headers, RequestHead, ResponseHead
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.subexchange import SubExchange

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["ErrorPages", "StatusRanges", "build", "parse_status_ranges"]

# Fields Go's client never sends from a request's header map for a body-less GET.
_NOT_COPIED = frozenset({b"content-length", b"transfer-encoding", b"host"})
_GO_ATOI = re.compile(r"[+-]?[0-9]+")


class ErrorsOptions(TraefikModel):
    status: StrList = Field(default_factory=list)
    status_rewrites: dict[str, int] = Field(default_factory=dict)
    service: str = ""
    query: str = ""
    error_request_headers: list[str] | None = None


class StatusRanges:
    """Inclusive status code ranges, as Traefik's HTTPCodeRanges."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self.ranges = tuple(ranges)

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and any(low <= status <= high for low, high in self.ranges)


def _go_atoi(text: str) -> int:
    if not _GO_ATOI.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def parse_status_ranges(blocks: Sequence[str]) -> StatusRanges:
    """``["404", "500-599"]`` -> ranges; a block is split on ``-`` and its first two parts read
    as Go's Atoi reads them (ValueError with Go's message otherwise)."""
    ranges = []
    for block in blocks:
        codes = block.split("-")
        if len(codes) == 1:
            codes.append(codes[0])
        ranges.append((_go_atoi(codes[0]), _go_atoi(codes[1])))
    return StatusRanges(ranges)


class _WithStatus:
    """ResponseWriter: the page service's answer with the caught status code.

    Traefik's service metrics count the page request too, under the page service and with the
    caught status: the page is noted on the client's exchange as one more Attempt.
    """

    __slots__ = ("_next", "_page", "_size", "_started", "_status")

    def __init__(self, next_writer: ResponseWriter, status: int, page: SubExchange) -> None:
        self._next = next_writer
        self._status = status
        self._page = page
        self._size = 0
        self._started = time.monotonic()

    def start(self, head: ResponseHead) -> None:
        head.status = self._status
        self._next.start(head)

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._next.write(chunk)

    def end(self) -> None:
        page = self._page
        if page.server and page.observed:
            page.outer.attempts += (Attempt(page.service, self._status, 0, self._size,
                                            time.monotonic() - self._started),)
        self._next.end()

    def abort(self) -> None:
        self._next.abort()


class _Catcher:
    """ResponseWriter: passes a response on untouched unless its status is watched; a watched
    one is swallowed, and its end fetches the page instead."""

    __slots__ = ("_caught", "_exchange", "_middleware", "_next")

    def __init__(self, next_writer: ResponseWriter, exchange: Exchange,
                 middleware: ErrorPages) -> None:
        self._next = next_writer
        self._exchange = exchange
        self._middleware = middleware
        self._caught = 0

    def start(self, head: ResponseHead) -> None:
        if head.status in self._middleware.ranges:
            self._caught = head.status
        else:
            self._next.start(head)

    def write(self, chunk: bytes) -> None:
        if not self._caught:
            self._next.write(chunk)

    def end(self) -> None:
        if not self._caught:
            self._next.end()
        elif not self._exchange.finished:
            # The backend's answer is replaced whole: its trailers go with its body.
            self._exchange.response_trailers = None
            self._middleware.serve_page(self._exchange, self._next, self._caught)

    def abort(self) -> None:
        self._next.abort()


class ErrorPages:
    """Handler: watches the response status and serves the error page for a caught one."""

    __slots__ = ("headers", "next", "query", "ranges", "rewrites", "service")

    def __init__(self, next_handler: Handler, service: Handler, ranges: StatusRanges,
                 rewrites: Sequence[tuple[StatusRanges, int]], query: str,
                 headers: tuple[bytes, ...] | None) -> None:
        self.next = next_handler
        self.service = service
        self.ranges = ranges
        self.rewrites = tuple(rewrites)
        self.query = query
        self.headers = headers

    def handle(self, exchange: Exchange) -> None:
        exchange.writer = _Catcher(exchange.writer, exchange, self)
        self.next.handle(exchange)

    def serve_page(self, exchange: Exchange, writer: ResponseWriter, original: int) -> None:
        status = original
        for ranges, target in self.rewrites:
            if original in ranges:
                status = target
                break
        request = exchange.request
        page = SubExchange(exchange, RequestHead(
            b"GET", self._target(exchange, status, original), b"1.1",
            self._page_headers(request.headers)))
        page.writer = _WithStatus(writer, status, page)
        self.service.handle(page)

    def _target(self, exchange: Exchange, status: int, original: int) -> bytes:
        if not self.query:
            return b"/"
        query = "/" + self.query.removeprefix("/")
        query = query.replace("{status}", str(status))
        query = query.replace("{originalStatus}", str(original))
        if "{url}" in query:
            query = query.replace("{url}", quote_plus(_original_url(exchange), safe=""))
        return query.encode("utf-8")

    def _page_headers(self, headers: Headers) -> Headers:
        host = headers.get(b"host")
        fields = Headers() if host is None else Headers([(b"Host", host)])
        wanted = self.headers
        for name, value in headers:
            lower = name.lower()
            if lower in _NOT_COPIED:
                continue
            if wanted is None or lower in wanted:
                fields.append((name, value))
        return fields


def _original_url(exchange: Exchange) -> str:
    """What Go's ``url.URL.String()`` gives for the request as the middleware saw it."""
    request = exchange.request
    scheme = "https" if exchange.info.tls else "http"
    url = f"{scheme}://{request.host}{request.raw_path.decode('latin-1')}"
    query = request.raw_query
    return f"{url}?{query.decode('latin-1')}" if query else url


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(ErrorsOptions, options)
    try:
        ranges = parse_status_ranges(config.status)
    except ValueError as exc:
        raise MiddlewareError(f"status: {exc}; give codes such as 404 or ranges such as "
                              "500-599") from None
    rewrites = []
    for key, target in config.status_rewrites.items():
        try:
            rewrites.append((parse_status_ranges([key]), target))
        except ValueError as exc:
            raise MiddlewareError(f"statusRewrites: {exc}; keys are codes such as 418 or "
                                  "ranges such as 500-599") from None
    if context.service is None:
        raise MiddlewareError("service: the errors middleware needs a service to build")
    if not config.service:
        raise MiddlewareError("service: name the service that serves the error pages")
    service = context.service(context.qualify(config.service))
    wanted = (None if config.error_request_headers is None
              else tuple(name.lower().encode("latin-1") for name in config.error_request_headers))
    return lambda next_handler: ErrorPages(next_handler, service, ranges, rewrites, config.query,
                                           wanted)
