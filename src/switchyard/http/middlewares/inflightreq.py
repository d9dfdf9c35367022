"""`inFlightReq`: at most ``amount`` requests of one source are served at the same time.

Requests are grouped by ``sourceCriterion`` (the request host when none is set, as Traefik
does). A request over the limit is answered ``429`` with ``max connections reached: N``. A
request holds its slot until its exchange is over: the response ended or was cut short, or the
client went away, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options
from switchyard.http.middlewares.sourcecriterion import (
    SourceCriterionOptions,
    SourceExtractor,
    source_extractor,
)
from switchyard.http.responder import Responder

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["InFlightReqOptions", "build"]

_BY_HOST = SourceCriterionOptions.model_validate({"requestHost": True})


class InFlightReqOptions(TraefikModel):
    amount: int = 0
    source_criterion: SourceCriterionOptions | None = Field(default=None,
                                                            alias="sourceCriterion")


class InFlightLimit:
    """Handler: counts requests being served per source and refuses those over ``amount``."""

    __slots__ = ("amount", "counts", "next", "refusal", "source")

    def __init__(self, amount: int, source: SourceExtractor, next_handler: Handler) -> None:
        self.amount = amount
        self.source = source
        self.next = next_handler
        self.counts: dict[str, int] = {}
        self.refusal = Responder(429, Headers(), f"max connections reached: {amount}".encode())

    def handle(self, exchange: Exchange) -> None:
        key = self.source(exchange)
        counts = self.counts
        held = counts.get(key, 0)
        if held >= self.amount:
            self.refusal.handle(exchange)
            return
        counts[key] = held + 1
        exchange.on_finish(lambda: self._release(key))
        self.next.handle(exchange)

    def _release(self, key: str) -> None:
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]  # sources come and go: forget the idle ones


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(InFlightReqOptions, options)
    source = source_extractor(config.source_criterion, default=_BY_HOST)
    amount = config.amount
    return lambda next_handler: InFlightLimit(amount, source, next_handler)
