"""Compiles validated configuration into a Runtime: statuses plus per-entry-point routing tables."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from switchyard.addresses import split_host_port
from switchyard.config.dynamic import (
    DynamicConfig,
    TCPMiddleware,
    TCPRouter,
    TCPService,
    TLSSection,
    TransportTLS,
)
from switchyard.config.dynamic import ServersTransport as TransportConfig
from switchyard.config.dynamic import TLSOptions as TLSOptionsModel
from switchyard.config.http import validate_http_section
from switchyard.config.loader import ConfigIssue
from switchyard.config.static import StaticConfig
from switchyard.diagnostics import diagnose
from switchyard.http.build import EntryRouter, HTTPBuild, build_http
from switchyard.http.entrypoint_models import entry_point_http
from switchyard.http.forwarded import ForwardedHeaders
from switchyard.http.handler import Handler
from switchyard.http.internal import internal_handlers
from switchyard.http.responder import NOT_FOUND
from switchyard.http.routing import HTTPSDomain
from switchyard.http.server import ServerSettings
from switchyard.internal import internal_http_services
from switchyard.middlewares.base import Middleware
from switchyard.middlewares.inflightconn import InFlightConn
from switchyard.middlewares.ipallowlist import IPAllowList
from switchyard.middlewares.ratelimit import RateLimit, build_rate_limit
from switchyard.routing.table import HTTPSRoute, Route, RouteList, RoutingTable, sort_routes
from switchyard.rules import RuleError, default_priority, host_sni_values, parse_domains, parse_rule
from switchyard.runtime import Runtime
from switchyard.services import (
    DEFAULT_TRANSPORT,
    LoadBalancer,
    Server,
    ServersTransport,
    Service,
    WeightedService,
)
from switchyard.services.loadbalancer import HealthCheckSettings, PassiveSettings
from switchyard.services.strategies import strategy_name
from switchyard.status import ElementStatus
from switchyard.tls.acme_http import ACMEChallengeHandler, HTTPChallengeResolver
from switchyard.tls.backend import build_backend_context
from switchyard.tls.certificates import (
    CertificateStore,
    build_certificate_store,
    load_certificate,
)
from switchyard.tls.options import (
    TLSOptionsError,
    build_server_context,
    compile_server_options,
    resolve_router_options,
)
from switchyard.tls.resolver import CertificateSource

log = logging.getLogger("switchyard.config")

MAX_PRIORITY = (1 << 63) - 1 - 1000


class BuildError(Exception):
    """A service, middleware or transport that cannot be built; the message says why."""


def qualify(reference: str, provider: str) -> str:
    """Traefik's name qualification: references without `@` belong to the referrer's provider."""
    return reference if "@" in reference else f"{reference}@{provider}"


class _Builder:
    def __init__(self, static: StaticConfig, configs: Mapping[str, DynamicConfig],
                 previous: Runtime | None, resolvers: Mapping[str, CertificateSource]) -> None:
        self.static = static
        self.configs = configs
        self.resolvers = resolvers
        self.entrypoints = {
            name: ep for name, ep in static.entry_points.items()
            if not ep.address.lower().endswith("/udp")
        }
        self.default_eps = static.default_entry_points()
        self.internal_handlers: Mapping[str, Handler] | None = None
        self.runtime = Runtime()
        self.routers: dict[str, tuple[str, str, TCPRouter]] = {}
        self.services: dict[str, tuple[str, TCPService]] = {}
        self.middleware_cfgs: dict[str, tuple[str, TCPMiddleware]] = {}
        self.transports: dict[str, TransportConfig] = {}
        self.previous_services = previous.service_objects if previous else {}
        self.previous_counts = previous.connection_counts if previous else {}
        self._building: list[str] = []
        self.tls_options: dict[str, Any] = {}
        self.tls_option_sources: dict[str, tuple[str, str]] = {}  # name -> (provider, key)
        # What routers and services built, so what nothing uses can still be checked.
        self.built_middlewares: set[str] = set()
        self.used_transports: set[str] = set()
        self.tls_dialed_transports: set[str] = set()
        certificates = []
        stores: dict[str, Any] = {}
        for provider, config in configs.items():
            for name, options in config.tls.options.items():
                # `default` is one set of options whoever defines it.
                qualified = name if name == "default" else f"{name}@{provider}"
                self.tls_options[qualified] = options
                self.tls_option_sources[qualified] = (provider, name)
            certificates.extend(config.tls.certificates)
            stores.update(config.tls.stores)
        self.tls_options.setdefault("default", TLSOptionsModel())
        self._tls_section = TLSSection(certificates=certificates, stores=stores)
        self._store: CertificateStore | None = None
        self._contexts: dict[str, tuple[ssl.SSLContext | str, tuple[str, ...]]] = {}
        self._https_contexts: dict[str, ssl.SSLContext | str] = {}
        for provider, config in configs.items():
            tcp = config.tcp
            for name, router in tcp.routers.items():
                self.routers[f"{name}@{provider}"] = (name, provider, router)
            for name, service in tcp.services.items():
                self.services[f"{name}@{provider}"] = (provider, service)
                self.runtime.services[f"{name}@{provider}"] = ElementStatus(
                    "service", f"{name}@{provider}", provider, service)
            for name, middleware in tcp.middlewares.items():
                self.middleware_cfgs[f"{name}@{provider}"] = (provider, middleware)
                self.runtime.middlewares[f"{name}@{provider}"] = ElementStatus(
                    "middleware", f"{name}@{provider}", provider, middleware)
            for name, transport in tcp.servers_transports.items():
                self.transports[f"{name}@{provider}"] = transport

    # -- services ---------------------------------------------------------

    def service(self, qualified: str) -> Service:
        """The service object for a qualified name, built once and shared by every router."""
        built = self.runtime.service_objects.get(qualified)
        if built is not None:
            return built
        if qualified not in self.services:
            raise BuildError(f'the service "{qualified}" does not exist')
        if qualified in self._building:
            chain = " -> ".join([*self._building[self._building.index(qualified):], qualified])
            raise BuildError(f"recursion detected in weighted services: {chain}")
        provider, config = self.services[qualified]
        status = self.runtime.services[qualified]
        self._building.append(qualified)
        try:
            service = self._make_service(qualified, provider, config, status)
        except BuildError as exc:
            status.add_error(str(exc), critical=True)
            raise
        finally:
            self._building.pop()
        self.runtime.service_objects[qualified] = service
        return service

    def _make_service(self, qualified: str, provider: str, config: TCPService,
                      status: ElementStatus) -> Service:
        if config.load_balancer is not None and config.weighted is not None:
            raise BuildError(
                f'cannot create service "{qualified}": multi-types service not supported, '
                "keep either loadBalancer or weighted")
        if config.weighted is not None:
            children: list[tuple[Service, int]] = []
            for child in config.weighted.services:
                weight = 1 if child.weight is None else child.weight
                child_name = qualify(child.name, provider)
                child_service = self.service(child_name)
                if config.weighted.health_check is not None and not _health_checked(child_service):
                    # Traefik refuses this too: the parent could never learn the child's state.
                    raise BuildError(f'child service "{child_name}" of "{qualified}": healthCheck '
                                     "not enabled in config for this service; add one, or remove "
                                     "healthCheck from the weighted service")
                children.append((child_service, weight))
            return WeightedService(qualified, children, health_checked=(
                config.weighted.health_check is not None))
        lb = config.load_balancer
        if lb is None:
            raise BuildError(f'the service "{qualified}" does not have any type defined: '
                             "add loadBalancer or weighted")
        transport = self._transport(lb.servers_transport, provider, lb)
        previous = self.previous_services.get(qualified)
        servers: list[Server] = []
        for index, entry in enumerate(lb.servers):
            try:
                host, port = split_host_port(entry.address)
            except ValueError as exc:
                # Traefik skips such servers with a log line only; we
                # also surface it as a warning so the API and `check` show it.
                status.add_error(f"servers[{index}] skipped: {exc}", critical=False)
                continue
            servers.append(Server(entry.address, host, port, tls=entry.tls,
                                  weight=1 if entry.weight is None else entry.weight))
        if any(server.tls for server in servers):
            problem = _backend_tls_problem(transport.tls, servers[0].host)
            self.tls_dialed_transports.add(transport.name)
            if problem:
                # Every dial to these servers would fail; Traefik fails such a transport's
                # build too, so the service is not built.
                raise BuildError(f'serversTransport "{transport.name}": tls.{problem}')
        health = None
        if lb.health_check is not None:
            hc = lb.health_check
            try:
                health = HealthCheckSettings.normalised(
                    port=hc.port, send=hc.send, expect=hc.expect, interval=hc.interval,
                    unhealthy_interval=hc.unhealthy_interval, timeout=hc.timeout)
            except ValueError as exc:
                raise BuildError(str(exc)) from exc
        passive = None
        if lb.passive_health_check is not None:
            passive = PassiveSettings(lb.passive_health_check.failure_window,
                                      lb.passive_health_check.max_failed_attempts)
        attempts = lb.retry.attempts if lb.retry is not None else 1
        strategy = strategy_name(lb.strategy)
        if isinstance(previous, LoadBalancer) and previous.transport == transport \
                and previous.health_check == health and previous.strategy == strategy \
                and previous.retry_attempts == attempts and previous.passive == passive and [
            (s.address, s.tls, s.weight) for s in previous.servers
        ] == [(s.address, s.tls, s.weight) for s in servers]:
            # Same servers, same transport: keep the objects so health state,
            # open-connection counts and rotations survive the reload.
            return previous
        return LoadBalancer(qualified, servers, transport, health, strategy=strategy,
                            retry_attempts=attempts, passive=passive)

    def _transport(self, reference: str, provider: str, lb: Any) -> ServersTransport:
        tlvs: tuple[str, ...] = ()  # PROXY v2 TLVs, with the version
        if not reference:
            version = 0
            if lb.proxy_protocol is not None:
                version, tlvs = lb.proxy_protocol.version, tuple(lb.proxy_protocol.tlvs)
                _check_proxy_version(version)
            delay = DEFAULT_TRANSPORT.termination_delay
            if lb.termination_delay is not None:
                # Deprecated field, documented in milliseconds; Traefik reads it
                # as nanoseconds. We honour the documentation.
                delay = lb.termination_delay / 1000.0
            static_transport = self.static.tcp_servers_transport
            if static_transport is not None:
                return ServersTransport(
                    name="default@internal",
                    dial_timeout=static_transport.dial_timeout,
                    dial_keep_alive=static_transport.dial_keep_alive,
                    termination_delay=(static_transport.termination_delay
                                       if lb.termination_delay is None else delay),
                    proxy_protocol_version=version,
                    proxy_protocol_tlvs=tlvs,
                    tls=static_transport.tls,
                )
            return ServersTransport(termination_delay=delay, proxy_protocol_version=version,
                                    proxy_protocol_tlvs=tlvs)
        qualified = qualify(reference, provider)
        config = self.transports.get(qualified)
        if config is None:
            raise BuildError(f'no transport configuration found for "{qualified}"')
        self.used_transports.add(qualified)
        version = 0
        if config.proxy_protocol is not None:
            version, tlvs = config.proxy_protocol.version, tuple(config.proxy_protocol.tlvs)
            _check_proxy_version(version)
        return ServersTransport(
            name=qualified,
            dial_timeout=config.dial_timeout,
            dial_keep_alive=config.dial_keep_alive,
            termination_delay=config.termination_delay,
            proxy_protocol_version=version,
            proxy_protocol_tlvs=tlvs,
            tls=config.tls,
        )

    # -- middlewares ------------------------------------------------------

    def middleware(self, qualified: str, router: str) -> Middleware:
        """A fresh instance: Traefik keeps middleware state per router and entry point.

        inFlightConn's `router` and `global` scopes share their counts instead, the same
        ones as the previous generation's.
        """
        found = self.middleware_cfgs.get(qualified)
        if found is None:
            raise BuildError(f'middleware "{qualified}" does not exist')
        self.built_middlewares.add(qualified)
        _, config = found
        status = self.runtime.middlewares[qualified]
        kinds = config.kinds
        if not kinds:
            raise BuildError(f'middleware "{qualified}" does not exist: it sets no type')
        if len(kinds) > 1:
            # Traefik silently lets the last one win; we keep that and say so.
            status.add_error(f"several middleware types set ({', '.join(kinds)}); "
                             f"only {kinds[-1]} applies", critical=False)
        try:
            if kinds[-1] == "inFlightConn":
                limit = config.in_flight_conn
                assert limit is not None
                counts = None
                if limit.scope in ("router", "global"):
                    key = (router if limit.scope == "router" else "", qualified)
                    counts = self.runtime.connection_counts.get(key)
                    if counts is None:
                        counts = self.runtime.connection_counts[key] = \
                            self.previous_counts.get(key, {})
                return InFlightConn(qualified, limit.amount, limit.scope or "clientIP", counts)
            if kinds[-1] == "rateLimit":
                assert config.rate_limit is not None
                return build_rate_limit(qualified, config.rate_limit)
            allow = config.ip_allow_list if kinds[-1] == "ipAllowList" else config.ip_white_list
            assert allow is not None
            return IPAllowList(qualified, allow.source_range, kind=kinds[-1])
        except ValueError as exc:
            status.add_error(f"{kinds[-1]}: {exc}", critical=True)
            raise BuildError(f'middleware "{qualified}": {kinds[-1]}: {exc}') from exc

    # -- routers ----------------------------------------------------------

    def build(self) -> Runtime:
        routes_by_ep: dict[str, list[Route]] = {ep: [] for ep in self.entrypoints}
        for qualified in sorted(self.routers):
            name, provider, config = self.routers[qualified]
            status = ElementStatus("router", qualified, provider, config)
            self.runtime.routers[qualified] = status
            for ep_name, route in self._router(name, provider, config, status):
                routes_by_ep[ep_name].append(route)
        for status in self.runtime.routers.values():
            config = status.config
            if config.service:
                service_status = self.runtime.services.get(qualify(config.service, status.provider))
                if service_status is not None:
                    service_status.used_by.append(status.name)
            for reference in config.middlewares:
                mw_status = self.runtime.middlewares.get(qualify(reference, status.provider))
                if mw_status is not None:
                    mw_status.used_by.append(status.name)
        http = self._http()
        for ep_name, ep in self.entrypoints.items():
            routes = sort_routes(routes_by_ep[ep_name])
            entry_router: Handler | None = http.entry_routers.get(ep_name)
            serves_http = isinstance(entry_router, EntryRouter)
            challenges = [r for r in self.resolvers.values()
                          if isinstance(r, HTTPChallengeResolver)
                          and r.http_challenge_entrypoint() == ep_name]
            if challenges:
                # HTTP-01 validations are answered first on their entry point (Traefik's
                # acme-http@internal router), whatever else serves HTTP there.
                entry_router = ACMEChallengeHandler(
                    challenges, entry_router if serves_http and entry_router else NOT_FOUND)
                serves_http = True
            self.runtime.tables[ep_name] = RoutingTable(
                https=RouteList([self._https_route(d) for d in http.https_domains.get(ep_name, ())]),
                serves_http=serves_http,
                default_https=self._https_route(None) if serves_http else None,
                http=entry_router if serves_http else None,
                http_settings=self._http_settings(ep_name),
                entrypoint=ep_name,
                plain=RouteList([r for r in routes if not r.tls]),
                tls=RouteList([r for r in routes if r.tls]),
                read_timeout=ep.transport.responding_timeouts.read_timeout,
                peek_timeout=max(ep.transport.responding_timeouts.peek_timeout, 0.0),
                smtp_hostname=None if ep.starttls is None else (
                    ep.starttls.hostname or socket.gethostname()),
            )
        self._check_unused()
        return self.runtime

    # -- what no router uses ----------------------------------------------

    def _check_unused(self) -> None:
        """Build what no working router uses on the side, so its problems are still said.

        Statuses stay as Traefik shows them (an unreferenced broken service is `enabled`);
        the problems become warnings in `issues`, for the log and `check`.
        """
        probe: _Builder | None = None
        for qualified, status in self.runtime.services.items():
            if qualified in self.runtime.service_objects or status.errors:
                continue  # built, or its build failed and said why
            probe = probe or _Builder(self.static, self.configs, None, self.resolvers)
            try:
                probe.service(qualified)
            except BuildError:
                pass
            self._unused("service", qualified, status.provider, "tcp.services",
                         probe.runtime.services[qualified].errors, bool(status.used_by))
        for qualified, status in self.runtime.middlewares.items():
            if qualified in self.built_middlewares:
                continue
            probe = probe or _Builder(self.static, self.configs, None, self.resolvers)
            try:
                probe.middleware(qualified, "")
            except BuildError:
                pass
            self._unused("middleware", qualified, status.provider, "tcp.middlewares",
                         probe.runtime.middlewares[qualified].errors, bool(status.used_by))
        for qualified, (provider, key) in self.tls_option_sources.items():
            if qualified in self._contexts:
                continue
            try:
                compile_server_options(self.tls_options[qualified])
            except (TLSOptionsError, ValueError) as exc:
                self.runtime.issues.append(ConfigIssue(
                    provider, f"tls.options.{key}",
                    f'TLS options "{qualified}" are used by no TLS-terminating router; once '
                    f"one uses them, its connections are closed: {exc}", "warning"))
        for qualified, config in self.transports.items():
            provider, name = qualified.rpartition("@")[2], qualified.rpartition("@")[0]
            problems = []
            if qualified not in self.used_transports and config.proxy_protocol is not None:
                try:
                    _check_proxy_version(config.proxy_protocol.version)
                except BuildError as exc:
                    problems.append(f"once a service uses it, the service fails: {exc}")
            if qualified not in self.tls_dialed_transports:
                problem = _backend_tls_problem(config.tls, "") if config.tls else ""
                if problem:
                    problems.append("once a server with tls: true dials through it, the "
                                    f"service fails: tls.{problem}")
            for problem in problems:
                users = ("no service uses it" if qualified not in self.used_transports
                         else "no service that was built dials TLS through it")
                self.runtime.issues.append(ConfigIssue(
                    provider, f"tcp.serversTransports.{name}",
                    f'serversTransport "{qualified}": {users}; {problem}', "warning"))
        if self._store is None and (self._tls_section.certificates or self._tls_section.stores):
            # No router terminates TLS yet: load the certificates anyway, so a broken one is
            # reported now rather than when the first terminating router arrives.
            self._store = self._certificate_store()

    def _unused(self, kind: str, qualified: str, provider: str, section: str,
                errors: Sequence[str], referenced: bool) -> None:
        why = ("the routers that use it are disabled" if referenced
               else "no router uses it")
        for error in errors:
            self.runtime.issues.append(ConfigIssue(
                provider, f"{section}.{qualified.rpartition('@')[0]}",
                f'{kind} "{qualified}" is not built because {why}; once a router uses it: '
                f"{error}", "warning"))

    def _router(self, name: str, provider: str, config: TCPRouter,
                status: ElementStatus) -> list[tuple[str, Route]]:
        def fail(message: str) -> list[tuple[str, Route]]:
            status.add_error(message, critical=True)
            return []

        if "@" in name:
            return fail(f'router name "{name}" must not contain "@": rename it '
                        "(the provider suffix is added by Switchyard)")
        eps = list(config.entry_points) or list(self.default_eps)
        using = []
        for ep in eps:
            if ep in self.entrypoints:
                using.append(ep)
            else:
                status.add_error(f'entryPoint "{ep}" doesn\'t exist', critical=False)
        status.using = using
        if not using:
            return fail("no valid entryPoint for this router")
        if not config.service:
            return fail("the service is missing on the router")
        if not config.rule:
            return fail("router has no rule")
        try:
            hosts = host_sni_values(config.rule)
        except RuleError as exc:
            return fail(f'invalid rule: "{config.rule}" , {exc}')
        if config.tls is None and hosts and hosts[0] != "*":
            return fail(f'invalid rule: "{config.rule}" , has HostSNI matcher, but no TLS on router: '
                        "add tls (passthrough or termination) or use HostSNI(`*`)")
        priority = config.priority or default_priority(config.rule)
        status.priority = priority
        if priority > MAX_PRIORITY:
            return fail(f"the router priority {priority} exceeds the max priority {MAX_PRIORITY}")
        service_name = qualify(config.service, provider)
        try:
            service = self.service(service_name)
        except BuildError as exc:
            return fail(str(exc))
        try:
            rule = parse_rule(config.rule, config.rule_syntax)
        except RuleError as exc:
            return fail(f'error while parsing rule {config.rule}: {exc}')
        tls_context: ssl.SSLContext | None = None
        tls_error = ""
        if config.tls is not None and config.tls.cert_resolver:
            self._request_certificates(config, hosts, status)
        if config.tls is not None and not config.tls.passthrough:
            found = self._server_context(config.tls.options, provider, status)
            if isinstance(found, str):
                # Traefik keeps such a route and closes what it matches,
                # so a broken option never lets traffic fall through to another router.
                status.add_error(found, critical=True)
                tls_error = f'router "{status.name}": {found}'
            else:
                tls_context = found
        routes = []
        for ep in using:
            try:
                middlewares = tuple(self.middleware(qualify(m, provider), status.name)
                                    for m in config.middlewares)
            except BuildError as exc:
                return fail(str(exc))
            routes.append((ep, Route(
                name=status.name,
                rule=rule,
                priority=priority,
                middlewares=middlewares,
                service=service,
                service_name=service_name,
                tls=config.tls is not None,
                passthrough=config.tls is not None and config.tls.passthrough,
                tls_context=tls_context,
                tls_error=tls_error,
                tls_alpn=self.alpn_for(config.tls.options, provider)
                if tls_context is not None and config.tls is not None else (),
                sni_strict=tls_context is not None and config.tls is not None
                and self.sni_strict_for(config.tls.options, provider),
                certificates=self._store if tls_context is not None else None,
                async_limits=tuple(m for m in middlewares if isinstance(m, RateLimit)),
                idle_timeout=max(config.idle_timeout or 0.0, 0.0),
                max_duration=max(config.max_duration or 0.0, 0.0),
            )))
        return routes

    # -- the HTTP side ----------------------------------------------------------

    def _http(self) -> HTTPBuild:
        sections = {}
        for provider, config in self.configs.items():
            if not config.http:
                continue
            sections[provider], problems = validate_http_section(config.http)
            for where, message in problems:
                self.runtime.issues.append(ConfigIssue(provider, where, message, "error"))
        redirections, models, problems = entry_point_http(self.static.entry_points)
        for where, message in problems:
            self.runtime.issues.append(ConfigIssue("static", where, message, "error"))
        if redirections.routers:
            sections["internal"] = redirections
        available = internal_http_services(self.static)
        handlers = (self.internal_handlers if self.internal_handlers is not None
                    else internal_handlers(available, None))
        built = build_http(sections, list(self.entrypoints), default_entrypoints=self.default_eps,
                           tls_options=list(self.tls_options), internal=handlers,
                           internal_missing={k: v for k, v in available.items() if v},
                           models=models)
        self.runtime.http = built
        for kind, qualified, provider, error, referenced in built.unused:
            self._unused(kind, qualified, provider, f"http.{kind}s", [error], referenced)
        for status in built.routers.values():
            tls = status.config.tls
            if status.enabled and tls is not None and tls.cert_resolver:
                self._request_http_certificates(status)
        return built

    def _request_http_certificates(self, status: ElementStatus) -> None:
        """An HTTPS router's resolver: tls.domains, else the Host domains of its rule."""
        tls = status.config.tls
        if tls.cert_resolver not in self.resolvers:
            status.add_error(f'the router uses a non-existent certificate resolver '
                             f'"{tls.cert_resolver}": declare it in the static '
                             "certificatesResolvers, or fix the name", critical=False)
            return
        domains = [(d.main, list(d.sans)) for d in tls.domains if d.main]
        if not domains:
            names = parse_domains(status.config.rule)
            if names:
                domains = [(names[0], names[1:])]
        self.runtime.acme_requests.append((tls.cert_resolver, domains))

    def _https_route(self, domain: HTTPSDomain | None) -> HTTPSRoute:
        """An HTTPS domain (None: the default HTTPS handler) with its termination context."""
        options: str | None = "default"
        if domain is None:
            name, rule, priority, rank = "default", parse_rule("HostSNI(`*`)"), -1, 0
        else:
            name, rule, priority, rank = domain.domain, domain.rule, domain.priority, domain.rank
            options = domain.tls_options
        if options is None:
            return HTTPSRoute(name, rule, priority, rank,
                              tls_error=f'the TLS options of the HTTPS routers for "{name}" are '
                              "broken (see those routers' errors)")
        context = self._https_context(options)
        if isinstance(context, str):
            return HTTPSRoute(name, rule, priority, rank, tls_error=context)
        settings = self.tls_options[options]
        return HTTPSRoute(name, rule, priority, rank, tls_context=context,
                          tls_alpn=tuple(settings.alpn_protocols),
                          sni_strict=bool(settings.sni_strict), certificates=self._store)

    def _https_context(self, name: str) -> ssl.SSLContext | str:
        """A context for HTTPS routers: the options as given (h2 and http/1.1 by default)."""
        found = self._https_contexts.get(name)
        if found is None:
            if self._store is None:
                self._store = self._certificate_store()
            try:
                found = build_server_context(self.tls_options[name], self._store)
            except (TLSOptionsError, ValueError, ssl.SSLError) as exc:
                found = f"tls.options.{name}: {exc}"
            self._https_contexts[name] = found
        return found

    def _http_settings(self, ep_name: str) -> ServerSettings:
        ep = self.entrypoints[ep_name]
        timeouts = ep.transport.responding_timeouts
        raw = {k.lower(): v for k, v in (ep.forwarded_headers or {}).items()}
        try:
            forwarded = ForwardedHeaders(
                trusted_ips=tuple(raw.get("trustedips") or ()), insecure=bool(raw.get("insecure")),
                connection=tuple(raw.get("connection") or ()))
        except ValueError as exc:
            self.runtime.issues.append(ConfigIssue(
                "static", f"entryPoints.{ep_name}.forwardedHeaders", f"{exc}; no forwarded "
                "header from clients is trusted", "error"))
            forwarded = ForwardedHeaders()
        return ServerSettings(read_timeout=timeouts.read_timeout,
                              write_timeout=timeouts.write_timeout,
                              idle_timeout=timeouts.idle_timeout, forwarded=forwarded)

    def _server_context(self, reference: str, provider: str,
                        status: ElementStatus) -> ssl.SSLContext | str:
        """The termination context for a router's TLS options, or the error that breaks it."""
        try:
            name = resolve_router_options(reference, provider, self.tls_options)
        except TLSOptionsError as exc:
            return str(exc)
        if name not in self._contexts:
            if self._store is None:
                self._store = self._certificate_store()
            notes: tuple[str, ...] = ()
            built: ssl.SSLContext | str
            try:
                notes = tuple(compile_server_options(self.tls_options[name]).notes)
                built = build_server_context(self.tls_options[name], self._store)
            except (TLSOptionsError, ValueError, ssl.SSLError) as exc:
                built = f"tls.options.{name}: {exc}"
            self._contexts[name] = (built, notes)
        built, notes = self._contexts[name]
        for note in notes:
            status.add_error(f"tls.options.{name}: {note}", critical=False)
        return built

    def _certificate_store(self) -> CertificateStore:
        """Configured certificates first, then those ACME resolvers obtained."""
        store, problems = build_certificate_store(self._tls_section)
        self.runtime.tls_problems.extend(problems)
        obtained = []
        for resolver in self.resolvers.values():
            for chain, key in resolver.certificates():
                try:
                    obtained.append(load_certificate(chain.decode(), key.decode()))
                except ValueError as exc:
                    self.runtime.tls_problems.append(f"ACME {resolver.name}: {exc}")
        if not obtained:
            return store
        return CertificateStore([*store.certificates, *obtained], store.default)

    def _request_certificates(self, config: TCPRouter, hosts: list[str],
                              status: ElementStatus) -> None:
        """Ask the router's ACME resolver for its domains (Traefik: tls.domains, else HostSNI)."""
        assert config.tls is not None
        resolver = self.resolvers.get(config.tls.cert_resolver)
        if resolver is None:
            if config.tls.cert_resolver in self.static.certificates_resolvers:
                status.add_error(f'the certificate resolver "{config.tls.cert_resolver}" is '
                                 "disabled (see the certificatesResolvers message at start-up); "
                                 "no certificate is requested for this router", critical=False)
            else:
                status.add_error(f'the router uses a non-existent certificate resolver '
                                 f'"{config.tls.cert_resolver}": declare it in the static '
                                 "certificatesResolvers, or fix the name", critical=False)
            return
        domains = [(d.main, list(d.sans)) for d in config.tls.domains if d.main]
        names = [h for h in hosts if h != "*"]
        if not domains and names:
            domains = [(names[0], names[1:])]
        self.runtime.acme_requests.append((config.tls.cert_resolver, domains))

    def alpn_for(self, reference: str, provider: str) -> tuple[str, ...]:
        try:
            name = resolve_router_options(reference, provider, self.tls_options)
        except TLSOptionsError:
            return ()
        return tuple(self.tls_options[name].alpn_protocols)

    def sni_strict_for(self, reference: str, provider: str) -> bool:
        try:
            name = resolve_router_options(reference, provider, self.tls_options)
        except TLSOptionsError:
            return False
        return bool(self.tls_options[name].sni_strict)


def _backend_tls_problem(tls: TransportTLS | None, host: str) -> str:
    """Why a servers transport's TLS settings cannot dial a TLS server, or ""."""
    try:
        build_backend_context(tls, host)
    except (ValueError, ssl.SSLError) as exc:  # BackendTLSError is a ValueError
        return str(exc)
    return ""


def _health_checked(service: Service) -> bool:
    if isinstance(service, LoadBalancer):
        return service.health_check is not None
    return service.health_checked


def _check_proxy_version(version: int) -> None:
    if version not in (1, 2):
        raise BuildError(f"unknown proxyProtocol version: {version} (use 1 or 2)")


def build_runtime(static: StaticConfig, configs: Mapping[str, DynamicConfig],
                  issues: Sequence[ConfigIssue] = (), previous: Runtime | None = None,
                  resolvers: Mapping[str, CertificateSource] | None = None,
                  internal: Mapping[str, Handler] | None = None) -> Runtime:
    """Compile every provider's config; invalid elements are disabled, the rest runs.

    `resolvers` are the ACME certificate resolvers by name: routers ask them for
    certificates, and what they hold joins the certificate store. `internal` are the
    running instance's ``@internal`` HTTP services (see switchyard.http.internal).
    """
    builder = _Builder(static, configs, previous, resolvers or {})
    builder.internal_handlers = internal
    runtime = builder.build()
    runtime.issues = [*issues, *runtime.issues]
    for provider, config in configs.items():
        # A Traefik file often carries HTTP or UDP routers next to TCP ones: say plainly
        # that they are not served, rather than dropping them silently.
        if config.udp:
            runtime.issues.append(ConfigIssue(
                provider, "udp", "the udp section is ignored: Switchyard does not support UDP",
                "warning"))
    for line in runtime.problems():
        log.warning("%s", line)
    for finding in diagnose(runtime, static):
        log.warning("%s", finding)
    return runtime
