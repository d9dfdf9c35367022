"""`redirectRegex`: redirects to a URL made from the request URL with a Go regex replacement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.redirect import Redirect, request_uri
from switchyard.rules.goregexp import GoRegexp

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange


class RedirectRegexOptions(TraefikModel):
    regex: str = ""
    replacement: str = ""
    permanent: bool = False


def client_url(exchange: Exchange) -> bytes:
    """``http(s)://`` + the Host header as sent (port included) + path and query; https when
    the connection is TLS (X-Forwarded-Proto is not read, unlike redirectScheme)."""
    request = exchange.request
    scheme = b"https://" if exchange.info.tls else b"http://"
    return scheme + (request.headers.get(b"host") or b"") + request_uri(request)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(RedirectRegexOptions, options)
    try:
        regexp = GoRegexp(config.regex)
    except ValueError as exc:
        raise MiddlewareError(f"regex: invalid regular expression `{config.regex}`: {exc}") from None
    replacement = config.replacement.encode("utf-8")
    permanent = config.permanent
    return lambda next_handler: Redirect(regexp, replacement, permanent, client_url, next_handler)
