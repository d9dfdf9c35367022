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
from typing import TYPE_CHECKING, Any

from switchyard.config.http import (
    HTTPLoadBalancer,
    HTTPMiddleware,
    HTTPRouter,
    HTTPSection,
    HTTPService,
    RouterObservability,
)
from switchyard.http.balancer import BalancedServer, LoadBalancer
from switchyard.http.entrypoint_models import EntryPointModel, apply_models
from switchyard.http.failover import FailoverService
from switchyard.http.handler import Handler
from switchyard.http.healthcheck import HTTPHealthCheck
from switchyard.http.message import RequestHead, split_target
from switchyard.http.middlewares.base import MiddlewareContext, MiddlewareError, Wrap
from switchyard.http.middlewares.registry import build_middleware
from switchyard.http.mirroring import Mirror, MirroringService
from switchyard.http.passive import PassiveHealthChecked
from switchyard.http.proxy import ReverseProxy, parse_server_url
from switchyard.http.responder import NOT_FOUND
from switchyard.http.routing import (
    HandlerBuildError,
    HTTPRouteList,
    HTTPSDomain,
    RouterSpec,
    build_http_routing,
)
from switchyard.http.sticky import StickyCookie
from switchyard.http.strategies import StrategyBalancer, picker_for
from switchyard.http.upstream import UpstreamSettings
from switchyard.http.weighted import Child, WeightedService
from switchyard.rules.parser import MatcherCall, Node
from switchyard.rules.request import Headers, RequestMeta, entrypoint_path
from switchyard.status import ElementStatus

if TYPE_CHECKING:
    from switchyard.http.exchange import Exchange

__all__ = ["EntryRouter", "HTTPBuild", "build_http"]

_DEFAULT_TRANSPORT = "default@internal"


_HEADER_MATCHERS = frozenset({"Header", "HeaderRegexp", "Headers", "HeadersRegexp"})
_NO_HEADERS = Headers()


def _reads_headers(node: Node) -> bool:
    if isinstance(node, MatcherCall):
        return node.name in _HEADER_MATCHERS
    return any(_reads_headers(operand) for operand in node.operands)


class EntryRouter:
    """Handler: an entry point's HTTP routers; the first that matches serves the request.

    ``quiet`` names the routers whose access logs or metrics are switched off (Traefik's
    ``observability``), with their (accessLogs, metrics); ``unrouted`` is the entry point's own
    pair for requests no router takes, None when both are on.
    """

    __slots__ = ("_headers", "_quiet", "_unrouted", "https", "plain")

    def __init__(self, plain: HTTPRouteList[Handler], https: HTTPRouteList[Handler],
                 quiet: Mapping[str, tuple[bool, bool]] | None = None,
                 unrouted: tuple[bool, bool] | None = None) -> None:
        self.plain = plain
        self.https = https
        self._quiet = dict(quiet or {})
        self._unrouted = unrouted
        # Decoding every header field for the rules costs per request: only when one reads them.
        self._headers = any(_reads_headers(route.rule.tree) for route in (*plain, *https))

    def routes_for(self, tls: bool) -> HTTPRouteList[Handler]:
        return self.https if tls else self.plain

    def meta(self, request: RequestHead, *, tls: bool, client_ip: str) -> RequestMeta:
        """What the rules see of ``request``; ValueError for a path Traefik answers 400 to."""
        path, query = split_target(request.target)
        return self._meta(request, path.decode("latin-1"), query, tls, client_ip)

    def _meta(self, request: RequestHead, path: str, query: bytes, tls: bool,
              client_ip: str) -> RequestMeta:
        host = request.headers.get(b"host")
        return RequestMeta(
            "" if host is None else host.decode("latin-1"), entrypoint_path(path),
            request.method.decode("latin-1"),
            Headers((name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in request.headers) if self._headers else _NO_HEADERS,
            query.decode("latin-1"), client_ip, tls)

    def handle(self, exchange: Exchange) -> None:
        request, info = exchange.request, exchange.info
        tls = info.tls
        routes = self.https if tls else self.plain
        if not routes:
            self._observe_unrouted(exchange)
            NOT_FOUND.handle(exchange)
            return
        raw_path, query = split_target(request.target)
        path = raw_path.decode("latin-1")
        try:
            meta = self._meta(request, path, query, tls, info.client_ip)
        except ValueError:
            self._observe_unrouted(exchange)
            exchange.respond(400, None, b"")
            return
        route = routes.match(meta)
        if route is None:
            self._observe_unrouted(exchange)
            NOT_FOUND.handle(exchange)
            return
        exchange.router = route.name
        exchange.router_service = route.service
        if self._quiet:
            switches = self._quiet.get(route.name)
            if switches is not None:
                exchange.access_logs, exchange.metrics = switches
        # Traefik's entry point hands the cleaned, normalized path on (sanitizePath and
        # normalizePath rewrite the request), so middlewares and the backend see that one.
        if meta.path != path and raw_path.isascii():
            request.set_path(meta.path.encode("ascii"))
            exchange.received_target = request.target  # what Traefik's access log shows
        route.handler.handle(exchange)

    def _observe_unrouted(self, exchange: Exchange) -> None:
        if self._unrouted is not None:
            exchange.access_logs, exchange.metrics = self._unrouted


@dataclass
class HTTPBuild:
    """One generation of the HTTP side."""

    entry_routers: dict[str, EntryRouter] = field(default_factory=dict)
    https_domains: dict[str, tuple[HTTPSDomain, ...]] = field(default_factory=dict)
    routers: dict[str, ElementStatus] = field(default_factory=dict)
    services: dict[str, ElementStatus] = field(default_factory=dict)
    middlewares: dict[str, ElementStatus] = field(default_factory=dict)
    balancers: list[LoadBalancer | StrategyBalancer] = field(default_factory=list)
    # What would break in elements no enabled router built:
    # (kind, qualified name, provider, error, referenced by a disabled router).
    unused: list[tuple[str, str, str, str, bool]] = field(default_factory=list)
    # Balancers with an active health check: the server keeps one monitor across builds.
    health_checks: list[tuple[LoadBalancer | StrategyBalancer, HTTPHealthCheck]] = field(
        default_factory=list)

    @property
    def has_routers(self) -> bool:
        return bool(self.routers)


def build_http(sections: Mapping[str, HTTPSection], entrypoints: Sequence[str], *,
               default_entrypoints: Sequence[str], tls_options: Sequence[str],
               internal: Mapping[str, Handler] | None = None,
               internal_missing: Mapping[str, str] | None = None,
               models: Mapping[str, EntryPointModel] | None = None) -> HTTPBuild:
    """Compile every provider's `http:` section for these (TCP) entry points.

    ``internal`` are the ``@internal`` services routers may name (``api@internal``);
    ``internal_missing`` says why a known one is not there (``ping is not enabled``). ``models``
    are the entry points' (see switchyard.http.entrypoint_models).
    """
    builder = _Builder(sections, internal or {}, internal_missing or {})
    # The entry points' models (http.middlewares, http.tls, observability) apply to every
    # router on them.
    builder.routers = apply_models(builder.routers, models or {}, default_entrypoints)
    return builder.run(entrypoints, default_entrypoints, tls_options, models or {})


def _switches(observability: RouterObservability | None) -> tuple[bool, bool]:
    """(accessLogs, metrics) of a router or entry point; an unset switch is on."""
    if observability is None:
        return True, True
    return observability.access_logs is not False, observability.metrics is not False


class _Builder:
    def __init__(self, sections: Mapping[str, HTTPSection], internal: Mapping[str, Handler],
                 internal_missing: Mapping[str, str]) -> None:
        self.result = HTTPBuild()
        self.internal = internal
        self.internal_missing = internal_missing
        self.routers: dict[str, HTTPRouter] = {}
        self.services: dict[str, tuple[str, HTTPService]] = {}
        self.transports: dict[str, UpstreamSettings] = {}
        self.built: dict[str, Handler] = {}
        self.middlewares: dict[str, tuple[str, HTTPMiddleware]] = {}
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
                self.middlewares[qualified] = (provider, middleware)
                self.result.middlewares[qualified] = ElementStatus(
                    "middleware", qualified, provider, middleware)
            for name, transport in section.servers_transports.items():
                qualified = f"{name}@{provider}"
                self.transports[qualified] = UpstreamSettings.from_config(qualified, transport)

    def run(self, entrypoints: Sequence[str], default_entrypoints: Sequence[str],
            tls_options: Sequence[str], models: Mapping[str, EntryPointModel]) -> HTTPBuild:
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
            quiet = {}
            for route in (*table.http, *table.https):
                router = self.routers.get(route.name)
                switches = _switches(router.observability if router is not None else None)
                if switches != (True, True):
                    quiet[route.name] = switches
            model = models.get(ep)
            unrouted = _switches(model.observability if model is not None else None)
            result.entry_routers[ep] = EntryRouter(
                table.http, table.https, quiet, unrouted if unrouted != (True, True) else None)
            result.https_domains[ep] = tuple(table.https_domains)
        self._validate_unused_middlewares()
        return result

    # -- middlewares --------------------------------------------------------------------------

    def _handler(self, spec: RouterSpec) -> Handler:
        """The router's middlewares in declared order (the first is outermost), then its service."""
        wraps = self._wraps(spec.middlewares, spec, (spec.name,))
        handler = self._service(spec.service)
        for wrap in reversed(wraps):
            handler = wrap(handler)
        return handler

    def _wraps(self, references: Sequence[str], spec: RouterSpec,
               stack: tuple[str, ...]) -> list[Wrap]:
        wraps: list[Wrap] = []
        for reference in references:
            status = self.result.middlewares.get(reference)
            if status is None:
                raise HandlerBuildError(f'middleware "{reference}" does not exist')
            if spec.name not in status.used_by:
                status.used_by.append(spec.name)
            # stack[0] is the router, named only in the message: a middleware may share its name.
            if reference in stack[1:]:
                raise HandlerBuildError(
                    f"could not instantiate middleware {reference}: recursion detected in "
                    f"{'->'.join((*stack, reference))}")
            provider, config = self.middlewares[reference]
            kinds = config.kinds
            try:
                if not kinds:
                    raise MiddlewareError(f'invalid middleware "{reference}" configuration: '
                                          "invalid middleware type or middleware does not exist")
                if len(kinds) > 1:
                    raise MiddlewareError(
                        f'invalid middleware "{reference}" configuration: cannot create '
                        "middleware: multi-types middleware not supported, consider declaring "
                        f"two different pieces of middleware instead ({', '.join(kinds)})")
                if kinds[0] == "chain":
                    chained = _chain_references(config.chain, provider)
                    wraps += self._wraps(chained, spec, (*stack, reference))
                    continue
                if kinds[0] == "plugin":
                    raise MiddlewareError("plugins are not supported by Switchyard")
                context = MiddlewareContext(
                    name=reference, provider=provider, router=spec.name,
                    entry_points=tuple(spec.config.entry_points or ()),
                    service=self._middleware_service)
                wraps.append(build_middleware(kinds[0], _options(config, kinds[0]), context))
            except MiddlewareError as exc:
                if not status.errors:
                    status.add_error(str(exc), critical=True)
                # Traefik's router error is the middleware's own message, unprefixed.
                raise HandlerBuildError(str(exc)) from None
        return wraps

    def _middleware_service(self, qualified: str) -> Handler:
        try:
            return self._service(qualified)
        except HandlerBuildError as exc:
            raise MiddlewareError(str(exc)) from None

    def _validate_unused_middlewares(self) -> None:
        """Middlewares and services no enabled router built are still tried, for `check`.

        As in Traefik they stay enabled (nothing runs them); what would break once a router
        uses them is kept in ``HTTPBuild.unused``.
        """
        for qualified, status in self.result.middlewares.items():
            if status.used_by or status.errors:
                continue
            provider, config = self.middlewares[qualified]
            kinds = config.kinds
            if len(kinds) != 1 or kinds[0] in ("chain", "plugin"):
                continue  # reported when a router uses it, as Traefik does
            context = MiddlewareContext(name=qualified, provider=provider, kind=kinds[0],
                                        service=self._middleware_service)
            try:
                build_middleware(kinds[0], _options(config, kinds[0]), context)
            except MiddlewareError as exc:
                self.result.unused.append(("middleware", qualified, provider, str(exc), False))
        probe: _Builder | None = None
        for qualified, status in self.result.services.items():
            if qualified in self.built or status.errors:
                continue
            if probe is None:  # its balancers and health checks are thrown away
                probe = _Builder({}, self.internal, self.internal_missing)
                probe.services, probe.transports = self.services, self.transports
                probe.result.services = {
                    name: ElementStatus("service", name, found.provider, found.config)
                    for name, found in self.result.services.items()}
            try:
                probe._service(qualified)
            except HandlerBuildError as exc:
                self.result.unused.append(("service", qualified, status.provider, str(exc),
                                           bool(status.used_by)))
        if probe is not None:
            for balancer in probe.result.balancers:
                balancer.close()

    def _service(self, qualified: str) -> Handler:
        found = self.built.get(qualified)
        if found is not None:
            return found
        if qualified.endswith("@internal"):
            internal = self.internal.get(qualified)
            if internal is not None:
                return internal
            why = self.internal_missing.get(qualified)
            raise HandlerBuildError(why or f"unknown internal service {qualified}")
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
        if config.load_balancer is not None:
            return self._load_balancer(qualified, provider, config.load_balancer)
        if config.weighted is not None:
            weighted = config.weighted
            children = [(ref.name, self._child(ref.name, provider), ref.weight)
                        for ref in weighted.services]
            sticky = (StickyCookie.from_config(weighted.sticky.cookie, qualified)
                      if weighted.sticky is not None and weighted.sticky.cookie is not None
                      else None)
            return WeightedService(qualified, children, sticky=sticky)
        if config.failover is not None:
            failover = config.failover
            main = self._child(failover.service, provider)
            fallback = self._child(failover.fallback, provider)
            return FailoverService(qualified, main, fallback,
                                   watch_fallback=failover.health_check is not None)
        if config.mirroring is not None:
            mirroring = config.mirroring
            return MirroringService(
                qualified, self._child(mirroring.service, provider),
                [Mirror(self._child(m.name, provider), m.percent) for m in mirroring.mirrors])
        raise HandlerBuildError(f"{kinds[0]} services are not implemented by Switchyard yet")

    def _child(self, reference: str, provider: str) -> Child:
        handler = self._service(_qualify(reference, provider))
        return handler  # type: ignore[return-value]  # every service handler reports `up`

    def _load_balancer(self, qualified: str, provider: str,
                       balancer: HTTPLoadBalancer) -> Handler:
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
        sticky = (StickyCookie.from_config(balancer.sticky.cookie, qualified)
                  if balancer.sticky is not None and balancer.sticky.cookie is not None else None)
        built: LoadBalancer | StrategyBalancer
        if sticky is None and balancer.strategy.lower() == "wrr":
            built = LoadBalancer(qualified, servers)
        else:
            try:
                picker = picker_for(balancer.strategy, servers)
            except ValueError as exc:
                raise HandlerBuildError(str(exc)) from None
            built = StrategyBalancer(qualified, servers, picker, sticky=sticky)
        if balancer.health_check is not None:
            try:
                check = HTTPHealthCheck.from_config(balancer.health_check, qualified)
            except ValueError as exc:
                raise HandlerBuildError(str(exc)) from None
            self.result.health_checks.append((built, check))
        self.result.balancers.append(built)
        if balancer.passive_health_check is not None:
            return PassiveHealthChecked.from_config(
                qualified, built, servers, balancer.passive_health_check,
                active=balancer.health_check is not None)
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


def _options(config: HTTPMiddleware, kind: str) -> Mapping[str, Any]:
    for name, info in type(config).model_fields.items():
        if (info.alias or name) == kind:
            value = getattr(config, name)
            return value if isinstance(value, Mapping) else {}
    return {}


def _chain_references(chain: Mapping[str, Any] | None, provider: str) -> list[str]:
    """The chain's middlewares, qualified with the chain's own provider."""
    if not chain:
        return []
    for key, value in chain.items():
        if key.lower() == "middlewares":
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MiddlewareError("chain.middlewares: a list of middleware names")
            return [_qualify(reference, provider) for reference in value]
    return []


def _qualify(reference: str, provider: str) -> str:
    return reference if "@" in reference else f"{reference}@{provider}"
