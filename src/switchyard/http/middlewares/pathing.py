"""What the path middlewares share: the request's Go URL path, and writing a new one back.

Traefik's path middlewares change ``req.URL`` (its decoded Path and its RawPath) and then set
the RequestURI from it, which is what the next middleware and the reverse proxy read. Here the
request-target plays the RequestURI: a middleware takes the target's path apart as Go would
(:func:`request_path`), changes it and writes the escaped result back (:func:`set_request_path`).
An empty path is kept empty, as Go keeps ``URL.Path`` empty; the proxy sends ``/`` for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchyard.gourl import URLPath, join_path
from switchyard.http.responder import http_error

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange
    from switchyard.http.message import RequestHead

__all__ = [
    "bad_request",
    "encoded_prefix_length",
    "ensure_leading_slash",
    "request_path",
    "sanitized",
    "set_request_path",
]


def request_path(request: RequestHead) -> URLPath | None:
    """The request's (Path, RawPath) as Go's url.URL holds them; None for a bad %XX escape."""
    try:
        return URLPath.parse(request.raw_path)
    except ValueError:
        return None


def set_request_path(request: RequestHead, url: URLPath) -> None:
    """The target's path becomes ``url``'s escaped form (the query stays)."""
    request.set_path(url.escaped() if url.path else b"")


def ensure_leading_slash(path: bytes) -> bytes:
    return path if not path or path[:1] == b"/" else b"/" + path


def encoded_prefix_length(raw: bytes, decoded_length: int) -> int:
    """How many bytes of ``raw`` spell the first ``decoded_length`` decoded bytes (a ``%XX``
    counts as one, as Traefik counts it)."""
    index = decoded = 0
    size = len(raw)
    while index < size and decoded < decoded_length:
        index += 3 if raw[index] == 0x25 and index + 2 < size else 1
        decoded += 1
    return index


def sanitized(url: URLPath) -> URLPath | None:
    """``url`` after Go's JoinPath(), or None when cleaning would change its decoded path
    (``//``, ``.`` or ``..`` segments a strip or a replacement produced): Traefik refuses that.
    An empty path stays as it is."""
    if not url.path:
        return url
    cleaned = join_path(url)
    return cleaned if cleaned.path == url.path else None


def bad_request(exchange: Exchange) -> None:
    """Go's ``http.Error(rw, "Bad Request", 400)``."""
    http_error(exchange, 400, "Bad Request")
