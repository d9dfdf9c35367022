"""Configurations that load but will not do what they seem to: contradictions and ignored keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switchyard.config.dynamic import TLSOptions
from switchyard.config.static import StaticConfig
from switchyard.rules.parser import AllOf, AnyOf, MatcherCall, Node
from switchyard.services import LoadBalancer, Service, WeightedService
from switchyard.services.weighted import Child

if TYPE_CHECKING:
    from switchyard.routing.table import Route
    from switchyard.runtime import Runtime

__all__ = ["Diagnostic", "diagnose"]

# What a terminating router advertises when its TLS options leave alpnProtocols alone.
_DEFAULT_ALPN = tuple(TLSOptions().alpn_protocols)


@dataclass(frozen=True)
class Diagnostic:
    """One warning about a configuration that loads and still misleads.

    ``kind`` and ``name`` are the element the warning belongs to (``router "db@file"``);
    ``related`` names the other elements involved; ``entry_point`` is set when the
    warning only holds for connections on that entry point. ``code`` says which check
    found it, for callers that pick warnings (``explain``).
    """

    code: str
    kind: str
    name: str
    message: str
    related: tuple[str, ...] = ()
    entry_point: str = ""

    def __str__(self) -> str:
        return f'{self.kind} "{self.name}": {self.message}'


def diagnose(runtime: Runtime, static: StaticConfig) -> list[Diagnostic]:
    """Every contradiction and silently ignored setting in a built configuration.

    Each warning names every element involved and says what to change. None of these
    disables anything: the configuration runs as Traefik would run it.
    """
    found: list[Diagnostic] = []
    found += _routers(runtime)
    found += _middlewares(runtime)
    found += _routes(runtime)
    found += _entry_points(runtime, static)
    return found


def _routers(runtime: Runtime) -> Iterator[Diagnostic]:
    for status in runtime.routers.values():
        tls = status.config.tls
        if tls is not None and tls.passthrough and tls.options:
            yield Diagnostic(
                "passthrough-tls-options", "router", status.name,
                f'tls.options "{tls.options}" is ignored: the router passes TLS through '
                "(passthrough: true), so Switchyard never runs the handshake these options "
                "would shape (Traefik ignores them too, even when they do not exist); remove "
                "tls.options, or set passthrough: false to terminate TLS with them",
                related=(tls.options,))


def _middlewares(runtime: Runtime) -> Iterator[Diagnostic]:
    for status in runtime.middlewares.values():
        if status.config.ip_white_list is not None:
            yield Diagnostic(
                "ip-white-list-deprecated", "middleware", status.name,
                "ipWhiteList is deprecated (as in Traefik); rename it to ipAllowList, which "
                "takes the same sourceRange and behaves the same")


def _routes(runtime: Runtime) -> Iterator[Diagnostic]:
    seen: set[tuple[str, str]] = set()
    for table in runtime.tables.values():
        for route in (*table.tls.routes, *table.plain.routes):
            status = runtime.routers.get(route.name)
            options = status.config.tls.options if status and status.config.tls else ""
            for finding in _route(route, options):
                if (finding.code, route.name) not in seen:
                    seen.add((finding.code, route.name))
                    yield finding


def _route(route: Route, options: str) -> Iterator[Diagnostic]:
    """What a route contradicts; ``options`` is the TLS options name its router gives."""
    balancers = list(_load_balancers(route.service))
    if route.passthrough:
        tls_servers = [server.address for lb in balancers for server in lb.servers if server.tls]
        if tls_servers:
            yield Diagnostic(
                "passthrough-to-tls-servers", "router", route.name,
                f'passes the client\'s TLS through (passthrough: true) to service '
                f'"{route.service_name}", whose servers {", ".join(tls_servers)} have tls: '
                "true: Switchyard would open its own TLS session to them and send the client's "
                "TLS inside it, so every connection fails. Remove tls: true from those servers "
                "(the client's TLS reaches them as it is), or terminate TLS on the router "
                "(passthrough: false)",
                related=(route.service_name,))
    elif route.tls and route.tls_context is not None and route.tls_alpn == _DEFAULT_ALPN \
            and "h2" in route.tls_alpn:
        yield Diagnostic(
            "default-alpn-h2", "router", route.name,
            f"terminates TLS with TLS options that keep Traefik's default alpnProtocols "
            f"({', '.join(_DEFAULT_ALPN)}), then relays raw TCP to service "
            f'"{route.service_name}": a client that offers h2 (browsers, curl --http2) agrees '
            "on HTTP/2 with Switchyard, and a backend that does not speak HTTP/2 gives it an "
            "empty reply. If the backend speaks HTTP/1.1 only, set alpnProtocols: [http/1.1] "
            + (f'in tls.options.{options.partition("@")[0]}' if options and options != "default"
               else "in tls.options.default (or give the router TLS options of its own)"),
            related=(route.service_name,))
    for lb in balancers:
        transport = lb.transport
        if transport.name != "default@internal" and transport.tls is not None \
                and not any(server.tls for server in lb.servers):
            yield Diagnostic(
                "transport-tls-unused", "service", lb.name,
                f'serversTransport "{transport.name}" sets tls, but no server of this service '
                "has tls: true, so the servers are dialed in plain TCP and those TLS settings "
                "are not used; add tls: true to the servers that expect TLS",
                related=(transport.name, route.name))


def _load_balancers(service: Service | Child) -> Iterator[LoadBalancer]:
    if isinstance(service, LoadBalancer):
        yield service
    elif isinstance(service, WeightedService):
        for child, _ in service.children:
            yield from _load_balancers(child)


def _entry_points(runtime: Runtime, static: StaticConfig) -> Iterator[Diagnostic]:
    for name, table in runtime.tables.items():
        if not table.tls:
            continue
        for route in table.plain.routes:
            if not _decides_without_bytes(route.rule.tree):
                continue
            tls_routers = [r.name for r in table.tls.routes]
            shown = ", ".join(f'"{r}"' for r in tls_routers[:3]) + (
                f" and {len(tls_routers) - 3} more" if len(tls_routers) > 3 else "")
            timeout = static.entry_points[name].transport.responding_timeouts.read_timeout \
                if name in static.entry_points else table.read_timeout
            waits = (f"is closed after readTimeout ({timeout:g}s)" if timeout > 0
                     else "waits forever (readTimeout is 0)")
            yield Diagnostic(
                "server-first-wait", "entryPoint", name,
                f'has TLS routers ({shown}) and the plain router "{route.name}" '
                f"({route.rule.text}), which matches before the client sends a byte: "
                "with TLS routers present, Switchyard must read a client's first bytes to tell "
                "TLS from plain, so a server-first client (SMTP, MySQL, SSH: it waits for the "
                f"server to speak) hears nothing and {waits}. Give that router an entry "
                "point without TLS routers",
                related=(route.name, *tls_routers), entry_point=name)


def _decides_without_bytes(node: Node) -> bool:
    """Whether a rule uses only what is known at accept: HostSNI(`*`) and ClientIP."""
    if isinstance(node, AllOf | AnyOf):
        return all(_decides_without_bytes(operand) for operand in node.operands)
    assert isinstance(node, MatcherCall)
    if node.name == "ClientIP":
        return True
    return node.name == "HostSNI" and node.args == ("*",) and not node.negated
