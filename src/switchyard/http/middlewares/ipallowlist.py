"""`ipAllowList` (and the deprecated `ipWhiteList`): only listed client addresses get through.

The address is picked by ``ipStrategy`` (see sourcecriterion); a refused request gets
``rejectStatusCode`` (403 by default; ``ipWhiteList`` always answers 403) with the status text
as its body and no Content-Type, as Traefik writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.message import Headers, reason
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.sourcecriterion import (
    IPStrategyOptions,
    SourceExtractor,
    ip_strategy,
)
from switchyard.http.responder import Responder
from switchyard.ipcheck import IPChecker

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["IPAllowListOptions", "build"]

log = logging.getLogger("switchyard.http.middlewares")

class IPAllowListOptions(TraefikModel):
    source_range: StrList = Field(default_factory=list)
    ip_strategy: IPStrategyOptions | None = Field(default=None, alias="ipStrategy")
    reject_status_code: int = 0


class IPAllowList:
    """Handler: passes requests whose picked address is in ``sourceRange``, refuses the rest."""

    __slots__ = ("checker", "client_address", "next", "refusal")

    def __init__(self, checker: IPChecker, client_address: SourceExtractor, refusal: Handler,
                 next_handler: Handler) -> None:
        self.checker = checker
        self.client_address = client_address
        self.refusal = refusal
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        if self.checker.authorizes(self.client_address(exchange)):
            self.next.handle(exchange)
        else:
            self.refusal.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(IPAllowListOptions, options)
    deprecated = context.kind == "ipWhiteList"
    if deprecated and config.reject_status_code:
        raise MiddlewareError("rejectStatusCode: ipWhiteList has no such option (Traefik refuses "
                              "the file); rename the type to ipAllowList to choose the status")
    if deprecated and context.router:
        log.warning('middleware "%s" of type ipWhiteList is deprecated; rename the type to '
                    "ipAllowList, which takes the same options", context.name)
    if not config.source_range:
        raise MiddlewareError("sourceRange is empty: list the IPs or CIDRs to allow "
                              "(e.g. 10.0.0.0/8)")
    try:
        checker = IPChecker(config.source_range)
    except ValueError as exc:
        raise MiddlewareError(f"sourceRange: {exc}") from None
    status = 403 if deprecated or not config.reject_status_code else config.reject_status_code
    if not reason(status):
        raise MiddlewareError(f"rejectStatusCode: invalid HTTP status code {status}; give a "
                              "standard code such as 403 or 404")
    picker = ip_strategy(config.ip_strategy)
    refusal = _refusal(status)
    return lambda next_handler: IPAllowList(checker, picker, refusal, next_handler)


def _refusal(status: int) -> Handler:
    """What Traefik's refusal comes out as: the status text as body, no Content-Type."""
    if status == 101:
        return _SwitchingProtocols()
    if status < 200:
        # Go sends the 1xx as an interim answer, then the body write makes it a 200.
        return Responder(200, Headers(), reason(status).encode("latin-1"))
    if status in (204, 304):
        return Responder(status)
    return Responder(status, Headers(), reason(status).encode("latin-1"))


class _SwitchingProtocols:
    """A 101 with nothing behind it: the connection cannot carry another request."""

    __slots__ = ()

    def handle(self, exchange: Exchange) -> None:
        exchange.close_after = True
        exchange.respond(101)
