"""`redirectScheme`: redirects to the same URL with another scheme (and port)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchyard.config.dynamic import TraefikModel
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap, parse_options
from switchyard.http.middlewares.redirect import Redirect, request_uri
from switchyard.rules.goregexp import GoRegexp
from switchyard.rules.request import split_host_port

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

# Traefik's own pattern over the client URL: scheme, host (bracketed IPv6 or a name), port, rest.
_URI_PATTERN = GoRegexp(r"^(https?:\/\/)?(\[[\w:.]+\]|[\w\._-]+)?(:\d+)?(.*)$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class RedirectSchemeOptions(TraefikModel):
    scheme: str = ""
    port: str = ""
    permanent: bool = False


def client_url(exchange: Exchange) -> bytes:
    """The URL the client used as Traefik reconstructs it: the scheme from X-Forwarded-Proto
    (``ws``/``wss`` read as http/https; the entry point has set it from TLS unless a trusted
    peer sent one), the Host header's name and port, the default port for the scheme dropped."""
    request = exchange.request
    host = (request.headers.get(b"host") or b"").decode("latin-1")
    try:
        name, port = split_host_port(host)
        port = ":" + port
    except ValueError:
        name, port = host, ""
    scheme = "https" if exchange.info.tls else "http"
    proto = (request.headers.get(b"x-forwarded-proto") or b"").decode("latin-1").lower()
    if proto in ("http", "ws"):
        scheme = "http"
    elif proto in ("https", "wss"):
        scheme = "https"
    if port == ":" + _DEFAULT_PORTS[scheme]:
        port = ""
    return f"{scheme}://{name}{port}".encode("latin-1") + request_uri(request)


def build(options: Mapping[str, Any], context: MiddlewareContext) -> Wrap:
    config = parse_options(RedirectSchemeOptions, options)
    if not config.scheme:
        raise MiddlewareError('you must provide a target scheme: set redirectScheme.scheme, '
                              'e.g. "https"')
    port = ""
    if config.port and _DEFAULT_PORTS.get(config.scheme) != config.port:
        port = ":" + config.port
    replacement = f"{config.scheme}://${{2}}{port}${{4}}".encode("utf-8", "surrogateescape")
    permanent = config.permanent
    return lambda next_handler: Redirect(_URI_PATTERN, replacement, permanent, client_url,
                                         next_handler)
