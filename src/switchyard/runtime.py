"""One configuration generation: statuses for the API and routing tables for the entry points."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchyard.config.loader import ConfigIssue
from switchyard.http.build import HTTPBuild
from switchyard.routing.table import RoutingTable
from switchyard.services import Service
from switchyard.status import ElementStatus


@dataclass
class Runtime:
    """One configuration generation: what the API shows and what entry points route with."""

    routers: dict[str, ElementStatus] = field(default_factory=dict)
    services: dict[str, ElementStatus] = field(default_factory=dict)
    middlewares: dict[str, ElementStatus] = field(default_factory=dict)
    tables: dict[str, RoutingTable] = field(default_factory=dict)
    service_objects: dict[str, Service] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    tls_problems: list[str] = field(default_factory=list)
    # (resolver, domains) to ask for: applied on the event loop after the build,
    # which may run in a worker thread.
    acme_requests: list[tuple[str, list[tuple[str, list[str]]]]] = field(default_factory=list)
    http: HTTPBuild = field(default_factory=HTTPBuild)  # HTTP routers, services, middlewares
    # Open connections of inFlightConn's router and global scopes, by (router or "", middleware):
    # handed on to the next generation, since the connections they count outlive it.
    connection_counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every error and warning, one line each, element first."""
        lines = [f"{i.severity}: {i.source}: {i.path}: {i.message}" for i in self.issues]
        lines += [f"error: tls: {problem}" for problem in self.tls_problems]
        for group in (self.routers, self.services, self.middlewares, self.http.routers,
                      self.http.services, self.http.middlewares):
            for element in group.values():
                for error in element.errors:
                    severity = "error" if element.status == "disabled" else "warning"
                    lines.append(f'{severity}: {element.kind} "{element.name}": {error}')
        return lines
