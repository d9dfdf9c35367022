"""Compiles the `http:` configuration: services, servers transports, routers per entry point.

What it yields per entry point is an `EntryRouter`, the Handler that the
entry point's HTTP server calls for every request (first matching router,
else Go's `404 page not found`), and the HTTPS domains TLS dispatch needs.
Every element carries a status and its errors, as Traefik's API shows them;
a broken service or middleware disables only the routers that use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from switchyard.config.http import HTTPRouter, HTTPSection, HTTPService
from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.handler import Handler
from switchyard.http.proxy import ReverseProxy, parse_server_url
from switchyard.http.responder import NOT_FOUND
from switchyard.http.routing import (
    HandlerBuildError,
    HTTPRouteList,
    HTTPSDomain,
    RouterSpec,
    build_http_routing,
)
from switchyard.http.upstream import UpstreamSettings
from switchyard.rules.request import Headers, RequestMeta, entrypoint_path
from switchyard.status import ElementStatus

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["EntryRouter", "HTTPBuild", "build_http"]

_DEFAULT_TRANSPORT = "default@internal"


class EntryRouter:
    """Handler: an entry point's HTTP routers; the first that matches serves the request."""

    __slots__ = ("https", "plain")

    def __init__(self, plain: HTTPRouteList[Handler], https: HTTPRouteList[Handler]) -> None:
        self.plain = plain
        self.https = https

    def handle(self, exchange: Exchange) -> None:
        request, info = exchange.request, exchange.info
        routes = self.https if info.tls else self.plain
        if not routes:
            NOT_FOUND.handle(exchange)
            return
        try:
            path = entrypoint_path(request.path)
        except ValueError:
            exchange.respond(400, None, b"")
            return
        meta = RequestMeta(
            host=request.host, path=path, method=request.method.decode("latin-1"),
            headers=Headers((name.decode("latin-1"), value.decode("latin-1"))
                            for name, value in request.headers),
            query=request.query, client_ip=info.client_ip, tls=info.tls)
        route = routes.match(meta)
        if route is None:
            NOT_FOUND.handle(exchange)
            return
        exchange.router = route.name
        route.handler.handle(exchange)


@dataclass
class HTTPBuild:
    """One generation of the HTTP side."""

    entry_routers: dict[str, EntryRouter] = field(default_factory=dict)
    https_domains: dict[str, tuple[HTTPSDomain, ...]] = field(default_factory=dict)
    routers: dict[str, ElementStatus] = field(default_factory=dict)
    services: dict[str, ElementStatus] = field(default_factory=dict)
    middlewares: dict[str, ElementStatus] = field(default_factory=dict)
    balancers: list[LoadBalancer] = field(default_factory=list)

    @property
    def has_routers(self) -> bool:
        return bool(self.routers)


def build_http(sections: Mapping[str, HTTPSection], entrypoints: Sequence[str], *,
               default_entrypoints: Sequence[str], tls_options: Sequence[str]) -> HTTPBuild:
    """Compile every provider's `http:` section for these (TCP) entry points."""
    return _Builder(sections).run(entrypoints, default_entrypoints, tls_options)


class _Builder:
    def __init__(self, sections: Mapping[str, HTTPSection]) -> None:
        self.result = HTTPBuild()
        self.routers: dict[str, HTTPRouter] = {}
        self.services: dict[str, tuple[str, HTTPService]] = {}
        self.transports: dict[str, UpstreamSettings] = {}
        self.built: dict[str, Handler] = {}
        for provider, section in sections.items():
            for name, router in section.routers.items():
                self.routers[f"{name}@{provider}"] = router
            for name, service in section.services.items():
                qualified = f"{name}@{provider}"
                self.services[qualified] = (provider, service)
                self.result.services[qualified] = ElementStatus("service", qualified, provider,
                                                                service)
            for name, middleware in section.middlewares.items():
                qualified = f"{name}@{provider}"
                status = ElementStatus("middleware", qualified, provider, middleware)
                kinds = ", ".join(middleware.kinds) or "no type"
                status.add_error(f"HTTP middleware {kinds} is not implemented by Switchyard yet; "
                                 "routers using it are disabled", critical=True)
                self.result.middlewares[qualified] = status
            for name, transport in section.servers_transports.items():
                qualified = f"{name}@{provider}"
                self.transports[qualified] = UpstreamSettings.from_config(qualified, transport)

    def run(self, entrypoints: Sequence[str], default_entrypoints: Sequence[str],
            tls_options: Sequence[str]) -> HTTPBuild:
        routing = build_http_routing(self.routers, entrypoints, self._handler,
                                     default_entrypoints=default_entrypoints,
                                     tls_options=tls_options)
        result = self.result
        result.routers = routing.routers
        for status in routing.routers.values():
            service = self.result.services.get(_qualify(status.config.service, status.provider))
            if service is not None:
                service.used_by.append(status.name)
        for ep, table in routing.tables.items():
            result.entry_routers[ep] = EntryRouter(table.http, table.https)
            result.https_domains[ep] = tuple(table.https_domains)
        return result

    def _handler(self, spec: RouterSpec) -> Handler:
        for reference in spec.middlewares:
            status = self.result.middlewares.get(reference)
            if status is None:
                raise HandlerBuildError(f'middleware "{reference}" does not exist')
            status.used_by.append(spec.name)
            raise HandlerBuildError(f'middleware "{reference}": {status.errors[0]}')
        return self._service(spec.service)

    def _service(self, qualified: str) -> Handler:
        found = self.built.get(qualified)
        if found is not None:
            return found
        entry = self.services.get(qualified)
        if entry is None:
            raise HandlerBuildError(f'the service "{qualified}" does not exist')
        provider, config = entry
        status = self.result.services[qualified]
        try:
            handler = self._make_service(qualified, provider, config)
        except HandlerBuildError as exc:
            status.add_error(str(exc), critical=True)
            raise
        self.built[qualified] = handler
        return handler

    def _make_service(self, qualified: str, provider: str, config: HTTPService) -> Handler:
        kinds = config.kinds
        if not kinds:
            raise HandlerBuildError(f'the service "{qualified}" does not have any type defined')
        if len(kinds) > 1:
            raise HandlerBuildError(f"cannot create service: multi-types service not supported, "
                                    f"consider declaring two different pieces of service "
                                    f"instead ({', '.join(kinds)})")
        if config.middlewares:
            raise HandlerBuildError("service middlewares are not implemented by Switchyard yet")
        balancer = config.load_balancer
        if balancer is None:
            raise HandlerBuildError(f"{kinds[0]} services are not implemented by Switchyard yet")
        if balancer.sticky is not None or balancer.health_check is not None or (
                balancer.passive_health_check is not None) or balancer.strategy.lower() != "wrr":
            raise HandlerBuildError("sticky sessions, health checks and strategies other than "
                                    "wrr are not implemented by Switchyard yet for HTTP services")
        settings = self._transport(balancer.servers_transport, provider)
        servers = []
        for index, server in enumerate(balancer.servers):
            try:
                url = parse_server_url(server.url)
            except ValueError as exc:
                raise HandlerBuildError(f"servers[{index}]: {exc}") from None
            proxy = ReverseProxy(url, settings=settings, pass_host_header=balancer.pass_host_header,
                                 preserve_path=server.preserve_path)
            servers.append(BalancedServer(proxy, 1 if server.weight is None else server.weight))
        built = LoadBalancer(qualified, servers)
        self.result.balancers.append(built)
        return built

    def _transport(self, reference: str, provider: str) -> UpstreamSettings:
        if not reference:
            return UpstreamSettings(name=_DEFAULT_TRANSPORT)
        qualified = _qualify(reference, provider)
        if qualified == _DEFAULT_TRANSPORT:
            return UpstreamSettings(name=_DEFAULT_TRANSPORT)
        found = self.transports.get(qualified)
        if found is None:
            raise HandlerBuildError(f'servers transport not found "{qualified}"')
        return found


def _qualify(reference: str, provider: str) -> str:
    return reference if "@" in reference else f"{reference}@{provider}"
