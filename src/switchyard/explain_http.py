"""Explains which HTTP router would serve a described request, with the entry router's own match.

`explain` hands a connection that no TCP router takes to this module when the user describes
a request (``--host``, ``--path``, ``--method``, ``--header``), or when the connection would go
to HTTP anyway (then the request is ``GET /`` for the SNI's host). The routers are tried by
the same EntryRouter and rules the data plane uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchyard.http.build import EntryRouter
from switchyard.http.message import Headers, RequestHead
from switchyard.runtime import Runtime
from switchyard.status import ElementStatus

__all__ = ["HTTPCandidate", "HTTPExplanation", "RequestQuestion", "explain_request"]


@dataclass(frozen=True)
class RequestQuestion:
    """The request being asked about; ``headers`` are (name, value) pairs besides Host."""

    host: str = ""
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def described(self) -> bool:
        return bool(self.host or self.headers or self.path != "/" or self.method != "GET")


@dataclass(frozen=True)
class HTTPCandidate:
    router: str
    rule: str
    priority: int
    matched: bool
    chosen: bool


@dataclass(frozen=True)
class HTTPExplanation:
    """Which HTTP router serves the request, through which middlewares, to which service."""

    scheme: str
    host: str
    path: str
    method: str
    headers: list[tuple[str, str]]
    candidates: list[HTTPCandidate]
    disabled: list[tuple[str, list[str]]]
    router: str | None
    middlewares: list[str]
    service: str | None
    service_type: str | None
    servers: list[str]
    status: int | None  # what Switchyard answers itself: 404, 400; None when a router serves
    outcome: str
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HTTPExplanation:
        return cls(
            scheme=data["scheme"], host=data["host"], path=data["path"], method=data["method"],
            headers=[(n, v) for n, v in data["headers"]],
            candidates=[HTTPCandidate(**c) for c in data["candidates"]],
            disabled=[(name, list(errors)) for name, errors in data["disabled"]],
            router=data["router"], middlewares=list(data["middlewares"]),
            service=data["service"], service_type=data["serviceType"],
            servers=list(data["servers"]), status=data["status"], outcome=data["outcome"],
            notes=list(data.get("notes", [])))


def explain_request(runtime: Runtime, entrypoint: str, question: RequestQuestion, *,
                    tls: bool, client_ip: str, default_entrypoints: Sequence[str],
                    sni: str | None = None) -> HTTPExplanation:
    """Route ``question`` through the entry point's HTTP routers as a request would be."""
    host = question.host or sni or ""
    fields = Headers([(b"Host", host.encode("latin-1"))] if host else [])
    for name, value in question.headers:
        if name.lower() == "host":
            continue
        fields.append((name.encode("latin-1"), value.encode("latin-1")))
    request = RequestHead(question.method.encode("latin-1"), question.path.encode("latin-1"),
                          b"1.1", fields)
    scheme = "https" if tls else "http"
    entry = runtime.http.entry_routers.get(entrypoint)
    disabled = [(s.name, list(s.errors)) for s in runtime.http.routers.values()
                if s.status == "disabled" and entrypoint in (
                    s.config.entry_points or default_entrypoints)]
    base: dict[str, Any] = {
        "scheme": scheme, "host": host, "path": question.path, "method": question.method,
        "headers": list(question.headers), "disabled": disabled}
    notes = []
    if not host:
        notes.append("no Host given (--host): rules on Host match an empty host")
    if not isinstance(entry, EntryRouter):
        return HTTPExplanation(**base, candidates=[], router=None, middlewares=[], service=None,
                               service_type=None, servers=[], status=404,
                               outcome=f'"{entrypoint}" has no HTTP routers: 404 page not found',
                               notes=notes)
    routes = entry.routes_for(tls)
    try:
        meta = entry.meta(request, tls=tls, client_ip=client_ip)
    except ValueError:
        return HTTPExplanation(**base, candidates=[], router=None, middlewares=[], service=None,
                               service_type=None, servers=[], status=400,
                               outcome="400 Bad Request: the path has a malformed escape",
                               notes=notes)
    chosen = routes.match(meta)
    candidates = [HTTPCandidate(route.name, route.rule.text, route.priority,
                                bool(route.rule.matches(meta)), route is chosen)
                  for route in routes]
    if chosen is None:
        kind = "HTTPS" if tls else "HTTP"
        return HTTPExplanation(**base, candidates=candidates, router=None, middlewares=[],
                               service=None, service_type=None, servers=[], status=404,
                               outcome=f"no {kind} router matches: 404 page not found",
                               notes=notes)
    status = runtime.http.routers.get(chosen.name)
    middlewares = _middlewares(runtime, status)
    service_type, servers = _service(runtime, chosen.service)
    through = f" through {', '.join(middlewares)}" if middlewares else ""
    return HTTPExplanation(**base, candidates=candidates, router=chosen.name,
                           middlewares=middlewares, service=chosen.service,
                           service_type=service_type, servers=servers, status=None,
                           outcome=f'served by HTTP router "{chosen.name}"{through} to service '
                                   f'"{chosen.service}"', notes=notes)


def _middlewares(runtime: Runtime, status: ElementStatus | None) -> list[str]:
    """The router's middlewares, qualified, each with its type: ``auth@file (basicAuth)``."""
    if status is None:
        return []
    found = []
    for reference in status.config.middlewares or ():
        qualified = reference if "@" in reference else f"{reference}@{status.provider}"
        middleware = runtime.http.middlewares.get(qualified)
        kinds = middleware.config.kinds if middleware is not None else []
        found.append(f"{qualified} ({', '.join(kinds) or 'no type'})")
    return found


def _service(runtime: Runtime, qualified: str) -> tuple[str | None, list[str]]:
    """The service's type and what it sends to: server URLs, or child services."""
    if qualified.endswith("@internal"):
        return "internal", []
    status = runtime.http.services.get(qualified)
    if status is None:
        return None, []
    config = status.config
    kinds = config.kinds
    if config.load_balancer is not None:
        return "loadBalancer", [server.url for server in config.load_balancer.servers]
    if config.weighted is not None:
        return "weighted", [f"{ref.name} (weight {ref.weight})"
                            for ref in config.weighted.services]
    if config.failover is not None:
        return "failover", [config.failover.service, f"{config.failover.fallback} (fallback)"]
    if config.mirroring is not None:
        return "mirroring", [config.mirroring.service, *(
            f"{m.name} (mirror, {m.percent}%)" for m in config.mirroring.mirrors)]
    return (kinds[0] if kinds else None), []


def render_http(found: HTTPExplanation) -> list[str]:
    """Text lines for `switchyard explain`."""
    extra = "".join(f", {name}: {value}" for name, value in found.headers)
    target = f"{found.scheme}://{found.host or '(no host)'}{found.path}"
    lines = [f"Request: {found.method} {target}{extra}"]
    kind = "HTTPS" if found.scheme == "https" else "HTTP"
    lines.append(f"{kind} routers, in the order they are tried (priority, then name):")
    if not found.candidates:
        lines.append("  (none)")
    width = max((len(c.router) for c in found.candidates), default=0)
    seen = False
    for candidate in found.candidates:
        if candidate.chosen:
            mark, note, seen = "MATCH", "  <- chosen", True
        elif candidate.matched:
            mark, note = "match", "  (matches, but a router above wins)" if seen else ""
        else:
            mark, note = "-    ", ""
        lines.append(f"  {mark}  priority {candidate.priority:>6}  "
                     f"{candidate.router:<{width}}  {candidate.rule}{note}")
    if found.disabled:
        lines.append("Disabled HTTP routers on this entry point (not installed):")
        lines += [f"  {name}: {'; '.join(errors)}" for name, errors in found.disabled]
    if found.router is not None:
        lines.append(f"HTTP router: {found.router}")
        if found.middlewares:
            lines.append("Middlewares, in order: " + ", ".join(found.middlewares))
        lines.append(f"Service: {found.service} ({found.service_type})")
        lines += [f"  {server}" for server in found.servers]
    lines += [f"Note: {note}" for note in found.notes]
    lines.append(f"HTTP result: {found.outcome}")
    return lines
