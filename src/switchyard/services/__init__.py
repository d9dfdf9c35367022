"""Services: where a routed connection goes (load balancers, weighted splits)."""

from __future__ import annotations

from switchyard.services.loadbalancer import LoadBalancer, Server
from switchyard.services.transport import DEFAULT_TRANSPORT, ServersTransport
from switchyard.services.weighted import WeightedService

Service = LoadBalancer | WeightedService

__all__ = [
    "DEFAULT_TRANSPORT",
    "LoadBalancer",
    "Server",
    "ServersTransport",
    "Service",
    "WeightedService",
]
