"""`addPrefix`: puts a fixed prefix in front of the request path before it is forwarded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange


class AddPrefixOptions(TraefikModel):
    prefix: str = ""


class AddPrefix:
    __slots__ = ("next", "prefix")

    def __init__(self, prefix: bytes, next_handler: Handler) -> None:
        self.prefix = prefix
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if self.prefix:
            exchange.request.set_path(self.prefix + exchange.request.raw_path)
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    prefix = parse_options(AddPrefixOptions, options).prefix.encode("utf-8")
    return lambda next_handler: AddPrefix(prefix, next_handler)
