"""Handlers for the ``@internal`` HTTP services routers may name (``service: api@internal``).

``noop@internal`` answers by itself (Traefik's 418 with no body). The others are Switchyard's
own API, dashboard, ping and Prometheus endpoints, served by the process on private Unix
sockets and reached through the ordinary reverse proxy, so a router's middlewares (a
``basicAuth`` in front of the dashboard) apply to them as to any service.
"""

from __future__ import annotations

from collections.abc import Mapping

from switchyard.http.handler import Handler
from switchyard.http.message import Headers
from switchyard.http.proxy import ReverseProxy, parse_server_url
from switchyard.http.responder import Responder
from switchyard.http.upstream import UpstreamPool, UpstreamSettings

__all__ = ["NOOP", "internal_handlers"]

NOOP = Responder(418, Headers())

# Outside a running instance (`check`, `explain --offline`) nothing serves the sockets.
_NOT_RUNNING = Responder.error(503, "Switchyard's internal services run only in a running instance")


def internal_handlers(available: Mapping[str, str | None],
                      sockets: Mapping[str, str] | None) -> dict[str, Handler]:
    """Internal service name -> handler, for those ``available`` (name -> None) has.

    ``sockets`` maps each served name to its Unix socket; None outside a running instance.
    """
    handlers: dict[str, Handler] = {}
    for name, why in available.items():
        if why is not None:
            continue
        if name == "noop@internal":
            handlers[name] = NOOP
            continue
        path = (sockets or {}).get(name)
        if path is None:
            handlers[name] = _NOT_RUNNING
            continue
        url = parse_server_url(f"http://{name.partition('@')[0]}.internal")
        settings = UpstreamSettings(name="internal@internal")
        pool = UpstreamPool(url.host, url.port, settings, unix_path=path)
        handlers[name] = ReverseProxy(url, pool)
    return handlers
