"""`addPrefix`: puts a fixed prefix in front of the request path before it is forwarded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.gourl import URLPath
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.pathing import (
    bad_request,
    ensure_leading_slash,
    request_path,
    set_request_path,
)

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange


class AddPrefixOptions(TraefikModel):
    prefix: str = ""


class AddPrefix:
    """Handler: the prefix goes in front of both the decoded and the raw path, as in Traefik
    (so a prefix with characters a path must escape comes out escaped)."""

    __slots__ = ("next", "prefix")

    def __init__(self, prefix: bytes, next_handler: Handler) -> None:
        self.prefix = prefix
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        url = request_path(request)
        if url is None:
            bad_request(exchange)
            return
        raw = ensure_leading_slash(self.prefix + url.raw) if url.raw else b""
        set_request_path(request, URLPath(ensure_leading_slash(self.prefix + url.path), raw))
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    prefix = parse_options(AddPrefixOptions, options).prefix
    if not prefix:
        raise MiddlewareError("prefix cannot be empty: set addPrefix.prefix, e.g. \"/api\"")
    encoded = prefix.encode("utf-8")
    return lambda next_handler: AddPrefix(encoded, next_handler)
