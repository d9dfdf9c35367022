"""A compiled per-entry-point routing table: Traefik's first-match-by-priority, indexed."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from switchyard.http.handler import Handler
from switchyard.http.server import DEFAULT_SERVER_SETTINGS, ServerSettings
from switchyard.middlewares.base import AsyncLimit, Middleware
from switchyard.rules import ConnMeta, Rule
from switchyard.rules.matchers import regexp_set
from switchyard.services import Service
from switchyard.tls.certificates import CertificateStore


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One router as installed on one entry point."""

    name: str
    rule: Rule
    priority: int
    middlewares: tuple[Middleware, ...]
    service: Service
    service_name: str
    tls: bool
    passthrough: bool
    rank: int = 0
    # Termination only: the server context, or why the router's TLS options are
    # broken (Traefik still installs the route and closes what it matches).
    tls_context: ssl.SSLContext | None = None
    tls_error: str = ""
    tls_alpn: tuple[str, ...] = ()  # the options' alpnProtocols, to refuse as Go would
    sni_strict: bool = False  # the options refuse hellos no certificate matches
    certificates: CertificateStore | None = None  # what the termination context serves
    # Middlewares of the chain asked after the decision, before the dial (rate limits).
    async_limits: tuple[AsyncLimit, ...] = ()
    idle_timeout: float = 0.0  # close a relay quiet both ways this long (0: never)
    max_duration: float = 0.0  # close a connection routed this long ago (0: never)


@dataclass(frozen=True, slots=True, eq=False)
class HTTPSRoute:
    """A `Host` domain of HTTPS routers, as TLS dispatch sees it (Traefik's HTTPS-domain muxer).

    Its rule is `HostSNI(domain)`, or `HostSNI(*)` for HTTPS routers without a
    `Host`; the termination fields are those of the TLS options the domain's
    routers resolve to, so a connection for it is terminated with them and then
    served by the entry point's HTTP side.
    """

    name: str  # the HTTP routers the domain comes from
    rule: Rule
    priority: int
    rank: int = 0
    tls_context: ssl.SSLContext | None = None
    tls_error: str = ""
    tls_alpn: tuple[str, ...] = ()
    sni_strict: bool = False
    certificates: CertificateStore | None = None


class Ranked(Protocol):
    @property
    def rule(self) -> Rule: ...
    @property
    def rank(self) -> int: ...


R = TypeVar("R", bound=Ranked)


class RouteList(Generic[R]):
    """Routes of one kind (plain or TLS) that answer "first match in rank order".

    Rules that are only exact `HostSNI` values live in a dict keyed by host, so
    picking among thousands of SNI routers is one lookup plus a scan of the
    other rules that rank above the indexed candidate.
    """

    __slots__ = ("_exact", "_regexps", "_scan", "routes")

    def __init__(self, routes: Sequence[R]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, R] = {}
        scan: list[R] = []
        for route in self.routes:
            hosts = route.rule.exact_hosts
            if hosts is None:
                scan.append(route)
                continue
            for host in hosts:
                known = self._exact.get(host)
                if known is None or route.rank < known.rank:
                    self._exact[host] = route
        # Rules that are one HostSNIRegexp each are tested together: one RE2 set
        # search per connection instead of one search per rule.
        patterns = [r.rule.sni_regexp for r in scan if r.rule.sni_regexp is not None]
        self._regexps: Any = regexp_set(patterns) if len(patterns) > 1 else None
        slots: list[tuple[R, int]] = []
        index = 0
        for route in scan:
            in_set = self._regexps is not None and route.rule.sni_regexp is not None
            slots.append((route, index if in_set else -1))
            index += in_set
        self._scan = tuple(slots)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def match(self, meta: ConnMeta) -> R | None:
        best = self._exact.get(meta.sni.lower()) if meta.sni else None
        hits: list[int] | None = None
        for route, in_set in self._scan:
            if best is not None and route.rank > best.rank:
                break
            if in_set < 0:
                if route.rule.matches(meta):
                    return route
                continue
            if hits is None:
                assert self._regexps is not None
                found = self._regexps.Match((meta.sni or "").encode("utf-8", "surrogateescape"))
                hits = found or []
            if in_set in hits:
                return route
        return best


@dataclass(frozen=True, slots=True, eq=False)
class RoutingTable:
    """What one entry point needs to route a connection, swapped whole on reload."""

    entrypoint: str
    plain: RouteList[Route]
    tls: RouteList[Route]
    read_timeout: float = 60.0
    # A client silent this long goes to the non-TLS routers (0: it waits for read_timeout).
    peek_timeout: float = 0.0
    # entryPoints.<n>.starttls (smtp): the host name of the greeting; None: no STARTTLS.
    smtp_hostname: str | None = None
    # HTTPS routers' domains; an HTTPS router switches the early path off, as in Traefik.
    https: RouteList[HTTPSRoute] = field(default_factory=lambda: RouteList(()))
    # The entry point's HTTP server takes what no TCP router does: plaintext as
    # HTTP, TLS terminated with `default_https` (the default options) when no
    # HTTPS domain matches either.
    serves_http: bool = False
    default_https: HTTPSRoute | None = None
    http: Handler | None = None  # the entry point's HTTP routers (an EntryRouter)
    http_settings: ServerSettings = DEFAULT_SERVER_SETTINGS

    # Route before reading when only plain TCP routes exist, so server-first
    # protocols work (Traefik's early path).
    early_path: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "early_path", bool(self.plain) and not self.tls
                           and not self.https and self.smtp_hostname is None)


def sort_routes(routes: Sequence[Route]) -> list[Route]:
    """Traefik's order: priority descending; ties are unordered in Traefik, by name here."""
    ordered = sorted(routes, key=lambda r: (-r.priority, r.name))
    return [replace(r, rank=rank) for rank, r in enumerate(ordered)]
