"""`replacePath`: the request path becomes a fixed one; the old one goes in X-Replaced-Path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.gourl import URLPath, unescape
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options
from switchyard.http.middlewares.pathing import bad_request, request_path, set_request_path
from switchyard.http.responder import http_error

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["REPLACED_PATH", "ReplacePath", "build", "replace_raw_path"]

REPLACED_PATH = b"X-Replaced-Path"


class ReplacePathOptions(TraefikModel):
    path: str = ""


def current_path(url: URLPath) -> bytes:
    """What Traefik records as the replaced path: the raw path, else the escaped one."""
    return url.raw or url.escaped()


def replace_raw_path(exchange: Exchange, raw: bytes) -> URLPath | None:
    """Make ``raw`` the request's raw path (decoded for Path). A bad %XX escape in it is
    answered as Traefik does (500 with Go's error) and gives None."""
    try:
        url = URLPath(unescape(raw), raw)
    except ValueError as exc:
        http_error(exchange, 500, str(exc))
        return None
    set_request_path(exchange.request, url)
    return url


class ReplacePath:
    __slots__ = ("next", "path")

    def __init__(self, path: bytes, next_handler: Handler) -> None:
        self.path = path
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        url = request_path(request)
        if url is None:
            bad_request(exchange)
            return
        request.headers.append((REPLACED_PATH, current_path(url)))
        if replace_raw_path(exchange, self.path) is not None:
            self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    path = parse_options(ReplacePathOptions, options).path.encode("utf-8")
    return lambda next_handler: ReplacePath(path, next_handler)
