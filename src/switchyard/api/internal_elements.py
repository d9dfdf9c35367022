"""The routers, services and middlewares Traefik's API lists for its own HTTP services.

Traefik's internal provider publishes, for what the static configuration enables: a router per
built-in service it serves on an entry point (``api@internal`` with ``api.insecure``, the
dashboard beside it with its redirect and strip-prefix middlewares, ``ping@internal`` and
``prometheus@internal`` unless their ``manualRouting`` is set), and every ``@internal`` service
that exists (``noop@internal`` always), used by those routers and by any user router naming it.
Switchyard serves them its own way (switchyard.api.app); this module makes the API, the
overview and the dashboard list them as Traefik does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from switchyard.config.static import StaticConfig
from switchyard.internal import internal_http_services, internal_services

__all__ = ["InternalElements", "internal_elements"]

Item = dict[str, Any]

_TOP = 9223372036854775807  # Go's MaxInt64: internal routers go before every user router

# internal_services' key -> router (and service) name, rule, priority
_ROUTERS = {
    "api": ("api@internal", "PathPrefix(`/api`)", _TOP - 1),
    "dashboard": ("dashboard@internal", "PathPrefix(`/`)", _TOP - 2),
    "ping": ("ping@internal", "PathPrefix(`/ping`)", _TOP),
    "metrics": ("prometheus@internal", "PathPrefix(`/metrics`)", _TOP),
}
_DASHBOARD_MIDDLEWARES = ("dashboard_redirect@internal", "dashboard_stripprefix@internal")


@dataclass
class InternalElements:
    """API items by name, in Traefik's shapes."""

    routers: dict[str, Item] = field(default_factory=dict)
    services: dict[str, Item] = field(default_factory=dict)
    middlewares: dict[str, Item] = field(default_factory=dict)


def internal_elements(static: StaticConfig,
                      user_routers: Iterable[tuple[str, str]]) -> InternalElements:
    """What ``static`` publishes; ``user_routers`` are (router, qualified service) pairs, so
    that a user router naming ``api@internal`` shows in that service's ``usedBy``."""
    found = InternalElements()
    used_by: dict[str, list[str]] = {}
    for entry_point, served in sorted(internal_services(static).items()):
        for key in sorted(served, key=list(_ROUTERS).index):
            name, rule, priority = _ROUTERS[key]
            router: Item = {"entryPoints": [entry_point]}
            if key == "dashboard":
                router["middlewares"] = list(_DASHBOARD_MIDDLEWARES)
            router.update({
                "service": name, "rule": rule, "ruleSyntax": "default", "priority": priority,
                "observability": {"accessLogs": True, "metrics": True, "tracing": True,
                                  "traceVerbosity": "minimal"},
                "status": "enabled", "using": [entry_point], "name": name,
                "provider": "internal", "priorityStr": str(priority)})
            found.routers[name] = router
            used_by.setdefault(name, []).append(name)
    for router_name, target in user_routers:
        if target.endswith("@internal"):
            used_by.setdefault(target, []).append(router_name)
    for name, missing in internal_http_services(static).items():
        if missing is not None:
            continue
        service: Item = {"status": "enabled"}
        if name in used_by:
            service["usedBy"] = sorted(used_by[name])
        service.update({"name": name, "provider": "internal"})
        found.services[name] = service
    if "dashboard@internal" in found.routers:
        found.middlewares = {
            "dashboard_redirect@internal": _middleware(
                "dashboard_redirect@internal", "redirectRegex",
                {"regex": r"^(http:\/\/(\[[\w:.]+\]|[\w\._-]+)(:\d+)?)\/$",
                 "replacement": "${1}/dashboard/", "permanent": True}),
            "dashboard_stripprefix@internal": _middleware(
                "dashboard_stripprefix@internal", "stripPrefix",
                {"prefixes": ["/dashboard/", "/dashboard"]}),
        }
    return found


def _middleware(name: str, kind: str, options: Item) -> Item:
    return {kind: options, "status": "enabled", "usedBy": ["dashboard@internal"], "name": name,
            "provider": "internal", "type": kind.lower()}
