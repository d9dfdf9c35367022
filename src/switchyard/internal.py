"""Switchyard's own HTTP services (API, dashboard, ping, metrics) and where they are served."""

from __future__ import annotations

from typing import Protocol

from switchyard.config.static import StaticConfig


def internal_services(static: StaticConfig) -> dict[str, set[str]]:
    """Entry point name -> the built-in HTTP services it serves (api, dashboard, ping, metrics)."""
    found: dict[str, set[str]] = {}
    if static.api is not None and static.api.insecure:
        found.setdefault("traefik", set()).add("api")
        if static.api.dashboard:
            found["traefik"].add("dashboard")
    if static.ping is not None and not static.ping.manual_routing:
        found.setdefault(static.ping.entry_point or "traefik", set()).add("ping")
    prometheus = _prometheus(static)
    if prometheus is not None and not _option(prometheus, "manualrouting"):
        name = str(_option(prometheus, "entrypoint") or "traefik")
        found.setdefault(name, set()).add("metrics")
    return found


def _prometheus(static: StaticConfig) -> dict[str, object] | None:
    return static.metrics.prometheus if static.metrics is not None else None


def _option(options: dict[str, object], key: str) -> object:
    return next((value for name, value in options.items() if name.lower() == key), None)


#: What each ``<name>@internal`` HTTP service needs (None: always there) and the error when not.
INTERNAL_HTTP_SERVICES = {
    "api@internal": "api is not enabled",
    "dashboard@internal": "dashboard is not enabled",
    "ping@internal": "ping is not enabled",
    "prometheus@internal": "prometheus is not enabled",
    "noop@internal": None,
}


def internal_http_services(static: StaticConfig) -> dict[str, str | None]:
    """Each ``@internal`` HTTP service name -> None when this config has it, else why not.

    Routers may name them as their service, as in Traefik (``service: api@internal`` behind a
    ``basicAuth`` middleware is how the dashboard is usually published).
    """
    enabled = {"noop@internal"}
    if static.api is not None:
        enabled.add("api@internal")
        if static.api.dashboard:
            enabled.add("dashboard@internal")
    if static.ping is not None:
        enabled.add("ping@internal")
    if _prometheus(static) is not None:
        enabled.add("prometheus@internal")
    return {name: None if name in enabled else why
            for name, why in INTERNAL_HTTP_SERVICES.items()}


class InternalServer(Protocol):
    """One entry point serving Switchyard's own HTTP services."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None: ...
