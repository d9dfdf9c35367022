"""What `redirectRegex` and `redirectScheme` share: rewrite the request URL, redirect when it changed.

Both build the URL the client used (``scheme://host[:port]/path?query``), run a Go regex
replacement over it, and answer with the new URL in Location when the text changed; an
unchanged URL lets the request through. The status is 302 (307 for any method but GET), or
301 (308) when permanent; the body is the status text with no Content-Type, as Traefik
writes it. A new URL that Go's url.Parse refuses is answered 502.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from switchyard.gourl import parse_url
from switchyard.http.handler import Handler
from switchyard.http.message import Headers, reason
from switchyard.rules.goregexp import GoRegexp

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import RequestHead

__all__ = ["Redirect", "redirect_status", "request_uri"]

ClientURL = Callable[["Exchange"], bytes]


def redirect_status(method: bytes, permanent: bool) -> int:
    if method == b"GET":
        return 301 if permanent else 302
    return 308 if permanent else 307


def request_uri(request: RequestHead) -> bytes:
    """The origin-form target (path and query) Traefik's entry point leaves in RequestURI."""
    path, query = request.raw_path or b"/", request.raw_query
    return path + b"?" + query if query or b"?" in request.target else path


class Redirect:
    """Handler: redirects when ``regexp`` over ``client_url(exchange)`` rewrites it."""

    __slots__ = ("client_url", "next", "permanent", "regexp", "replacement")

    def __init__(self, regexp: GoRegexp, replacement: bytes, permanent: bool,
                 client_url: ClientURL, next_handler: Handler) -> None:
        self.regexp = regexp
        self.replacement = replacement
        self.permanent = permanent
        self.client_url = client_url
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        old = self.client_url(exchange)
        if not self.regexp.matches(old):
            self.next.handle(exchange)
            return
        new = self.regexp.replace_all(old, self.replacement)
        try:
            url = parse_url(new)
        except ValueError:
            # Go's url.Error counts as a network error for Traefik's handler: 502, no type.
            exchange.respond(502, None, reason(502).encode("latin-1"))
            return
        if new != old:
            status = redirect_status(exchange.request.method, self.permanent)
            exchange.respond(status, Headers([(b"Location", url.string())]),
                             reason(status).encode("latin-1"))
            return
        exchange.request.set_path(url.request_uri().partition(b"?")[0])
        self.next.handle(exchange)
