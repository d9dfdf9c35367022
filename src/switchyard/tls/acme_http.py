"""The HTTP side of ACME's HTTP-01 challenge: answering ``/.well-known/acme-challenge/<token>``.

Traefik serves this path on every ``httpChallenge.entryPoint`` with an internal router
(``acme-http@internal``) of the highest priority, so no router of the user's can take it: a
known token gets its key authorization, anything else under the path gets an empty ``404``;
requests never fall through to the user's routers. ``ACMEChallengeHandler`` does the same
in front of an entry point's own handler::

    entry_points = {r.http_challenge_entrypoint() for r in resolvers} - {None}
    handler = ACMEChallengeHandler(resolvers, routers) if name in entry_points else routers

As in Traefik, the tokens of every resolver are answered on every such entry point. With
``allowACMEByPass`` on the entry point, Traefik gives that router an ordinary priority; use the
handler as the router's service then, with ``responder.NOT_FOUND`` as ``next``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import unquote

from switchyard.http.message import Headers
from switchyard.rules.request import entrypoint_path, routing_path

if TYPE_CHECKING:
    from collections.abc import Iterable

    from switchyard.http.exchange import Exchange
    from switchyard.http.handler import Handler

__all__ = [
    "CHALLENGE_PATH",
    "ROUTER_NAME",
    "ACMEChallengeHandler",
    "HTTPChallengeSource",
    "challenge_token",
]

#: The path prefix of HTTP-01 validation requests.
CHALLENGE_PATH = "/.well-known/acme-challenge/"
#: The name Traefik gives the router that answers them (access logs, metrics).
ROUTER_NAME = "acme-http@internal"
# What Go's content sniffing makes of a key authorization (base64url and a dot).
_TEXT_PLAIN = Headers([(b"Content-Type", b"text/plain; charset=utf-8")])


class HTTPChallengeSource(Protocol):
    """A resolver with pending HTTP-01 challenges (ACMEResolver)."""

    def http_challenge_response(self, token: str, host: str) -> bytes | None: ...


@runtime_checkable
class HTTPChallengeResolver(HTTPChallengeSource, Protocol):
    """A resolver that says on which entry point its HTTP-01 challenges are answered."""

    def http_challenge_entrypoint(self) -> str | None: ...


class ACMEChallengeHandler:
    """Answers HTTP-01 validation requests from ``resolvers``; hands any other request to next."""

    __slots__ = ("next", "resolvers")

    def __init__(self, resolvers: Iterable[HTTPChallengeSource], next: Handler) -> None:
        self.resolvers = tuple(resolvers)
        self.next = next

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        token = challenge_token(request.path)
        if token is None:
            self.next.handle(exchange)
            return
        if not exchange.router:
            exchange.router = ROUTER_NAME
        answer = self.response(token, request.host) if token else None
        if answer is None:
            # Traefik's challenge handler writes the status alone: no type, empty body.
            exchange.respond(404)
        else:
            exchange.respond(200, _TEXT_PLAIN, answer)

    def response(self, token: str, host: str) -> bytes | None:
        """The key authorization any of the resolvers holds for ``token`` on ``host``."""
        for resolver in self.resolvers:
            answer = resolver.http_challenge_response(token, host)
            if answer is not None:
                return answer
        return None


def challenge_token(path: str) -> str | None:
    """The token a request for ``path`` (escaped, without the query) asks for.

    None when the path is not under ``CHALLENGE_PATH`` as Traefik's router sees it (after its
    entry point cleaned the path; a path it refuses is not ours either), ``""`` when it is but
    names no token the way Traefik reads one: one segment, maybe with a trailing slash.
    """
    try:
        cleaned = entrypoint_path(path)
    except ValueError:
        return None
    routed = routing_path(cleaned)
    if routed is None or not routed.startswith(CHALLENGE_PATH):
        return None
    token = unquote(cleaned)[len(CHALLENGE_PATH) :].removesuffix("/")
    return "" if "/" in token else token
