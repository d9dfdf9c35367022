"""`replacePathRegex`: rewrites the escaped path with a Go regex and template (X-Replaced-Path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.pathing import bad_request, request_path, sanitized
from switchyard.http.middlewares.replacepath import REPLACED_PATH, current_path, replace_raw_path
from switchyard.rules.goregexp import GoRegexp
from switchyard.rules.request import go_trim_space

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange


class ReplacePathRegexOptions(TraefikModel):
    regex: str = ""
    replacement: str = ""


class ReplacePathRegex:
    """Handler: when the regex matches the escaped path, every match is replaced (Go's
    ReplaceAllString, ``$1``/``${name}``); a result that is not a clean path is refused (400)."""

    __slots__ = ("next", "regexp", "replacement")

    def __init__(self, regexp: GoRegexp, replacement: bytes, next_handler: Handler) -> None:
        self.regexp = regexp
        self.replacement = replacement
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        url = request_path(request)
        if url is None:
            bad_request(exchange)
            return
        current = current_path(url)
        if self.regexp.matches(current):
            request.headers.append((REPLACED_PATH, current))
            replaced = replace_raw_path(exchange, self.regexp.replace_all(current,
                                                                          self.replacement))
            if replaced is None:
                return
            if sanitized(replaced) is None:
                bad_request(exchange)
                return
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(ReplacePathRegexOptions, options)
    try:
        regexp = GoRegexp(go_trim_space(config.regex))
    except ValueError as exc:
        raise MiddlewareError(f"regex: invalid regular expression `{config.regex}`: {exc}") from None
    replacement = go_trim_space(config.replacement).encode("utf-8")
    return lambda next_handler: ReplacePathRegex(regexp, replacement, next_handler)
