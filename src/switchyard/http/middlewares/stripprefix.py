"""`stripPrefix`: removes the first configured prefix the path starts with (X-Forwarded-Prefix)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from switchyard.config.dynamic import StrList, TraefikModel
from switchyard.gourl import URLPath
from switchyard.http.handler import Handler
from switchyard.http.middlewares.base import MiddlewareContext, Wrap, parse_options
from switchyard.http.middlewares.pathing import (
    bad_request,
    encoded_prefix_length,
    ensure_leading_slash,
    request_path,
    sanitized,
    set_request_path,
)
from switchyard.rules.request import go_trim_space

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["FORWARDED_PREFIX", "StripPrefix", "build", "strip"]

FORWARDED_PREFIX = b"X-Forwarded-Prefix"


class StripPrefixOptions(TraefikModel):
    prefixes: StrList = Field(default_factory=list)
    # Deprecated in Traefik v3 (it logs a warning) but still honoured: the remainder always
    # starts with exactly the slash it had or one added ("/api" on "/api" gives "/", not "").
    force_slash: bool | None = None


def strip(exchange: Exchange, url: URLPath, prefix: bytes, force_slash: bool = False) -> bool:
    """Strip the decoded ``prefix`` (which ``url.path`` starts with) from the request path,
    the raw path alike. False when the result is not a clean path: answered with 400."""
    rest = url.path[len(prefix):]
    raw_rest = url.raw[encoded_prefix_length(url.raw, len(prefix)):] if url.raw else b""
    if force_slash:
        path = b"/" + _trim_slash(rest)
        raw = b"/" + _trim_slash(raw_rest) if url.raw else b""
    else:
        path = ensure_leading_slash(rest)
        raw = ensure_leading_slash(raw_rest) if url.raw else b""
    cleaned = sanitized(URLPath(path, raw))
    if cleaned is None:
        bad_request(exchange)
        return False
    set_request_path(exchange.request, cleaned)
    return True


def _trim_slash(path: bytes) -> bytes:
    return path[1:] if path[:1] == b"/" else path


class StripPrefix:
    """Handler: the first prefix (in declared order) that the decoded path starts with is
    removed, even in the middle of a segment, as Traefik does ("/api" on "/apix" gives "/x")."""

    __slots__ = ("force_slash", "next", "prefixes")

    def __init__(self, prefixes: tuple[bytes, ...], force_slash: bool,
                 next_handler: Handler) -> None:
        self.prefixes = prefixes
        self.force_slash = force_slash
        self.next = next_handler

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        url = request_path(request)
        if url is None:
            bad_request(exchange)
            return
        for prefix in self.prefixes:
            if url.path.startswith(prefix):
                if not strip(exchange, url, prefix, self.force_slash):
                    return
                request.headers.append((FORWARDED_PREFIX, prefix))
                break
        self.next.handle(exchange)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(StripPrefixOptions, options)
    prefixes = tuple(go_trim_space(prefix).encode("utf-8") for prefix in config.prefixes)
    force_slash = bool(config.force_slash)
    return lambda next_handler: StripPrefix(prefixes, force_slash, next_handler)
