"""Switchyard's own HTTP services (API, dashboard, ping, metrics) and where they are served."""

from __future__ import annotations

import logging
from typing import Protocol

from switchyard.config.static import StaticConfig

log = logging.getLogger("switchyard")


def internal_services(static: StaticConfig) -> dict[str, set[str]]:
    """Entry point name -> the built-in HTTP services it serves (api, dashboard, ping, metrics)."""
    found: dict[str, set[str]] = {}
    if static.api is not None and static.api.insecure:
        found.setdefault("traefik", set()).add("api")
        if static.api.dashboard:
            found["traefik"].add("dashboard")
    elif static.api is not None:
        log.warning("api is set without insecure: true; Switchyard's HTTP routers cannot "
                    "route to api@internal yet, so set api.insecure: true to serve it on the "
                    '"traefik" entry point')
    if static.ping is not None:
        found.setdefault(static.ping.entry_point or "traefik", set()).add("ping")
    prometheus = static.metrics.prometheus if static.metrics is not None else None
    if prometheus is not None:
        name = next((str(v) for k, v in prometheus.items() if k.lower() == "entrypoint"),
                     "traefik")
        found.setdefault(name, set()).add("metrics")
    return found


class InternalServer(Protocol):
    """One entry point serving Switchyard's own HTTP services."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None: ...
