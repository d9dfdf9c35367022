"""Handlers that answer by themselves: fixed responses, Go's http.Error and NotFound, proxy errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchyard.http.message import Headers, reason

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["NOT_FOUND", "Responder", "http_error", "status_text_error"]

_TEXT_PLAIN = (b"Content-Type", b"text/plain; charset=utf-8")
_NOSNIFF = (b"X-Content-Type-Options", b"nosniff")


class Responder:
    """Answers every request with the same status, header fields and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        self.status = status
        self.headers = Headers() if headers is None else headers
        self.body = body

    def handle(self, exchange: Exchange) -> None:
        exchange.respond(self.status, self.headers, self.body)

    @classmethod
    def error(cls, status: int, text: str) -> Responder:
        """What Go's ``http.Error(w, text, status)`` writes."""
        return cls(status, Headers([_TEXT_PLAIN, _NOSNIFF]), text.encode("utf-8") + b"\n")


#: Go's http.NotFound, which Traefik serves when no router matches.
NOT_FOUND = Responder.error(404, "404 page not found")


def http_error(exchange: Exchange, status: int, text: str) -> None:
    """Answer as Go's ``http.Error`` does (``no available server`` for an empty balancer)."""
    exchange.respond(status, Headers([_TEXT_PLAIN, _NOSNIFF]), text.encode("utf-8") + b"\n")


def status_text_error(exchange: Exchange, status: int) -> None:
    """Answer as Traefik's proxy error handler does: the status text as the body, e.g. 502.

    Traefik sends it with a Content-Length and no Content-Type.
    """
    exchange.respond(status, None, reason(status).encode("latin-1"))
