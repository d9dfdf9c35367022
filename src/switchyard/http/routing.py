"""Compiled HTTP routing: per entry point, the HTTP and HTTPS routers and the HTTPS domains.

Pure: routers come in validated, handlers come from a builder callback, and what comes out is
immutable tables plus each router's status as Traefik's API reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from switchyard.config.http import HTTPRouter
from switchyard.rules import (
    ConnMeta,
    RequestMeta,
    Rule,
    RuleError,
    default_http_priority,
    default_priority,
    parse_domains,
    parse_http_rule,
    parse_rule,
)
from switchyard.rules.http import HTTPRule, host_key
from switchyard.status import ElementStatus

__all__ = [
    "DEFAULT_TLS_OPTIONS",
    "MAX_USER_PRIORITY",
    "HTTPRoute",
    "HTTPRouteList",
    "HTTPRouting",
    "HTTPRoutingTable",
    "HTTPSDomain",
    "HTTPSDomainList",
    "HandlerBuildError",
    "RouterSpec",
    "build_http_routing",
]

T = TypeVar("T")

DEFAULT_TLS_OPTIONS = "default"
# Traefik's math.MaxInt - 1000: the priorities above are kept for its internal routers.
MAX_USER_PRIORITY = (1 << 63) - 1 - 1000

_CONFLICTING_OPTIONS = (
    "router's TLSOptions configuration is conflicting with other routers on the same "
    "entrypoint and host, default TLS options will be used instead"
)


class HandlerBuildError(Exception):
    """Raised by a handler builder: the message becomes the router's (critical) error."""


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """What a handler builder gets for one router: names already qualified."""

    name: str
    provider: str
    config: HTTPRouter
    service: str
    middlewares: tuple[str, ...]
    tls_options: str  # the resolved options for the SNI check of an HTTPS router, else ""


@dataclass(frozen=True, slots=True, eq=False)
class HTTPRoute(Generic[T]):
    """One router as installed on one entry point; ``handler`` is what the builder made."""

    name: str
    rule: HTTPRule
    priority: int
    handler: T
    service: str
    tls_options: str = ""
    rank: int = 0


class HTTPRouteList(Generic[T]):
    """Routes of one kind (HTTP or HTTPS) answering "first match in rank order".

    Rules that can only match some hosts (``Host(`a`) && ...``) are indexed by host, so a
    request is tested only against the routes of its host and the routes that name none.
    """

    __slots__ = ("_by_host", "_scan", "routes")

    def __init__(self, routes: Sequence[HTTPRoute[T]]) -> None:
        self.routes = tuple(sorted(routes, key=lambda route: route.rank))
        by_host: dict[str, list[HTTPRoute[T]]] = {}
        scan: list[HTTPRoute[T]] = []
        for route in self.routes:
            keys = route.rule.host_keys
            if keys is None:
                scan.append(route)
            else:
                for key in keys:
                    by_host.setdefault(key, []).append(route)
        self._by_host = {key: tuple(found) for key, found in by_host.items()}
        self._scan = tuple(scan)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def __iter__(self) -> Iterator[HTTPRoute[T]]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, meta: RequestMeta) -> HTTPRoute[T] | None:
        """The first route, by rank, whose rule matches; None means 404.

        Traefik answers 400 before routing a request whose path has a malformed escape
        (``meta.routing_path`` is None); path rules never match such a request here.
        """
        candidates = self._by_host.get(host_key(meta), ()) if self._by_host else ()
        index = 0
        count = len(candidates)
        for route in self._scan:
            while index < count and candidates[index].rank < route.rank:
                if candidates[index].rule.matches(meta):
                    return candidates[index]
                index += 1
            if route.rule.matches(meta):
                return route
        for candidate in candidates[index:]:
            if candidate.rule.matches(meta):
                return candidate
        return None


@dataclass(frozen=True, slots=True)
class HTTPSDomain:
    """A Host domain of the HTTPS routers of an entry point, as a TLS route by SNI.

    ``tls_options`` is the qualified TLS options name the handshake uses, or None when
    those options are broken (the connection is closed). ``rule`` is the ``HostSNI`` rule
    Traefik derives from the domain; ``HostSNI(`*`)`` (routers without a Host) is the
    catch-all, which TCP TLS routers with a specific HostSNI beat.
    """

    domain: str
    tls_options: str | None
    rule: Rule
    priority: int
    rank: int = 0

    @property
    def is_catch_all(self) -> bool:
        return self.rule.is_catch_all


class HTTPSDomainList:
    """The HTTPS domains of an entry point, matched by SNI like a TCP TLS route list."""

    __slots__ = ("_exact", "_scan", "domains")

    def __init__(self, domains: Sequence[HTTPSDomain]) -> None:
        self.domains = tuple(sorted(domains, key=lambda domain: domain.rank))
        self._exact: dict[str, HTTPSDomain] = {}
        scan = []
        for entry in self.domains:
            hosts = entry.rule.exact_hosts
            if hosts is None:
                scan.append(entry)
                continue
            for host in hosts:
                self._exact.setdefault(host, entry)
        self._scan = tuple(scan)

    def __bool__(self) -> bool:
        return bool(self.domains)

    def __iter__(self) -> Iterator[HTTPSDomain]:
        return iter(self.domains)

    def __len__(self) -> int:
        return len(self.domains)

    def match(self, meta: ConnMeta) -> HTTPSDomain | None:
        """The first domain, by rank, whose HostSNI rule matches the ClientHello."""
        best = self._exact.get(meta.sni.lower()) if meta.sni else None
        for entry in self._scan:
            if best is not None and entry.rank > best.rank:
                break
            if entry.rule.matches(meta):
                return entry
        return best


@dataclass(frozen=True, slots=True, eq=False)
class HTTPRoutingTable(Generic[T]):
    """What one entry point needs to route HTTP: plaintext and TLS routes, HTTPS domains.

    ``http`` serves requests on plaintext connections, ``https`` those on TLS connections
    the entry point terminated; no match is a 404.
    """

    entrypoint: str
    http: HTTPRouteList[T]
    https: HTTPRouteList[T]
    https_domains: HTTPSDomainList


@dataclass
class HTTPRouting(Generic[T]):
    """One build: a table per entry point and each router's status.

    Routers whose TLS options conflict on an entry point appear there under Traefik's
    name for the copy it makes, ``<entrypoint>-conflicted-<router>``.
    """

    tables: dict[str, HTTPRoutingTable[T]] = field(default_factory=dict)
    routers: dict[str, ElementStatus] = field(default_factory=dict)


def build_http_routing(
    routers: Mapping[str, HTTPRouter],
    entrypoints: Sequence[str],
    build_handler: Callable[[RouterSpec], T],
    *,
    default_entrypoints: Sequence[str] | None = None,
    tls_options: Collection[str] = (DEFAULT_TLS_OPTIONS,),
    default_rule_syntax: str = "",
) -> HTTPRouting[T]:
    """Compile ``routers`` (keyed by qualified name, ``name@provider``) for ``entrypoints``.

    ``build_handler`` makes a router's middleware chain and service once per router; it
    raises HandlerBuildError to disable the router with that message. Routers without entry
    points use ``default_entrypoints`` (all entry points when None). ``tls_options`` are the
    qualified names of the TLS options that exist. ``default_rule_syntax`` applies to routers
    without ``ruleSyntax`` (the static ``core.defaultRuleSyntax``).
    """
    return _Build(
        routers,
        entrypoints,
        build_handler,
        entrypoints if default_entrypoints is None else default_entrypoints,
        tls_options,
        default_rule_syntax,
    ).run()


def _qualify(reference: str, provider: str) -> str:
    return reference if "@" in reference or not provider else f"{reference}@{provider}"


def _provider(name: str) -> str:
    return name.rpartition("@")[2] if "@" in name else ""


def _configured_options(config: HTTPRouter, provider: str) -> str:
    """The qualified TLS options an HTTPS router asks for; ``default`` is never qualified."""
    assert config.tls is not None
    options = config.tls.options or DEFAULT_TLS_OPTIONS
    return options if options == DEFAULT_TLS_OPTIONS else _qualify(options, provider)


@dataclass
class _Router:
    name: str
    provider: str
    config: HTTPRouter
    entrypoints: list[str]
    status: ElementStatus
    resolved_options: str = ""  # HTTPS routers: the options the handshake will use
    valid_entrypoints: list[str] = field(default_factory=list)


class _Build(Generic[T]):
    def __init__(
        self,
        routers: Mapping[str, HTTPRouter],
        entrypoints: Sequence[str],
        build_handler: Callable[[RouterSpec], T],
        default_entrypoints: Sequence[str],
        tls_options: Collection[str],
        default_rule_syntax: str,
    ) -> None:
        self.configs = routers
        self.entrypoints = list(entrypoints)
        self.build_handler = build_handler
        self.default_entrypoints = list(default_entrypoints)
        self.tls_options = tls_options
        self.default_rule_syntax = default_rule_syntax
        self.routes: dict[str, HTTPRoute[T] | None] = {}
        self.domains: dict[str, list[str] | RuleError] = {}
        self.parents = {parent for config in routers.values() for parent in config.parent_refs}
        self.result: HTTPRouting[T] = HTTPRouting()

    def run(self) -> HTTPRouting[T]:
        routers = self._resolve_tls_options()
        for router in routers:
            self.result.routers[router.name] = router.status
            self._check_tree(router)
        for router in routers:
            router.valid_entrypoints = self._valid_entrypoints(router)
        routes: dict[str, tuple[list[HTTPRoute[T]], list[HTTPRoute[T]]]] = {
            ep: ([], []) for ep in self.entrypoints
        }
        # Traefik builds the HTTP handlers, then the HTTPS ones; errors come in that order.
        for tls in (False, True):
            for router in routers:
                if (router.config.tls is not None) is not tls or self._multi_layer(router):
                    continue
                if router.name not in self.routes:
                    self.routes[router.name] = self._route(router)
                route = self.routes[router.name]
                if route is not None:
                    for ep in router.valid_entrypoints:
                        routes[ep][tls].append(route)
        for ep in self.entrypoints:
            plain, secure = routes[ep]
            self.result.tables[ep] = HTTPRoutingTable(
                ep,
                HTTPRouteList(_ranked(plain)),
                HTTPRouteList(_ranked(secure)),
                HTTPSDomainList(self._https_domains(ep, routers)),
            )
        return self.result

    # -- TLS options per entry point (Traefik's aggregator) --------------------------------

    def _resolve_tls_options(self) -> list[_Router]:
        """Traefik's resolveHTTPTLSOptions: on each entry point, the HTTPS routers whose hosts
        are also served with other TLS options (or that have options but no host to pick them
        by) move to a copy of their own using the default options."""
        routers: list[_Router] = []
        for name in sorted(self.configs):
            config = self.configs[name]
            provider = _provider(name)
            eps = list(config.entry_points) or list(self.default_entrypoints)
            status = ElementStatus("router", name, provider, config)
            router = _Router(name, provider, config, eps, status)
            if config.tls is not None:
                router.resolved_options = _configured_options(config, provider)
            routers.append(router)
        by_ep: dict[str, list[_Router]] = {}
        for router in routers:
            if router.config.tls is not None:
                for ep in dict.fromkeys(router.entrypoints):
                    by_ep.setdefault(ep, []).append(router)
        conflicting = {ep: self._conflicting(members) for ep, members in by_ep.items()}
        resolved: list[_Router] = []
        for router in routers:
            kept = [ep for ep in router.entrypoints if router.name not in conflicting.get(ep, ())]
            for ep in dict.fromkeys(ep for ep in router.entrypoints if ep not in kept):
                name = f"{ep}-conflicted-{router.name}"
                config = router.config.model_copy(update={"entry_points": [ep]})
                status = ElementStatus("router", name, router.provider, config)
                resolved.append(
                    _Router(name, router.provider, config, [ep], status, DEFAULT_TLS_OPTIONS)
                )
            if kept:
                if kept != router.entrypoints:
                    router.config = router.config.model_copy(update={"entry_points": kept})
                    router.status.config = router.config
                router.entrypoints = kept
                resolved.append(router)
        return sorted(resolved, key=lambda router: router.name)

    def _conflicting(self, routers: list[_Router]) -> set[str]:
        """Traefik's findConflictingRouters for one entry point."""
        found: set[str] = set()
        options_by_domain: dict[str, dict[str, list[str]]] = {}
        for router in routers:
            try:
                domains = self._parse_domains(router.config.rule)
            except RuleError:
                continue
            if not domains and router.resolved_options != DEFAULT_TLS_OPTIONS:
                # Options can only be picked by SNI, so options on a router without a Host conflict.
                found.add(router.name)
                continue
            for domain in domains:
                names = options_by_domain.setdefault(domain, {})
                names.setdefault(router.resolved_options, []).append(router.name)
        for by_option in options_by_domain.values():
            if len(by_option) > 1:
                found.update(name for names in by_option.values() for name in names)
        return found

    # -- router tree, entry points ---------------------------------------------------------

    def _multi_layer(self, router: _Router) -> bool:
        return bool(router.config.parent_refs) or router.name in self.parents

    def _check_tree(self, router: _Router) -> None:
        """What Traefik's router tree check says of a router that is its own root."""
        if self._multi_layer(router):
            router.status.add_error(
                "multi-layer routing (parentRefs) is not supported yet", critical=True
            )
        elif not router.config.service:
            router.status.add_error("router has no service and no child routers", critical=True)

    def _valid_entrypoints(self, router: _Router) -> list[str]:
        """Traefik's GetRoutersByEntryPoints for one router: the entry points it is on."""
        status = router.status
        valid = []
        for ep in router.entrypoints:
            if ep in self.entrypoints:
                valid.append(ep)
            else:
                status.add_error(f'entryPoint "{ep}" doesn\'t exist', critical=False)
        if not valid and not router.config.parent_refs:
            status.add_error("no valid entryPoint for this router", critical=True)
        status.using = sorted(set(status.using) | set(valid))
        return list(dict.fromkeys(valid))

    def _parse_domains(self, rule: str) -> list[str]:
        """parse_domains, once per rule text."""
        found = self.domains.get(rule)
        if found is None:
            try:
                found = parse_domains(rule)
            except RuleError as exc:
                found = exc
            self.domains[rule] = found
        if isinstance(found, RuleError):
            raise found
        return found

    # -- one route (Traefik's buildEntryPointHandler, once per router) ---------------------

    def _route(self, router: _Router) -> HTTPRoute[T] | None:
        config, status = router.config, router.status
        priority = config.priority or default_http_priority(config.rule)
        status.priority = priority
        if priority > MAX_USER_PRIORITY and not router.name.endswith("@internal"):
            status.add_error(
                f"the router priority {priority} exceeds the max user-defined priority "
                f"{MAX_USER_PRIORITY}",
                critical=True,
            )
            return None
        handler = self._handler(router)
        if handler is None:
            return None
        if not config.rule:
            status.add_error("router has no rule", critical=True)
            return None
        try:
            rule = parse_http_rule(config.rule, config.rule_syntax or self.default_rule_syntax)
        except RuleError as exc:
            status.add_error(f"error while parsing rule {config.rule}: {exc}", critical=True)
            return None
        return HTTPRoute(
            router.name,
            rule,
            priority,
            handler,
            _qualify(config.service, router.provider),
            router.resolved_options,
        )

    def _handler(self, router: _Router) -> T | None:
        config, status = router.config, router.status
        if config.tls is not None:
            options = _configured_options(config, router.provider)
            if options not in self.tls_options:
                status.add_error(
                    f"building router handler: unknown TLS options: {options}", critical=True
                )
                return None
        if not config.service:
            status.add_error("router must have either a service or child routers", critical=True)
            return None
        spec = RouterSpec(
            router.name,
            router.provider,
            config,
            _qualify(config.service, router.provider),
            tuple(_qualify(name, router.provider) for name in config.middlewares),
            router.resolved_options,
        )
        try:
            return self.build_handler(spec)
        except HandlerBuildError as exc:
            status.add_error(str(exc), critical=True)
            return None

    # -- HTTPS domains (Traefik's TCP router manager) --------------------------------------

    def _usable(self, options: str) -> str | None:
        """``options``, or None when they do not exist (Traefik closes such handshakes)."""
        return options if options in self.tls_options else None

    def _https_domains(self, ep: str, routers: list[_Router]) -> list[HTTPSDomain]:
        """One entry per Host domain of the entry point's HTTPS routers, with the TLS options
        its handshake uses, and ``*`` with the default options for routers without a Host."""
        by_domain: dict[str, str | None] = {}
        for router in routers:
            config, status = router.config, router.status
            if config.tls is None or ep not in router.valid_entrypoints:
                continue
            configured = _configured_options(config, router.provider)
            try:
                domains = self._parse_domains(config.rule)
            except RuleError as exc:
                status.add_error(f"invalid rule {config.rule}, error: {exc}", critical=True)
                continue
            if not domains:
                by_domain["*"] = self._usable(DEFAULT_TLS_OPTIONS)
                if configured != DEFAULT_TLS_OPTIONS:
                    status.add_error(
                        f"no domain found in rule {config.rule}, the TLS option {configured} "
                        "cannot be applied",
                        critical=False,
                    )
            elif router.resolved_options != configured:
                status.add_error(_CONFLICTING_OPTIONS, critical=False)
            for domain in domains:
                by_domain[domain] = self._usable(router.resolved_options)
        entries = []
        for domain, options in by_domain.items():
            try:
                rule = parse_rule(f"HostSNI(`{domain}`)")
            except RuleError:
                continue  # Traefik logs it and routes nothing for that domain
            entries.append(HTTPSDomain(domain, options, rule, default_priority(rule.text)))
        entries.sort(key=lambda entry: (-entry.priority, entry.domain))
        return [
            HTTPSDomain(e.domain, e.tls_options, e.rule, e.priority, rank)
            for rank, e in enumerate(entries)
        ]


def _ranked(routes: list[HTTPRoute[T]]) -> list[HTTPRoute[T]]:
    """Traefik's order: priority descending; ties are unordered in Traefik, by name here."""
    ordered = sorted(routes, key=lambda route: (-route.priority, route.name))
    return [
        HTTPRoute(r.name, r.rule, r.priority, r.handler, r.service, r.tls_options, rank)
        for rank, r in enumerate(ordered)
    ]
