"""The HTTP ``failover`` service: the main service while it is UP, else the fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchyard.http.responder import http_error
from switchyard.http.weighted import Child

if TYPE_CHECKING:
    from switchyard.config.http import HTTPService
    from switchyard.http.exchange import Exchange

__all__ = ["FailoverService", "reports_health"]


def reports_health(service: HTTPService) -> bool:
    """Whether a service tells its parents when it goes DOWN (Traefik's StatusUpdater).

    A loadBalancer does with an active ``healthCheck``; weighted, failover, mirroring and
    highestRandomWeight services do with ``healthCheck: {}``. Traefik refuses a failover whose
    main service does not (``child service <main> of <failover> not a
    healthcheck.StatusUpdater``), and, when the failover has ``healthCheck: {}``, one whose
    fallback does not.
    """
    for kind in (service.load_balancer, service.weighted, service.failover, service.mirroring,
                 service.highest_random_weight):
        if kind is not None:
            return kind.health_check is not None
    return False


class FailoverService:
    """Handler: ``main`` unless it is DOWN, then ``fallback``.

    As in Traefik, the fallback's state counts only when the failover itself has
    ``healthCheck: {}`` (``watch_fallback``): without it the fallback always gets what the main
    service cannot take (and answers its own 503 when it has nothing). When both are DOWN the
    answer is ``503 Service Unavailable``. The failover is UP while either is, which is what its
    own parents see.
    """

    __slots__ = ("fallback", "main", "name", "watch_fallback")

    def __init__(self, name: str, main: Child, fallback: Child, *,
                 watch_fallback: bool = False) -> None:
        self.name = name
        self.main = main
        self.fallback = fallback
        self.watch_fallback = watch_fallback

    @property
    def up(self) -> bool:
        return self.main.up or self.fallback.up

    def handle(self, exchange: Exchange) -> None:
        if self.main.up:
            self.main.handle(exchange)
        elif not self.watch_fallback or self.fallback.up:
            self.fallback.handle(exchange)
        else:
            http_error(exchange, 503, "Service Unavailable")
