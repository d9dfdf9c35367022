"""Explains which router would take a described connection, and what would happen to it next."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from switchyard.config.durations import go_duration
from switchyard.config.static import StaticConfig
from switchyard.diagnostics import diagnose
from switchyard.explain_http import HTTPExplanation, RequestQuestion, explain_request, render_http
from switchyard.internal import internal_services
from switchyard.middlewares.inflightconn import InFlightConn
from switchyard.middlewares.ipallowlist import IPAllowList
from switchyard.middlewares.ratelimit import RateLimit, source_key
from switchyard.observability.record import CloseReason
from switchyard.proxy.decision import (
    Action,
    ChallengeResponder,
    Decision,
    decide,
    decide_at_accept,
    peek,
)
from switchyard.rules import ConnMeta
from switchyard.rules.matchers import ACME_TLS_ALPN
from switchyard.runtime import Runtime
from switchyard.services import LoadBalancer, Service, WeightedService
from switchyard.services.weighted import Child


class ExplainError(ValueError):
    """The question cannot be answered as asked; the message says what to change."""


@dataclass(frozen=True)
class Candidate:
    """A router installed on the entry point, in the order routing considers it."""

    router: str
    rule: str
    priority: int
    matched: bool
    chosen: bool


@dataclass(frozen=True)
class DisabledRouter:
    router: str
    errors: list[str]


@dataclass(frozen=True)
class MiddlewareVerdict:
    """What one middleware would decide; `allows` is None when it depends on live state."""

    name: str
    type: str
    reached: bool
    allows: bool | None
    detail: str


@dataclass(frozen=True)
class ServerInfo:
    address: str
    tls: bool
    weight: int = 1


@dataclass(frozen=True)
class ServiceInfo:
    """A service as built: servers of a load balancer, or weighted children."""

    name: str
    type: str
    servers: list[ServerInfo] = field(default_factory=list)
    health_check: bool = False
    transport: str = ""
    children: list[WeightedChild] = field(default_factory=list)
    strategy: str = "wrr"
    retry_attempts: int = 1  # servers a connection may dial in all when dials are refused
    passive_health_check: str = ""  # "3 failures within 10s", or "" when off


@dataclass(frozen=True)
class WeightedChild:
    service: ServiceInfo
    weight: int


@dataclass(frozen=True)
class Explanation:
    """The whole answer; `as_json` and `render_text` present it.

    `action` is what the data plane does (forward, refuse, acme) and
    `close_reason` the word its access log would write when it closes the
    connection without relaying it (None when it relays).
    """

    entry_point: str
    client_ip: str
    tls: bool
    sni: str | None
    alpn: tuple[str, ...]
    routed_at_accept: bool
    candidates: list[Candidate]
    other_kind_routers: int
    disabled: list[DisabledRouter]
    router: str | None
    middlewares: list[MiddlewareVerdict]
    service: ServiceInfo | None
    outcome: str
    action: str = "refuse"
    close_reason: str | None = None
    server: str | None = None
    postgres: bool = False
    live: bool = False
    # Contradictions `check` reports that bear on this connection (its entry point or router).
    warnings: list[str] = field(default_factory=list)
    idle_timeout: float = 0.0  # the router's: a relay quiet both ways this long is closed
    max_duration: float = 0.0  # the router's: a connection open this long is closed
    on_change: str = "keep"  # the router's onChange policy, with its drainTimeout for drain
    # When the connection goes to the HTTP server: which HTTP router serves the request.
    http: HTTPExplanation | None = None

    def as_json(self) -> dict[str, Any]:
        """camelCase keys, like the REST API."""
        data: dict[str, Any] = _camel_keys(asdict(self))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        """The inverse of `as_json` (what a running instance's API answers)."""
        def service(raw: dict[str, Any] | None) -> ServiceInfo | None:
            if raw is None:
                return None
            return ServiceInfo(raw["name"], raw["type"],
                               [ServerInfo(s["address"], s["tls"], s.get("weight", 1))
                                for s in raw["servers"]],
                               raw["healthCheck"], raw["transport"],
                               [WeightedChild(service(c["service"]), c["weight"])  # type: ignore[arg-type]
                                for c in raw["children"]],
                               raw.get("strategy", "wrr"), raw.get("retryAttempts", 1),
                               raw.get("passiveHealthCheck", ""))
        return cls(
            entry_point=data["entryPoint"], client_ip=data["clientIP"], tls=data["tls"],
            sni=data["sni"], alpn=tuple(data["alpn"]), routed_at_accept=data["routedAtAccept"],
            candidates=[Candidate(**c) for c in data["candidates"]],
            other_kind_routers=data["otherKindRouters"],
            disabled=[DisabledRouter(**d) for d in data["disabled"]], router=data["router"],
            middlewares=[MiddlewareVerdict(**m) for m in data["middlewares"]],
            service=service(data["service"]), outcome=data["outcome"], action=data["action"],
            close_reason=data["closeReason"], server=data["server"], postgres=data["postgres"],
            live=data["live"], warnings=list(data.get("warnings", [])),
            idle_timeout=data.get("idleTimeout", 0.0), max_duration=data.get("maxDuration", 0.0),
            on_change=data.get("onChange", "keep"),
            http=HTTPExplanation.from_json(data["http"]) if data.get("http") else None)


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_camel_keys(v) for v in value]
    return value


def _camel(key: str) -> str:
    if key == "client_ip":
        return "clientIP"  # as the API spells it
    first, *rest = key.split("_")
    return first + "".join(part.title() for part in rest)


def normalise_client_ip(text: str) -> str:
    """The client address as the data plane sees it: IPv4-mapped IPv6 shown as IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ExplainError(f"--client-ip {text!r} is not an IP address, e.g. 203.0.113.7 "
                           "or 2001:db8::7") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def explain(runtime: Runtime, static: StaticConfig, entrypoint: str, client_ip: str,
            *, tls: bool, sni: str | None = None, alpn: Sequence[str] = (),
            postgres: bool = False, challenges: Sequence[ChallengeResponder] = (),
            live: bool = False, request: RequestQuestion | None = None) -> Explanation:
    """Route a described connection through `runtime` with the data plane's own decision.

    `postgres`: the client sends a Postgres SSLRequest before its ClientHello.
    `live`: `runtime` is the one a running instance routes with, so live state
    (server health, open connections) is known; offline, what depends on it is
    marked as such. The server pick only looks: no balancer moves on. `request`
    describes the HTTP request, for a connection the HTTP server takes.
    """
    internal = internal_services(static)
    if entrypoint in internal:
        raise ExplainError(f'entry point "{entrypoint}" serves '
                           f'{", ".join(sorted(internal[entrypoint]))} over HTTP; it routes no '
                           "TCP connections")
    table = runtime.tables.get(entrypoint)
    if table is None:
        known = ", ".join(sorted(set(runtime.tables) - set(internal))) or "none"
        raise ExplainError(f'entry point "{entrypoint}" is not a TCP entry point of this '
                           f"configuration (known: {known})")
    if not tls and (sni or alpn):
        raise ExplainError("--sni and --alpn describe a TLS ClientHello: drop --no-tls")
    if postgres and not tls:
        raise ExplainError("--postgres: the SSLRequest is followed by a TLS ClientHello; "
                           "drop --no-tls")
    client_ip = normalise_client_ip(client_ip)
    # A real ClientHello's SNI arrives lower-cased; a plain connection has none.
    sni = sni.lower() if sni else None
    decision = decide_at_accept(table, client_ip, choose=peek)
    routed_at_accept = decision is not None
    if decision is not None or not tls:
        routes, meta = table.plain, ConnMeta(None, (), client_ip, False)
        other = len(table.tls.routes)
    else:
        routes, meta = table.tls, ConnMeta(sni, tuple(alpn), client_ip, True)
        other = len(table.plain.routes)
    if decision is None:
        decision = decide(table, meta, postgres=postgres, challenges=challenges, choose=peek)
    route = decision.route
    candidates = [Candidate(r.name, r.rule.text, r.priority, bool(r.rule.matches(meta)),
                            r is route) for r in routes.routes]
    disabled = [DisabledRouter(s.name, list(s.errors)) for s in runtime.routers.values()
                if s.status == "disabled" and entrypoint in (
                    s.config.entry_points or static.default_entry_points())]
    verdicts = _middleware_verdicts(decision, client_ip, live) if route is not None else []
    http = None
    if decision.action is Action.HTTP:
        http = explain_request(runtime, entrypoint, request or RequestQuestion(), tls=tls,
                               client_ip=client_ip, sni=sni,
                               default_entrypoints=static.default_entry_points())
    return Explanation(
        entry_point=entrypoint, client_ip=client_ip, tls=tls, sni=sni, alpn=tuple(alpn),
        routed_at_accept=routed_at_accept, candidates=candidates, other_kind_routers=other,
        disabled=disabled, router=route.name if route is not None else None,
        middlewares=verdicts,
        service=describe_service(route.service) if route is not None else None,
        outcome=_outcome(decision, entrypoint, meta, verdicts),
        action=decision.action.value, close_reason=_close_reason(decision),
        server=decision.server.address if decision.server is not None else None,
        postgres=postgres, live=live,
        warnings=_warnings(runtime, static, entrypoint, route.name if route else None),
        idle_timeout=route.idle_timeout if route is not None else 0.0,
        max_duration=route.max_duration if route is not None else 0.0,
        on_change=_on_change(runtime, route.name) if route is not None else "keep",
        http=http)


def _on_change(runtime: Runtime, router: str) -> str:
    status = runtime.routers.get(router)
    policy = status.config.on_change if status is not None else None
    if policy is None:
        return "keep"
    if policy.policy == "drain":
        return f"drain (closed after {go_duration(policy.drain_timeout)} unless done)"
    return str(policy.policy)


def _warnings(runtime: Runtime, static: StaticConfig, entrypoint: str,
              router: str | None) -> list[str]:
    """What `check` warns about this entry point or this router."""
    return [str(found) for found in diagnose(runtime, static)
            if found.entry_point == entrypoint
            or (router is not None and not found.entry_point
                and router in (found.name, *found.related))]


def _close_reason(decision: Decision) -> str | None:
    if decision.reason is not None:
        return decision.reason.value
    if decision.handshake_refusal:
        return CloseReason.TLS_ERROR.value
    return None


def _outcome(decision: Decision, entrypoint: str, meta: ConnMeta,
             verdicts: list[MiddlewareVerdict]) -> str:
    route = decision.route
    if decision.action is Action.ACME:
        return "answered by Switchyard: the TLS-ALPN-01 challenge handshake, then closed"
    if decision.action is Action.HTTP:
        https = decision.https
        if https is None:
            return (f'no TCP router takes it: handed to the HTTP server of "{entrypoint}", '
                    "whose HTTP routers pick each request (no match: 404 page not found; "
                    "a line that is not HTTP: 400 Bad Request)")
        served = ("the default HTTPS handler (default TLS options and certificate)"
                  if https.name == "default" else f'the HTTPS routers of "{https.name}"')
        return (f"TLS terminated for {served}, then the HTTP server of \"{entrypoint}\": its "
                "HTTP routers pick each request (no match: 404 page not found)")
    if decision.reason is CloseReason.NO_ROUTE and route is None and (
            ACME_TLS_ALPN not in meta.alpn or not meta.tls):
        kind = "TLS" if meta.tls else "non-TLS"
        return f'closed: no {kind} router on "{entrypoint}" matches this connection'
    if decision.reason is CloseReason.REJECTED:
        refused = next(v for v in verdicts if v.allows is False)
        return f'closed by middleware "{refused.name}": {refused.detail}'
    if decision.reason is not None:
        return f"closed: {decision.detail}"
    assert route is not None and decision.server is not None
    if decision.handshake_refusal:
        return (f'closed by router "{route.name}" after dialling {decision.server.address}: '
                f"the TLS handshake fails: {decision.handshake_refusal}")
    return f'routed by "{route.name}" to service "{route.service_name}"'


def _middleware_verdicts(decision: Decision, client_ip: str,
                         live: bool) -> list[MiddlewareVerdict]:
    """Each middleware of the route, as the decision saw it; unreached ones marked so."""
    route = decision.route
    assert route is not None
    reached = dict(decision.verdicts)
    found = []
    for middleware in route.middlewares:
        if middleware not in reached:
            found.append(MiddlewareVerdict(middleware.name, middleware.kind, False, None, ""))
            continue
        refusal = reached[middleware]
        allows: bool | None = refusal is None
        detail = refusal or ""
        if isinstance(middleware, IPAllowList) and refusal is None:
            detail = f"client IP {client_ip} is in sourceRange [{', '.join(middleware.source_range)}]"
        elif isinstance(middleware, InFlightConn):
            amount = middleware.amount
            if amount <= 0:
                detail = f"amount is {amount}: every connection is refused"
            else:
                whose = {"clientIP": f"from {client_ip}", "router": "of this router",
                         "global": "of every router using it"}[middleware.scope]
                if live:
                    detail = (f"{middleware.open_connections(client_ip)} of {amount} "
                              f"connections {whose} are open now"
                              + (f": {refusal}" if refusal else ""))
                else:
                    # The limit depends on what is open at that moment, which a config
                    # cannot know.
                    allows = None
                    detail = f"allows it while fewer than {amount} connections {whose} are open"
        elif isinstance(middleware, RateLimit):
            source = source_key(client_ip, middleware.ipv6_subnet)
            allows = None  # a token is taken, or waited for, when the connection comes
            detail = ("average is 0: no limit" if middleware.limits.unlimited else
                      f"{middleware.describe()}: allows it while {source} has a token left "
                      "(or one within the longest wait)")
        found.append(MiddlewareVerdict(middleware.name, middleware.kind, True, allows, detail))
    return found


def describe_service(service: Service | Child) -> ServiceInfo:
    if isinstance(service, LoadBalancer):
        passive = service.passive
        return ServiceInfo(service.name, "loadBalancer",
                           servers=[ServerInfo(s.address, s.tls, s.weight)
                                    for s in service.servers],
                           health_check=service.health_check is not None,
                           transport=service.transport.name, strategy=service.strategy,
                           retry_attempts=service.retry_attempts,
                           passive_health_check="" if passive is None else (
                               f"{passive.max_failed_attempts} failed connections within "
                               f"{passive.failure_window:g}s take a server out"))
    assert isinstance(service, WeightedService)
    return ServiceInfo(service.name, "weighted", health_check=service.health_checked,
                       children=[WeightedChild(describe_service(child), weight)
                                 for child, weight in service.children])


# --- text ------------------------------------------------------------------------------


def render_text(found: Explanation) -> str:
    lines = [_connection_line(found), ""]
    kind = "non-TLS" if found.routed_at_accept or not found.tls else "TLS"
    if found.routed_at_accept:
        lines.append(f'"{found.entry_point}" has only non-TLS routers: connections are routed '
                     "when accepted, before the client sends anything, so SNI and ALPN are "
                     "never read.")
    lines.append(f'{kind} routers on "{found.entry_point}", in the order they are tried '
                 "(priority, then name):")
    if not found.candidates:
        lines.append("  (none)")
    width = max((len(c.router) for c in found.candidates), default=0)
    seen_chosen = False
    for candidate in found.candidates:
        if candidate.chosen:
            mark, note = "MATCH", "  <- chosen"
            seen_chosen = True
        elif candidate.matched:
            mark, note = "match", "  (matches, but a router above wins)" if seen_chosen else ""
        else:
            mark, note = "-    ", ""
        lines.append(f"  {mark}  priority {candidate.priority:>6}  "
                     f"{candidate.router:<{width}}  {candidate.rule}{note}")
    if found.other_kind_routers:
        other = "TLS" if kind == "non-TLS" else "non-TLS"
        lines.append(f"  ({found.other_kind_routers} {other} router(s) are not considered "
                     "for this connection)")
    if found.disabled:
        lines.append("")
        lines.append("Disabled routers on this entry point (not installed):")
        for router in found.disabled:
            lines.append(f"  {router.router}: {'; '.join(router.errors)}")
    if found.router is not None:
        lifetime = [f"{label} {go_duration(value)}" for label, value in (
            ("idleTimeout", found.idle_timeout), ("maxDuration", found.max_duration)) if value]
        lines += ["", f"Router: {found.router}"
                  + (f" (closes connections after {', '.join(lifetime)})" if lifetime else "")]
        if found.on_change != "keep":
            lines.append(f"On a reload that removes or changes its route: {found.on_change}")
        if found.middlewares:
            lines.append("Middlewares, in order:")
            for number, verdict in enumerate(found.middlewares, 1):
                decision = ("not reached" if not verdict.reached else
                            {True: "allows", False: "refuses", None: "depends"}[verdict.allows])
                lines.append(f"  {number}. {verdict.name} ({verdict.type}): {decision}: "
                             f"{verdict.detail}")
        if found.service is not None:
            lines.append("Service:")
            lines += _service_lines(found.service, "  ")
    lines.append("")
    if found.server is not None:
        lines.append(f"Server picked: {found.server}{_server_note(found)}")
    if found.close_reason is not None:
        lines.append(f"The access log would say: reason={found.close_reason}")
    if found.warnings:
        lines.append("Warnings (as check reports them):")
        lines += [f"  {warning}" for warning in found.warnings]
    lines.append(f"Result: {found.outcome}")
    if found.http is not None:
        lines += ["", *render_http(found.http)]
    return "\n".join(lines)


_STRATEGY_TEXT = {
    "wrr": "round robin",
    "leastConn": "leastConn: fewest open connections, ties by round robin",
    "p2c": "p2c: the less busy of two servers drawn at random",
    "hrw": "hrw: the server hashing highest with the client IP",
}


def _server_note(found: Explanation) -> str:
    """What the shown pick depends on, per strategy (offline nothing is open or rotated)."""
    strategies = _strategies(found.service) if found.service is not None else set()
    if found.live:
        return ""
    if strategies == {"hrw"}:
        return f" (the same for every connection from {found.client_ip} while the servers stay UP)"
    if "p2c" in strategies or "leastConn" in strategies:
        return " (with no connection open yet; a running instance counts its open ones)"
    return " (the first in rotation; a running instance may be further on)"


def _strategies(service: ServiceInfo) -> set[str]:
    if service.type == "loadBalancer":
        return {service.strategy}
    return set().union(*(_strategies(child.service) for child in service.children))


def _connection_line(found: Explanation) -> str:
    parts = ["TLS" if found.tls else "non-TLS"]
    if found.postgres:
        parts[0] = "Postgres SSLRequest, then TLS"
    if found.tls:
        parts.append(f'SNI "{found.sni}"' if found.sni else "no SNI")
        if found.alpn:
            parts.append("ALPN " + ", ".join(found.alpn))
    parts.append(f"client {found.client_ip}")
    return f'Connection: {", ".join(parts)}, on entry point "{found.entry_point}"'


def _service_lines(service: ServiceInfo, indent: str) -> list[str]:
    if service.type == "loadBalancer":
        extras = [f"transport {service.transport}"] if service.transport else []
        if service.health_check:
            extras.append("health-checked")
        if service.retry_attempts > 1:
            extras.append(f"up to {service.retry_attempts} servers dialled when refused")
        if service.passive_health_check:
            extras.append(f"passive health: {service.passive_health_check}")
        lines = [f"{indent}{service.name} (loadBalancer, {_STRATEGY_TEXT[service.strategy]}"
                 + "".join(f", {e}" for e in extras) + ")"]
        lines += [f"{indent}  server {s.address}" + (" (TLS to backend)" if s.tls else "")
                  + (f" weight {s.weight}" if s.weight != 1 else "")
                  for s in service.servers]
        if not service.servers:
            lines.append(f"{indent}  (no server: every connection would be closed)")
        return lines
    lines = [f"{indent}{service.name} (weighted)"]
    for child in service.children:
        lines.append(f"{indent}  weight {child.weight}:")
        lines += _service_lines(child.service, indent + "    ")
    return lines
