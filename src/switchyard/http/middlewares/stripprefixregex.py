"""`stripPrefixRegex`: removes the leading part of the path the first matching regex finds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.pathing import bad_request, request_path
from switchyard.http.middlewares.stripprefix import FORWARDED_PREFIX, strip
from switchyard.rules.goregexp import GoRegexp
from switchyard.rules.request import go_trim_space

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange


class StripPrefixRegexOptions(TraefikModel):
    regex: StrList = Field(default_factory=list)


class StripPrefixRegex:
    """Handler: each regex, in order, is searched in the decoded path; the first whose matched
    text is non-empty and is how the path starts has it stripped (X-Forwarded-Prefix set)."""

    __slots__ = ("expressions", "next")

    def __init__(self, expressions: tuple[GoRegexp, ...], next_handler: Handler) -> None:
        self.expressions = expressions
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        url = request_path(request)
        if url is None:
            bad_request(exchange)
            return
        for expression in self.expressions:
            spans = expression.find_submatch(url.path)
            if spans is None:
                continue
            start, end = spans[0]
            prefix = url.path[start:end]
            # Traefik compares the matched text with the path's start, wherever it matched.
            if not prefix or not url.path.startswith(prefix):
                continue
            request.headers.append((FORWARDED_PREFIX, prefix))
            if not strip(exchange, url, prefix):
                return
            break
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    expressions = []
    for index, pattern in enumerate(parse_options(StripPrefixRegexOptions, options).regex):
        try:
            expressions.append(GoRegexp(go_trim_space(pattern)))
        except ValueError as exc:
            raise MiddlewareError(f"regex[{index}]: invalid regular expression "
                                  f"`{pattern}`: {exc}") from None
    found = tuple(expressions)
    return lambda next_handler: StripPrefixRegex(found, next_handler)
