"""onChange: what a new configuration does to live connections whose route it removed or changed.

A connection keeps the routing table it started with (Traefik's ``keep``). With its router's
``onChange`` set to ``drain`` or ``close``, a reload that removes or changes the router, its
service (anything but the server list) or the server it is relayed to closes it: at once,
or after ``drainTimeout`` if it has not ended by then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from switchyard.services import LoadBalancer, Server, Service, WeightedService

if TYPE_CHECKING:
    from switchyard.observability.record import ConnectionRecord
    from switchyard.runtime import Runtime

__all__ = ["apply_on_change", "change_reason"]

log = logging.getLogger("switchyard.proxy")


class Drainable(Protocol):
    """A live connection as onChange sees it."""

    @property
    def record(self) -> ConnectionRecord: ...

    def drain(self, timeout: float, detail: str) -> None:
        """Close within `timeout` seconds (0: now) unless it ends first."""


def _servers(service: Service | None) -> dict[str, Server]:
    if isinstance(service, LoadBalancer):
        return {server.address: server for server in service.servers}
    if isinstance(service, WeightedService):
        found: dict[str, Server] = {}
        for child, _ in service.children:
            found.update(_servers(child))  # type: ignore[arg-type]
        return found
    return {}


def _without_servers(config: Any) -> Any:
    data = config.model_dump(exclude_none=True)
    data.get("load_balancer", {}).pop("servers", None)
    return data


def change_reason(old: Runtime, new: Runtime, record: ConnectionRecord) -> str:
    """Why the new configuration no longer routes this connection as it was routed ("": it
    does)."""
    before = old.routers.get(record.router)
    after = new.routers.get(record.router)
    if after is None or not after.enabled:
        return f'router "{record.router}" was removed'
    if before is not None and before.config.model_copy(update={"on_change": None}) != \
            after.config.model_copy(update={"on_change": None}):
        return f'router "{record.router}" changed'
    old_service, new_service = old.services.get(record.service), new.services.get(record.service)
    if new_service is None or not new_service.enabled:
        return f'service "{record.service}" was removed'
    if old_service is not None and _without_servers(old_service.config) != \
            _without_servers(new_service.config):
        return f'service "{record.service}" changed'
    was = _servers(old.service_objects.get(record.service)).get(record.server)
    now = _servers(new.service_objects.get(record.service)).get(record.server)
    if now is None:
        return f'server {record.server} was removed from service "{record.service}"'
    if was is not None and was.tls != now.tls:
        return f'server {record.server} of service "{record.service}" changed'
    return ""


def apply_on_change(old: Runtime, new: Runtime, connections: Iterable[Drainable]) -> int:
    """Drain or close the relayed connections the change concerns; how many were told to."""
    told = 0
    for conn in connections:
        record = conn.record
        if not record.server or record.reason is not None:
            continue  # not routed to a server (yet, or at all), or ending anyway
        status = old.routers.get(record.router)
        policy = status.config.on_change if status is not None else None
        if policy is None or policy.policy == "keep":
            continue
        why = change_reason(old, new, record)
        if not why:
            continue
        timeout = policy.drain_timeout if policy.policy == "drain" else 0.0
        log.info("connection %d (%s:%d): %s; %s", record.id, record.client_ip,
                 record.client_port, why,
                 f"closing it within {timeout:g}s" if timeout > 0 else "closing it")
        conn.drain(max(timeout, 0.0), why)
        told += 1
    return told
